"""Run ``__main__.py`` under Pulumi's mocks and keep everything the engine would see.

No CLI and no plugins: the mock monitor answers every registration, and the
recording subclass keeps each resource's inputs (secrets still wrapped) and
its dependencies, which ``MockResourceArgs`` does not carry.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import re
import runpy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.settings import ROOT

from components.change_plan import Plan, Resource, diff
from pgha.files import REPO_DIR
from pgha.secrets import ClusterSecrets

# pulumi_command.remote loads its modules lazily, on first use, and the deprecated
# CopyFile's module warns then: load it quietly once so `-W error` runs pass too.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_command.remote

    _ = pulumi_command.remote.Command, pulumi_command.remote.Logging

MAIN = REPO_DIR / "__main__.py"
PROJECT = "pgha"
CLUSTER = "pgha"  # the PghaCluster's resource name in __main__

VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
IMAGE = "proxmoxve:download/file:File"
COMMAND = "command:remote:Command"
PASSWORD = "random:index/randomPassword:RandomPassword"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"
TLS_TYPES = (PRIVATE_KEY, SELF_SIGNED_CERT, CERT_REQUEST, LOCALLY_SIGNED_CERT)
SDN_ZONE_VLAN = "proxmoxve:sdn/zone/vlan:Vlan"
SDN_ZONE_VXLAN = "proxmoxve:sdn/zone/vxlan:Vxlan"
SDN_VNET = "proxmoxve:sdn/vnet:Vnet"
SDN_SUBNET = "proxmoxve:sdn/subnet:Subnet"
SDN_APPLIER = "proxmoxve:sdn/applier:Applier"

DEPLOY_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockDeployKeyMockDeployKeyMockDeployKey0\n"
DEPLOY_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKdeployPRIVATEkey7f3a9c\n-----END OPENSSH PRIVATE KEY-----\n"
)
DEPLOY_KEY_NAME = "pgha-deploy-key"
HOST_KEY_SUFFIX = "-ssh-host-key"


def mock_key_pem(name: str) -> str:
    """A distinctive stand-in for the private key of resource ``name``: easy to find if it leaks."""
    body = "MOCKtlsKEY" + hashlib.sha256(name.encode()).hexdigest()[:24]
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"


def mock_cert_pem(name: str) -> str:
    return f"-----BEGIN CERTIFICATE-----\nMOCKcert{name}\n-----END CERTIFICATE-----\n"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    """The value with every secret sentinel replaced by what it wraps."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def clear_strings(value: Any) -> list[str]:
    """Every string reachable without going through a secret: what a plan shows in clear."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *clear_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in clear_strings(v)]
    return [value] if isinstance(value, str) else []


class PghaMocks(pulumi.runtime.Mocks):
    """Provider stand-ins returning the state the real providers would."""

    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.tls_keys: dict[str, str] = {}  # resource name -> its mock private key
        self.host_keys: dict[str, str] = {}  # "<vm>-ssh-host-key" -> its mock private key
        self._vm_ids = itertools.count(100)

    def secrets(self) -> ClusterSecrets:
        prefix, role_prefix = f"{CLUSTER}-", f"{CLUSTER}-role-"
        roles = {
            n.removeprefix(role_prefix).replace("-", "_"): pw
            for n, pw in self.passwords.items()
            if n.startswith(role_prefix)
        }
        return ClusterSecrets(
            **{
                n.removeprefix(prefix).replace("-", "_"): pw
                for n, pw in self.passwords.items()
                # A rotated marker key's second slot: the ring's other key, not a field of its own.
                if not n.startswith(role_prefix) and not n.endswith("-odd")
            },
            role_passwords=roles,
        )

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict]:
        inputs = unwrap(args.inputs)
        state = dict(inputs)
        resource_id = f"{args.name}-id"
        if args.typ == PASSWORD:
            # Distinctive, 32 characters, letters and digits: easy to find if it leaks. A new
            # keeper is a new value, as RandomPassword makes one (generation 0: the name's alone).
            keepers = inputs.get("keepers") or {}
            fresh = keepers not in ({}, {"rotation": "0"})
            seed = f"{args.name} {sorted(keepers.items())}" if fresh else args.name
            password = "Mockpw" + hashlib.sha256(seed.encode()).hexdigest()[:26]
            self.passwords[args.name] = password
            state["result"] = password
        elif args.typ == PRIVATE_KEY and args.name == DEPLOY_KEY_NAME:
            state.update(
                publicKeyOpenssh=DEPLOY_PUBLIC_KEY,
                privateKeyOpenssh=DEPLOY_PRIVATE_KEY,
                privateKeyPem=DEPLOY_PRIVATE_KEY,
            )
        elif args.typ == PRIVATE_KEY and args.name.endswith(HOST_KEY_SUFFIX):
            # A VM's SSH host key: distinctive per VM, in pulumi_tls's OpenSSH outputs.
            tag = hashlib.sha256(args.name.encode()).hexdigest()[:20]
            private = (
                f"-----BEGIN OPENSSH PRIVATE KEY-----\nMockHostKey{tag}\n-----END OPENSSH PRIVATE KEY-----\n"
            )
            self.host_keys[args.name] = private
            state.update(
                publicKeyOpenssh=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5MockHost{tag}\n",
                privateKeyOpenssh=private,
            )
        elif args.typ == PRIVATE_KEY:
            key = mock_key_pem(args.name)
            self.tls_keys[args.name] = key
            # The provider gives the same key as SEC1 and as PKCS#8; one stand-in for both.
            state.update(privateKeyPem=key, privateKeyPemPkcs8=key, publicKeyPem=f"PUBLIC {args.name}")
        elif args.typ in (SELF_SIGNED_CERT, LOCALLY_SIGNED_CERT):
            state["certPem"] = mock_cert_pem(args.name)
        elif args.typ == CERT_REQUEST:
            state["certRequestPem"] = f"CSR {args.name}"
        elif args.typ == IMAGE:
            resource_id = f"{inputs['datastoreId']}:import/{inputs['fileName']}"
        elif args.typ == SNIPPET:
            resource_id = f"{inputs['datastoreId']}:snippets/{inputs['sourceRaw']['fileName']}"
        elif args.typ == VM:
            vm_id = int(inputs.get("vmId") or next(self._vm_ids))
            state["vmId"] = vm_id
            resource_id = str(vm_id)
        return resource_id, state

    # What the Proxmox API reports (proxmoxve.get_version); a test may lower it.
    pve_version = "8.4.1"

    def call(self, args: MockCallArgs) -> dict:
        """Invokes: only the Proxmox version is asked for (a plain dict: no check failures)."""
        if args.token == "proxmoxve:index/getVersion:getVersion":
            release = ".".join(self.pve_version.split(".")[:2])
            return {"id": "version", "release": release, "repositoryId": "mock", "version": self.pve_version}
        return {}


@dataclass
class Registration:
    urn: str
    typ: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    dependencies: set[str]
    provider: str
    ignore_changes: list[str]
    replacement_trigger: Any = None
    replace_with: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    protect: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    # Each alias as the engine gets it: its spec's name, or a whole URN.
    aliases: list[str] = field(default_factory=list)
    # Each input's own dependencies (URNs): what the engine makes unknown when one is replaced.
    property_dependencies: dict[str, set[str]] = field(default_factory=dict)
    resource_id: str = ""  # the mocks' answer


class RecordingMonitor(MockMonitor):
    """Keeps each registration's raw inputs and ``request.dependencies``."""

    def __init__(self, mocks: PghaMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations[response.urn] = Registration(
                urn=response.urn,
                typ=request.type,
                name=request.name,
                custom=request.custom,
                parent=request.parent,
                inputs=rpc.deserialize_properties(request.object),
                dependencies=set(request.dependencies),
                provider=request.provider,
                ignore_changes=list(request.ignoreChanges),
                replacement_trigger=(
                    json_format.MessageToDict(request.replacement_trigger)
                    if request.HasField("replacement_trigger")
                    else None
                ),
                replace_with=list(request.replace_with),
                delete_before_replace=request.deleteBeforeReplace,
                retain_on_delete=request.retainOnDelete,
                protect=request.protect,
                replace_on_changes=list(request.replaceOnChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                aliases=[a.spec.name if a.HasField("spec") else a.urn for a in request.aliases],
                property_dependencies={k: set(v.urns) for k, v in request.propertyDependencies.items()},
                resource_id=response.id,
            )
        return response


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class ProgramRun:
    mocks: PghaMocks
    monitor: RecordingMonitor
    handler: _ListHandler
    error: BaseException | None = None
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: dict[str, bool] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.handler.records if r.levelno >= logging.ERROR]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.monitor.registrations.values() if r.typ == typ]

    def named(self, typ: str, name: str) -> Registration:
        (found,) = [r for r in self.of_type(typ) if r.name == name]
        return found


