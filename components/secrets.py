"""The cluster's generated credentials: database passwords and the deploy SSH key.

Pulumi generates them once and keeps them in the stack's state (as secrets),
so every `pulumi up` renders the same files and changes nothing on the VMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random
import pulumi_tls

from pgha.config import NAMESPACE
from pgha.secrets import SUPPLIED, ClusterSecrets
from pgha.spec import RoleSpec

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
        self.passwords: dict[str, pulumi_random.RandomPassword] = {
            field: pulumi_random.RandomPassword(
                f"{name}-{field.replace('_', '-')}",
                length=args.length,
                special=False,
                opts=protected if field == CIPHER_FIELD and args.protect_backup_secret else child,
            )
            for field in ClusterSecrets.names()
        }
        generated = {field: pw.result for field, pw in self.passwords.items()}
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
