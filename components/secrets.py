"""The cluster's generated credentials: database passwords and the deploy SSH key.

Pulumi generates them once and keeps them in the stack's state (as secrets),
so every `pulumi up` renders the same files and changes nothing on the VMs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
import pulumi_random
import pulumi_tls

from pgha.config import NAMESPACE
from pgha.secrets import PREVIOUS, ROTATION, SUPPLIED, ClusterSecrets
from pgha.spec import RoleSpec, SecretRotationSpec

# Secret config: {role: password} for application roles whose password is given, not generated.
ROLE_PASSWORDS_KEY = "rolePasswords"
# Secret config: the backup repository's cipher passphrase, given instead of
# generated: another stack's (its secret output backupCipherPassphrase), so this
# stack reads the backups that one wrote (pgha:restore).
CIPHER_PASSPHRASE_KEY = "backupCipherPassphrase"
CIPHER_FIELD = "backup_cipher_pass"


@dataclass(frozen=True)
class ClusterPasswordsArgs:
    # Letters and digits only: the passwords land in HAProxy's config, YAML and
    # connection URLs, where punctuation would need quoting in three dialects.
    length: int = 32
    # The application login roles (pgha.databases): one password each.
    roles: tuple[RoleSpec, ...] = ()
    # With backups, the cipher passphrase is the only key to them: protected.
    protect_backup_secret: bool = False
    # pgha:secretRotation: a generation per internal secret, its RandomPassword's keeper.
    rotation: SecretRotationSpec = dataclasses.field(default_factory=SecretRotationSpec)


def rotation_keepers(generation: int) -> dict[str, str] | None:
    """A RandomPassword's keepers for a rotation generation: none at 0.

    The passwords of a stack made before rotations existed have no keepers;
    adding ``{"rotation": "0"}`` would be a diff, hence a new password on the
    first ``up``. Generation 0 keeps them as they are.
    """
    return {"rotation": str(generation)} if generation else None


def marker_slots(generation: int) -> tuple[int, int | None]:
    """The generations two marker-key slots hold: the even one's, and the odd one's (None before 1).

    Bumping the generation renews the slot of the new generation's parity only,
    so the other slot still holds the previous generation's key: the verify-only
    second key of the ring (pgha.vmlib.etcd_markers), with nothing kept outside
    Pulumi's resources.
    """
    even = generation - generation % 2
    odd = (generation if generation % 2 else generation - 1) if generation else None
    return even, odd


class ClusterPasswords(pulumi.ComponentResource):
    """One random password per :class:`ClusterSecrets` field, plus the deploy key.

    The deploy key is what Pulumi's remote commands log in with; its public
    half goes into cloud-init next to the operators' keys.
    """

    secrets: pulumi.Output[ClusterSecrets]
    deploy_public_key: pulumi.Output[str]
    deploy_private_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ClusterPasswordsArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("pgha:index:ClusterPasswords", name, None, opts)
        args = args or ClusterPasswordsArgs()
        child = pulumi.ResourceOptions(parent=self)

        # The cipher passphrase encrypts every backup: losing it (pulumi destroy, a
        # state edit) loses them all, so with backups it is protected; the engine
        # then refuses to delete it (docs/backups.md, "The cipher passphrase").
        protected = pulumi.ResourceOptions(parent=self, protect=True)
        # pgha:secretRotation: a new generation is a new keeper, hence a new value of
        # that secret only; the steps holding it run again (their digest changes).
        self.passwords: dict[str, pulumi_random.RandomPassword] = {}
        for field in ClusterSecrets.names():
            generation = getattr(args.rotation, ROTATION[field])
            keeper = marker_slots(generation)[0] if field in PREVIOUS else generation
            self.passwords[field] = pulumi_random.RandomPassword(
                f"{name}-{field.replace('_', '-')}",
                length=args.length,
                special=False,
                keepers=rotation_keepers(keeper),
                opts=protected if field == CIPHER_FIELD and args.protect_backup_secret else child,
            )
        # A marker key's odd-generation slot, from its first rotation on: the ring is the
        # slot of the current generation's parity, then the other one (the previous key).
        self.marker_odd_slots: dict[str, pulumi_random.RandomPassword] = {}
        marker_rings: dict[str, tuple[pulumi.Output[str], pulumi.Output[str]]] = {}
        for field in PREVIOUS:
            generation = getattr(args.rotation, ROTATION[field])
            odd = marker_slots(generation)[1]
            if odd is None:
                continue
            slot = pulumi_random.RandomPassword(
                f"{name}-{field.replace('_', '-')}-odd",
                length=args.length,
                special=False,
                keepers=rotation_keepers(odd),
                opts=child,
            )
            self.marker_odd_slots[field] = slot
            even_key = self.passwords[field].result
            marker_rings[field] = (slot.result, even_key) if generation % 2 else (even_key, slot.result)
        generated = {field: pw.result for field, pw in self.passwords.items()}
        for field, (current, before) in marker_rings.items():
            generated[field] = current
            generated[PREVIOUS[field]] = before
        # Operator-supplied secrets (the S3 key pair) come from secret config.
        config = pulumi.Config(NAMESPACE)
        # An imported passphrase wins over the generated one (which stays in the
        # state, unused). The repository is encrypted with whichever was in use
        # when it was created: never remove or change the key afterwards.
        imported_cipher = config.get_secret(CIPHER_PASSPHRASE_KEY)
        if imported_cipher is not None:
            generated[CIPHER_FIELD] = imported_cipher
        # What another stack imports: the passphrase in use, as a secret.
        self.backup_cipher_passphrase = pulumi.Output.secret(generated[CIPHER_FIELD])
        supplied = {field: config.get_secret(key) or "" for field, key in SUPPLIED.items()}
        # Application roles: the given password if pgha:rolePasswords has one, else a
        # RandomPassword whose keeper is the role's rotation generation, so bumping
        # pgha:roles[].rotation is a new password and nothing else is.
        given = config.get_secret_object(ROLE_PASSWORDS_KEY) or {}
        self.role_passwords: dict[str, pulumi_random.RandomPassword] = {
            role.name: pulumi_random.RandomPassword(
                f"{name}-role-{role.name.replace('_', '-')}",
                length=args.length,
                special=False,
                keepers={"rotation": str(role.rotation)},
                opts=child,
            )
            for role in args.roles
        }
        roles = {
            role_name: pulumi.Output.all(given, password.result).apply(
                lambda v, r=role_name: v[0][r] if isinstance(v[0], dict) and r in v[0] else v[1]
            )
            for role_name, password in self.role_passwords.items()
        }
        values = pulumi.Output.all(**generated, **supplied)
        passwords = pulumi.Output.all(**roles)
        self.secrets = pulumi.Output.secret(
            pulumi.Output.all(values, passwords).apply(
                lambda v: ClusterSecrets(**v[0], role_passwords=dict(v[1]))
            )
        )

        self.deploy_key = pulumi_tls.PrivateKey(f"{name}-deploy-key", algorithm="ED25519", opts=child)
        self.deploy_public_key = self.deploy_key.public_key_openssh
        # OpenSSH format: what pulumi-command's SSH client parses for ed25519 keys.
        self.deploy_private_key = pulumi.Output.secret(self.deploy_key.private_key_openssh)

        self.register_outputs({"deployPublicKey": self.deploy_public_key})