def encode_config(config: dict[str, Any]) -> dict[str, str]:
    """Stack-file values as the CLI hands them over: text, objects and lists as JSON."""

    def encode(value: Any) -> str:
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {key: encode(value) for key, value in config.items()}


def stack_file_config(stack: str = "dev") -> dict[str, Any]:
    """The whole ``config:`` block of ``Pulumi.<stack>.yaml``, every namespace, decoded.

    A ``secure:`` value (``pulumi config set --secret``) becomes a marked stand-in
    string, as the engine would hand the decrypted value; :func:`stack_file_secret_keys`
    names those keys, for ``run_program(secret_keys=...)``.
    """
    document = yaml.safe_load((REPO_DIR / f"Pulumi.{stack}.yaml").read_text())
    return {
        key: f"PULUMI-SECRET({key})" if _is_secure(value) else copy.deepcopy(value)
        for key, value in document["config"].items()
    }


def stack_file_secret_keys(stack: str = "dev") -> list[str]:
    """The keys ``Pulumi.<stack>.yaml`` keeps encrypted."""
    document = yaml.safe_load((REPO_DIR / f"Pulumi.{stack}.yaml").read_text())
    return sorted(key for key, value in document["config"].items() if _is_secure(value))


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


_runs = itertools.count()


def use_mocks(
    stack: str = "dev", monitor_class: type[RecordingMonitor] = RecordingMonitor
) -> tuple[PghaMocks, RecordingMonitor, _ListHandler]:
    """Fresh mocks, monitor and root stack, with the engine's log kept in a handler."""
    mocks = PghaMocks()
    monitor = monitor_class(mocks)
    handler = _ListHandler()
    logger = logging.getLogger(f"pgha-mock-engine-{next(_runs)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    ROOT.set(None)  # so set_mocks creates a new root stack for this run's exports
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor
    )
    return mocks, monitor, handler


def run_program(
    config: dict[str, Any],
    stack: str = "dev",
    *,
    via_env: bool = False,
    secret_keys: list[str] | None = None,
    monitor_class: type[RecordingMonitor] = RecordingMonitor,
) -> ProgramRun:
    """Run a fresh copy of ``__main__.py`` to completion against new mocks.

    ``via_env`` passes the config the way the CLI does (``PULUMI_CONFIG``)
    instead of ``set_all_config``; the caller must have set that variable.
    ``secret_keys`` are the keys the stack keeps encrypted (``--secret``).
    ``monitor_class`` may stand in for more of the engine (e.g. a previous state).
    """
    mocks, monitor, handler = use_mocks(stack, monitor_class)
    pulumi.runtime.set_all_config({} if via_env else encode_config(config), secret_keys or [])
    root = pulumi.runtime.get_root_resource()
    run = ProgramRun(mocks, monitor, handler)

    async def collect_exports() -> None:
        for name, value in root.outputs.items():  # type: ignore[union-attr]
            output = pulumi.Output.from_input(value)
            run.exports[name] = await output.future()
            run.secret_exports[name] = await output.is_secret()

    @pulumi.runtime.test
    def program():
        try:
            runpy.run_path(str(MAIN), run_name="__main__")
        except pulumi.RunError as error:
            run.error = error
            return None
        return collect_exports()

    try:
        program()
    except pulumi.RunError as error:
        # Raised inside an apply (a change refused at preview): it ends the program too.
        run.error = error
    return run


# ---- the engine's previous state, for a second run ----------------------------------------


def _tokens(path: str) -> list[str | int]:
    return [int(t) if t.isdigit() else t for t in re.findall(r"[^.\[\]]+", path)]


def _get(value: Any, tokens: list[str | int]) -> tuple[bool, Any]:
    for token in tokens:
        if (isinstance(token, int) and isinstance(value, list) and token < len(value)) or (
            isinstance(token, str) and isinstance(value, dict) and token in value
        ):
            value = value[token]
        else:
            return False, None
    return True, value


def _set(value: Any, tokens: list[str | int], new: Any) -> None:
    for token in tokens[:-1]:
        value = value[token]
    value[tokens[-1]] = new


def _delete(value: Any, tokens: list[str | int]) -> None:
    found, parent = _get(value, tokens[:-1])
    if found and isinstance(parent, dict):
        parent.pop(tokens[-1], None)


def previous_state(before: ProgramRun | None, forget: tuple[str, ...] = ()) -> type[RecordingMonitor]:
    """A monitor that applies ``ignore_changes`` against ``before``'s inputs, as the engine does.

    The mocks then return the old values as the resource's outputs, as the
    provider would. Resources named in ``forget`` have no previous state
    (``pulumi destroy --target`` took them out): they are created afresh.
    """
    old_inputs: dict[tuple[str, str], dict] = {}
    if before is not None:
        for registration in before.monitor.registrations.values():
            raw = getattr(before.monitor, "raw", {}).get((registration.typ, registration.name))
            if raw is not None and registration.name not in forget:
                old_inputs[(registration.typ, registration.name)] = raw

    class PreviousState(RecordingMonitor):
        def __init__(self, mocks) -> None:
            super().__init__(mocks)
            self.raw: dict[tuple[str, str], dict] = {}
            self.goals: dict[tuple[str, str], dict] = {}

        def RegisterResource(self, request):
            inputs = json_format.MessageToDict(request.object)
            # What the program asked for, before the engine's ignore_changes.
            self.goals[(request.type, request.name)] = copy.deepcopy(inputs)
            old = old_inputs.get((request.type, request.name))
            if old is not None:
                for ignored in request.ignoreChanges:
                    tokens = _tokens(ignored)
                    has_old, value = _get(old, tokens)
                    has_new, _ = _get(inputs, tokens)
                    if has_old and (has_new or _get(inputs, tokens[:-1])[0]):
                        _set(inputs, tokens, copy.deepcopy(value))
                    elif has_new:
                        _delete(inputs, tokens)
                request.object.Clear()
                json_format.ParseDict(inputs, request.object)
            self.raw[(request.type, request.name)] = inputs
            return super().RegisterResource(request)

    return PreviousState


# ---- a replay's two runs, as the plan reads them (components/change_plan.py) ---------------


def config_file(path: Path) -> dict[str, Any]:
    """The ``config:`` block of any stack file (``Pulumi.dev.next.yaml``), decoded as
    :func:`stack_file_config` decodes a stack's."""
    document = yaml.safe_load(path.read_text())
    return {
        key: f"PULUMI-SECRET({key})" if _is_secure(value) else copy.deepcopy(value)
        for key, value in document["config"].items()
    }


def plan_resources(run: ProgramRun, *, as_written: bool = False) -> dict[str, Resource]:
    """A run's registrations as the plan takes them; ``as_written``: the program's inputs before
    the engine applied ``ignoreChanges`` (a :func:`previous_state` run keeps them)."""
    goals = getattr(run.monitor, "goals", {})
    found = {}
    for r in run.monitor.registrations.values():
        inputs = goals.get((r.typ, r.name), r.inputs) if as_written else r.inputs
        found[r.urn] = Resource(
            urn=r.urn,
            typ=r.typ,
            name=r.name,
            inputs=unwrap(inputs),
            dependencies=frozenset(r.dependencies),
            parent=r.parent,
            ignore_changes=tuple(r.ignore_changes),
            replace_on_changes=tuple(r.replace_on_changes),
            replacement_trigger=r.replacement_trigger,
            replace_with=tuple(r.replace_with),
            delete_before_replace=r.delete_before_replace,
            retain_on_delete=r.retain_on_delete,
            property_dependencies={k: frozenset(v) for k, v in r.property_dependencies.items()},
            id=r.resource_id,
        )
    return found


def first_run(config: dict[str, Any], stack: str = "dev") -> ProgramRun:
    """A replay's first run, as the state a ``pulumi up`` of ``config`` leaves; it must pass its preview."""
    run = run_program(config, stack, monitor_class=previous_state(None))
    if run.error is not None:
        raise ValueError(f"the old config fails its own preview: {run.errors}")
    return run


def replay_plan(
    old: dict[str, Any] | ProgramRun, new: dict[str, Any], stack: str = "dev", *, guards: bool = True
) -> Plan:
    """``pulumi up`` from config ``old`` to ``new``: the first run's state is the second's previous one.

    ``old`` is a config or its :func:`first_run`; it must pass the preview. The new one may be
    refused (the plan then says so).
    Without ``guards``, the plan takes the program's own inputs (no ``ignoreChanges``,
    the provider's default ``rebootAfterUpdate``): what the edit would do without them.
    """
    before = old if isinstance(old, ProgramRun) else first_run(old, stack)
    # Without guards, no previous state either: the program's preview checks (which compare the
    # VMs' state with the config) see VMs being created, and refuse nothing.
    after = run_program(new, stack, monitor_class=previous_state(before if guards else None))
    warnings_ = [r.getMessage() for r in after.handler.records if r.levelname == "WARNING"]
    return diff(
        plan_resources(before),
        plan_resources(after, as_written=not guards),
        refused=after.errors if after.error is not None else [],
        warnings=warnings_,
        guards=guards,
    )
