"""Stack config → validated :class:`ClusterSpec`, or every problem at once.

Both `pulumi preview` (through ``__main__``) and the offline renderer call
:func:`load_spec` with the ``pgha:`` namespace as a plain dict, so a bad stack
fails the same way everywhere, before any resource exists.

What one key may hold (type, default, range, choices, pattern) is declared on
its field in :mod:`pgha.spec` and enforced by :class:`pgha.schema.Reader`.
This module reads what a declaration cannot say alone: lists, addresses and
nested machines, and the rules across keys (ttl against loopWait, the VIP
inside the CIDR, the hosts' layout, ports that collide, owners and roles).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Collection
from ipaddress import IPv4Network, ip_network
from typing import Any, Literal

from .databases import pgha_databases as databases_tool
from .etcd import members as etcd_members
from .patroni import MANAGED_PARAMETERS
from .schema import NAMESPACE, Reader, camel, declared, keys
from .secrets import SUPPLIED
from .spec import (
    DEFAULT_DATABASES,
    ETHERNET_MTU,
    IMAGE_POSTGRES_VERSIONS,
    PGDG_POSTGRES_VERSIONS,
    PGDG_SUITES,
    STACK_ONLY_KEYS,
    TRUSTED_EXTENSIONS,
    VXLAN_OVERHEAD,
    BackupSpec,
    ClientsSpec,
    ClusterSpec,
    DatabaseSpec,
    EtcdSpec,
    FastPathSpec,
    HaproxySpec,
    ImportSpec,
    JumpHost,
    KeepalivedSpec,
    MaintenanceSpec,
    MonitoringSpec,
    NetworkSpec,
    Node,
    OffsiteSpec,
    PatroniSpec,
    PoolerSpec,
    PostgresRepositorySpec,
    PostgresSpec,
    RestoreSpec,
    RoleSpec,
    SdnSpec,
    SecretRotationSpec,
    SshSpec,
    TlsSpec,
    VmSpec,
)

__all__ = ["NAMESPACE", "ConfigError", "load_spec", "top_level_keys"]


def top_level_keys() -> tuple[str, ...]:
    """The keys of the ``pgha:`` namespace: ClusterSpec's declared fields, and the stack-only keys."""
    names = [k.key for k in keys(ClusterSpec)]
    for after, key, _ in STACK_ONLY_KEYS:
        names.insert(names.index(after) + 1, key)
    return tuple(names)


KNOWN_KEYS = top_level_keys()
_PG_PARAMETER = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
_SSH_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]*)?"
)
# Accounts the packages or the system own: the deploy user gets passwordless
# sudo, so it must never be one of them (``postgres`` with sudo is root).
# Debian 13's base-passwd, the cloud image's packages (dhcpcd, chrony,
# polkit, tpm2, uuid), the services pgha installs and the accounts pgha
# makes; ``systemd-*`` and ``_*`` (``_apt``, ``_chrony``, ...) by prefix.
RESERVED_USERS = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
        "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "sshd", "messagebus",
        "postgres", "etcd", "haproxy", "keepalived", "keepalived-script", "keepalived_script",
        "pgbackrest", "pgbouncer", "patroni", "prometheus", "polkitd", "tss", "dhcpcd", "uuidd",
        "chrony", "ntp", "ntpsec", "tcpdump", "dnsmasq", "statd", "avahi", "usbmux", "rpc",
        "admin", "sudo", "debian", "ssl-cert", "nogroup", "operator", "staff", "users",
    }
)  # fmt: skip
# Host names a VM may not take: /etc/hosts gives them to loopback and
# multicast on every Debian machine, so a peer by that name is this machine.
RESERVED_HOSTNAMES = frozenset(
    {"localhost", "ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix"}
    | {"ip6-allnodes", "ip6-allrouters", "ip6-allhosts"}
)
# Where a local backup repository may live (``backup.path`` with repository
# host or path): root makes it postgres's own, so a system directory there
# would let postgres replace what root runs. ``/var/lib/pgbackrest`` (the
# package's own) itself or below; the others only strictly below.
BACKUP_OWN_ROOT = "/var/lib/pgbackrest"
BACKUP_PARENT_ROOTS = ("/srv", "/mnt", "/data", "/var/backups")
# Keys whose values are secrets: a stack file must hold them encrypted
# (``pulumi config set --secret``), never in clear text in Git.
SECRET_KEYS = (
    "backupCipherPassphrase",
    "backupS3Key",
    "backupS3KeySecret",
    "backupOffsiteKey",
    "backupOffsiteKeySecret",
    "importPassword",
    "rolePasswords",
)
# What the offline tools read in place of an encrypted value (pgha.stackfile).
ENCRYPTED_STAND_IN = "PULUMI-SECRET("
# Upper bounds: etcd's write latency grows with its voters and its maintainers
# advise at most 7; PostgreSQL VMs beyond 9 only add synchronous standbys to wait for.
MAX_ETCD_MEMBERS = 7
MAX_VMS = 9


class ConfigError(ValueError):
    """All the problems found in one stack config; each names its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n" + "\n".join(f"  - {p}" for p in problems))


# ---- the private network and the machines on it ----


def _read_network(reader: Reader, raw: Any) -> NetworkSpec | None:
    data = reader.mapping(raw, "network")
    if not data:
        reader.problem("network", "is required (an object with at least cidr and bridge or sdn)")
        return None
    values = reader.section(data, "network", NetworkSpec)
    cidr: IPv4Network | None = None
    if not data.get("cidr"):
        reader.problem("network.cidr", "is required (an IPv4 network such as 10.0.0.0/24)")
    else:
        try:
            cidr = IPv4Network(str(data["cidr"]), strict=True)
        except ValueError as exc:
            reader.problem("network.cidr", f"{data['cidr']!r} is not a valid IPv4 network ({exc})")
    if cidr is not None and cidr.num_addresses < 8:
        reader.problem("network.cidr", f"{cidr} is too small for three VMs and a VIP")
    gateway = reader.ipv4(data["gateway"], "network.gateway") if data.get("gateway") else None
    if gateway is not None and cidr is not None and gateway not in cidr:
        reader.problem("network.gateway", f"{gateway} is outside pgha:network.cidr {cidr}")
    dns_raw = data.get("dns") or []
    if not isinstance(dns_raw, list):
        reader.problem("network.dns", f"expected a list of IPv4 addresses, got {dns_raw!r}")
        dns_raw = []
    dns = tuple(a for i, d in enumerate(dns_raw) if (a := reader.ipv4(d, f"network.dns[{i}]")) is not None)
    if gateway is not None and not dns_raw:
        # A routed VM without a resolver cannot reach Debian's mirror: its first step would fail late.
        reader.problem(
            "network.dns", f"is required with pgha:network.gateway {gateway} (the VMs resolve the mirror)"
        )
    sdn = _read_sdn(reader, data.get("sdn")) if data.get("sdn") is not None else None
    if sdn is None and not values.get("bridge") and data.get("sdn") is None:
        reader.problem("network", "needs either bridge (an existing Proxmox bridge) or sdn")
    if sdn is not None and values.get("bridge"):
        reader.problem("network", "set bridge or sdn, not both")
    if cidr is None:
        return None
    return NetworkSpec(cidr=cidr, gateway=gateway, dns=dns, sdn=sdn, **values)


def _read_sdn(reader: Reader, raw: Any) -> SdnSpec | None:
    data = reader.mapping(raw, "network.sdn")
    values = reader.section(data, "network.sdn", SdnSpec)
    peers_raw = data.get("peers") or []
    if not isinstance(peers_raw, list):
        # A string would otherwise be read character by character.
        reader.problem("network.sdn.peers", f"expected a list of IPv4 addresses, got {peers_raw!r}")
        peers_raw = []
    peers = [a for i, p in enumerate(peers_raw) if (a := reader.ipv4(p, f"network.sdn.peers[{i}]"))]
    if values.get("type") == "vxlan" and not peers_raw:
        reader.problem("network.sdn.peers", "a vxlan zone needs the Proxmox hosts' peer addresses")
    if values.get("type") == "vlan" and not values.get("bridge"):
        reader.problem("network.sdn.bridge", "a vlan zone needs the VLAN-aware bridge it rides on")
    if any(k not in values for k in ("zone", "vnet", "type", "tag")):
        return None
    return SdnSpec(peers=tuple(str(p) for p in peers), **values)


def _read_node(
    reader: Reader, raw: Any, key: str, cidr: IPv4Network | None, role: str, external: bool = False
) -> Node | None:
    """One VM (or, with ``external``, an existing machine: the witness) of the stack."""
    data = reader.mapping(raw, key)
    known = {"name", "host", "ip", "external", "hostKey"} if external else {"name", "host", "ip", "vmId"}
    for unknown in sorted(set(data) - known):
        reader.problem(f"{key}.{unknown}", f"unknown key (known: {', '.join(sorted(known))})")
    name, host = data.get("name"), data.get("host")
    if external and not host and name:
        # The machine is its own failure domain unless told which one it shares.
        host = name
    if not name:
        reader.problem(f"{key}.name", "is required")
    elif not reader.check(declared(Node, "name"), name, f"{key}.name"):
        name = None
    if not host:
        reader.problem(f"{key}.host", "is required (the Proxmox node name)")
    elif not reader.check(declared(Node, "host"), host, f"{key}.host"):
        host = None
    ip = reader.ipv4(data.get("ip"), f"{key}.ip")
    if ip is not None and (ip.is_loopback or ip.is_multicast or ip.is_unspecified):
        reader.problem(f"{key}.ip", f"{ip} cannot be a machine's address")
    elif ip is not None and cidr is not None and external and ip not in cidr:
        pass  # an existing machine may sit behind a router or a VPN: routing is the operator's
    elif ip is not None and cidr is not None:
        if ip not in cidr:
            reader.problem(f"{key}.ip", f"{ip} is outside pgha:network.cidr {cidr}")
        elif ip in (cidr.network_address, cidr.broadcast_address):
            reader.problem(f"{key}.ip", f"{ip} is the network or broadcast address of {cidr}")
    vm_id = reader.value(data["vmId"], f"{key}.vmId", int) if "vmId" in data else None
    if vm_id is not None:
        reader.check(declared(Node, "vm_id"), vm_id, f"{key}.vmId")
    host_key = data.get("hostKey") if external else None
    if external and not (isinstance(host_key, str) and _SSH_KEY.match(host_key.strip())):
        reader.problem(
            f"{key}.hostKey",
            "is required with external: true: the machine's SSH host public key "
            f"(ssh-keyscan -t ed25519 <ip>, without the address), got {host_key!r}",
        )
        host_key = None
    if not (name and host and ip) or (external and host_key is None):
        return None
    return Node(
        name=str(name),
        host=str(host),
        ip=ip,
        role=role,  # type: ignore[arg-type]
        vm_id=vm_id,
        external=external,
        host_key=host_key.strip() if host_key else None,
    )  # type: ignore[arg-type]


def _read_nodes(reader: Reader, config: dict[str, Any], cidr: IPv4Network | None) -> list[Node]:
    raw_vms = config.get("vms")
    if not isinstance(raw_vms, list):
        reader.problem("vms", f"is required (a list of {{name, host, ip}}), got {raw_vms!r}")
        raw_vms = []
    elif len(raw_vms) < 3:
        reader.problem("vms", f"needs at least 3 VMs for quorum and failover, got {len(raw_vms)}")
    elif len(raw_vms) > MAX_VMS:
        reader.problem("vms", f"{len(raw_vms)} VMs is more than the {MAX_VMS} pgha supports")
    nodes = [_read_node(reader, raw, f"vms[{i}]", cidr, "postgres") for i, raw in enumerate(raw_vms)]
    vms = [n for n in nodes if n is not None]
    if len(vms) == len(raw_vms) >= 2 and len({n.host for n in vms}) == 1:
        reader.problem(
            "vms",
            f"all VMs are on Proxmox host {vms[0].host!r}: losing it loses the whole cluster; "
            "spread them over at least two hosts",
        )
    witness = None
    if config.get("witness") is not None:
        external = _read_external_witness_flag(reader, config["witness"])
        witness = _read_node(reader, config["witness"], "witness", cidr, "witness", external=external)
        if witness is not None and witness.host in {n.host for n in vms}:
            reader.problem(
                "witness.host",
                f"{witness.host!r} already carries a VM; the witness must be on a third host",
            )
    everyone = vms + ([witness] if witness else [])
    labels = [f"vms[{i}]" for i in range(len(vms))] + (["witness"] if witness else [])
    backup = config.get("backup")
    if isinstance(backup, dict) and backup.get("repository") == "host":
        repository = _read_node(reader, backup.get("repositoryVm"), "backup.repositoryVm", cidr, "repository")
        if repository is not None:
            everyone.append(repository)
            labels.append("backup.repositoryVm")
    for node, label in zip(everyone, labels, strict=True):
        if node.name in RESERVED_HOSTNAMES:
            reader.problem(
                f"{label}.name", f"{node.name!r} is a name /etc/hosts gives to this machine or to multicast"
            )
    for attr in ("name", "ip", "vm_id"):
        counts = Counter(getattr(n, attr) for n in everyone if getattr(n, attr) is not None)
        for node, label in zip(everyone, labels, strict=True):
            value = getattr(node, attr)
            if value is not None and counts[value] > 1:
                reader.problem(f"{label}.{camel(attr)}", f"{value} is used by more than one VM")
    return everyone


def _read_external_witness_flag(reader: Reader, raw: Any) -> bool:
    """``witness.external``: true for an existing Debian 13 machine (no VM), reached over SSH."""
    if not isinstance(raw, dict) or "external" not in raw:
        return False
    flag = reader.value(raw["external"], "witness.external", bool)
    return bool(flag)


def _read_ssh(reader: Reader, raw: Any) -> SshSpec | None:
    data = reader.mapping(raw, "ssh")
    values = reader.section(data, "ssh", SshSpec)
    keys = data.get("authorizedKeys")
    if not keys:
        reader.problem(
            "ssh.authorizedKeys",
            "is required: at least one SSH public key of an operator (ssh-ed25519 AAAA... you@host)",
        )
        keys = []
    elif not isinstance(keys, list):
        reader.problem("ssh.authorizedKeys", f"expected a list of SSH public keys, got {keys!r}")
        keys = []
    bad_keys = False
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not _SSH_KEY.fullmatch(key.strip()):
            shown = key[:40] + "..." if isinstance(key, str) and len(key) > 40 else key
            reader.problem(f"ssh.authorizedKeys[{i}]", f"{shown!r} is not an SSH public key")
            bad_keys = True
    jump = None
    if data.get("jumpHost") is not None:
        jump_values = reader.section(data["jumpHost"], "ssh.jumpHost", JumpHost)
        if "host" in jump_values and "user" in jump_values:
            jump = JumpHost(**jump_values)
    user = values.get("user")
    valid_user = user is not None and declared(SshSpec, "user").out_of_range(user) is None
    if valid_user and (user in RESERVED_USERS or user.startswith(("systemd-", "_"))):
        reader.problem(
            "ssh.user",
            f"{user!r} is a system or service account; the deploy user gets passwordless sudo, "
            "so it needs a name of its own (e.g. pgha)",
        )
    if not keys or bad_keys:
        return None
    return SshSpec(authorized_keys=tuple(k.strip() for k in keys), jump_host=jump, **values)


# ---- rules across keys, and the sections with lists or nested objects ----


def _check_ports(reader: Reader, spec: dict[str, Any]) -> None:
    """Every service of a VM listens on its node IP, so no two may share a port.

    Each port's range is its declaration in pgha.spec, checked as it is read."""
    ports = {
        "postgres.port": spec["postgres"].port,
        "patroni.restApiPort": spec["patroni"].rest_api_port,
        "haproxy.primaryPort": spec["haproxy"].primary_port,
        "haproxy.replicaPort": spec["haproxy"].replica_port,
        "haproxy.statsPort": spec["haproxy"].stats_port,
        "etcd.clientPort": spec["etcd"].client_port,
        "etcd.peerPort": spec["etcd"].peer_port,
        "ssh.port": spec["ssh_port"],
    }
    if spec["backup_tls_port"] is not None:
        ports["backup.tlsPort"] = spec["backup_tls_port"]
    if spec.get("monitoring_port") is not None:
        ports["monitoring.port"] = spec["monitoring_port"]
    if spec.get("pooler") is not None:
        ports["pooler.port"] = spec["pooler"].port
        ports["pooler.listenPort"] = spec["pooler"].listen_port
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            reader.problem(key, f"port {port} collides with {NAMESPACE}:{seen[port]} on every VM")
        else:
            seen[port] = key


def _check_patroni(reader: Reader, patroni: PatroniSpec, replicas: int) -> None:
    """The lock's timing against itself, and the standbys against the replicas there are."""
    count = patroni.synchronous_node_count
    if count is not None and not 1 <= count <= max(replicas, 1):
        reader.problem(
            "patroni.synchronousNodeCount", f"{count} is not between 1 and the {replicas} replicas"
        )
    if 0 < patroni.member_slots_ttl < patroni.ttl:
        reader.problem(
            "patroni.memberSlotsTtl",
            f"{patroni.member_slots_ttl} s is shorter than pgha:patroni.ttl ({patroni.ttl} s), after which "
            "a silent member's key expires: use 0 (drop its slot then) or at least the ttl",
        )
    if patroni.loop_wait + 2 * patroni.retry_timeout > patroni.ttl:
        reader.problem(
            "patroni.ttl",
            f"loopWait + 2 x retryTimeout = {patroni.loop_wait + 2 * patroni.retry_timeout} s "
            f"exceeds ttl {patroni.ttl} s: a leader could lose its lock while still retrying",
        )


def _read_backup(reader: Reader, raw: Any, config: dict[str, Any]) -> BackupSpec | None:
    """The pgBackRest section; its repository VM is read with the other nodes."""
    if raw is None:
        return None
    values = reader.section(raw, "backup", BackupSpec, extra=("repositoryVm", "offsite"))
    kind = values.get("repository")
    if kind is None:
        return None
    data = reader.mapping(raw, "backup")
    if kind == "host" and data.get("repositoryVm") is None:
        reader.problem("backup.repositoryVm", "is required with repository host (an object: name, host, ip)")
    if kind != "host" and data.get("repositoryVm") is not None:
        reader.problem("backup.repositoryVm", f"only applies to repository host, not {kind}")
    if kind == "s3":
        for name in ("s3_bucket", "s3_endpoint", "s3_region"):
            if not values.get(name):
                reader.problem(f"backup.{camel(name)}", "is required with repository s3")
        for key in ("backupS3Key", "backupS3KeySecret"):
            if not config.get(key):
                reader.problem(
                    key, f"is required with repository s3: pulumi config set --secret pgha:{key} ..."
                )
    if kind in ("host", "path") and "path" in data and not reader.failed("backup.path"):
        _check_backup_path(reader, values["path"])
    elif kind == "s3" and not reader.failed("backup.path") and _dot_segment(values.get("path", "")):
        reader.problem("backup.path", f"{values['path']!r} has a '.' or '..' segment")
    offsite = _read_offsite(reader, data.get("offsite"), config, values.get("cipher", "aes-256-cbc"))
    if reader.failed("backup"):
        return None
    return BackupSpec(**values, offsite=offsite)


def _read_offsite(reader: Reader, raw: Any, config: dict[str, Any], cipher: str) -> OffsiteSpec | None:
    """``backup.offsite``: the second repository, in a bucket away from the machine room."""
    if raw is None:
        return None
    values = reader.section(raw, "backup.offsite", OffsiteSpec, extra=("caCertificate",))
    data = reader.mapping(raw, "backup.offsite")
    for key in ("backupOffsiteKey", "backupOffsiteKeySecret"):
        if not config.get(key):
            reader.problem(key, f"is required with backup.offsite: pulumi config set --secret pgha:{key} ...")
    if cipher == "none":
        # The bucket is someone else's disk: what leaves the machine room is encrypted.
        reader.problem(
            "backup.offsite", "needs backup.cipher aes-256-cbc: the off-site copy is never unencrypted"
        )
    ca = data.get("caCertificate")
    if ca is not None:
        if not isinstance(ca, str) or not _CA_CERTIFICATES.match(ca.strip() + "\n"):
            reader.problem(
                "backup.offsite.caCertificate",
                "is not PEM certificates (-----BEGIN CERTIFICATE----- ...); "
                "set it with: pulumi config set --path pgha:backup.offsite.caCertificate < ca.pem",
            )
            ca = None
        else:
            ca = ca.strip() + "\n"
    if reader.failed("backup.offsite"):
        return None
    return OffsiteSpec(**values, ca_certificate=ca)


def _dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _check_backup_path(reader: Reader, path: str) -> None:
    """A local repository directory: root makes it postgres's, so only under the allowed roots."""
    if _dot_segment(path):
        reader.problem("backup.path", f"{path!r} has a '.' or '..' segment: give the directory itself")
        return
    path = path.rstrip("/") or "/"
    own = path == BACKUP_OWN_ROOT or path.startswith(f"{BACKUP_OWN_ROOT}/")
    if not own and not any(path.startswith(f"{root}/") for root in BACKUP_PARENT_ROOTS):
        allowed = ", ".join(f"{root}/..." for root in BACKUP_PARENT_ROOTS)
        reader.problem(
            "backup.path",
            f"{path!r} is not {BACKUP_OWN_ROOT} (or below it) nor below {allowed}: root makes it "
            "postgres's own, so it must never be a system directory",
        )


def _read_restore(reader: Reader, raw: Any, backup: Any) -> RestoreSpec | None:
    """``pgha:restore``: bootstrap a fresh cluster from the backup repository (see RestoreSpec)."""
    if raw is None:
        return None
    values = reader.section(raw, "restore", RestoreSpec)
    if backup is None:
        reader.problem("restore", "needs pgha:backup: the repository the cluster is restored from")
    elif values.get("repository") == "offsite" and not (isinstance(backup, dict) and backup.get("offsite")):
        reader.problem("restore.repository", "offsite needs backup.offsite: the bucket to restore from")
    if values.get("time") is not None and values.get("label") is not None:
        reader.problem("restore.label", "give time or label, not both")
    if reader.failed("restore"):
        return None
    return RestoreSpec(**values)


def _read_parameters(reader: Reader, parameters: dict[str, Any]) -> dict[str, str | int | float]:
    """PostgreSQL settings: names with scalar values, since they go into Patroni's dynamic
    config and are compared with the running cluster's. YAML booleans (``on`` unquoted)
    become PostgreSQL's ``on``/``off``."""
    values: dict[str, str | int | float] = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not _PG_PARAMETER.fullmatch(name):
            reader.problem(f"postgres.parameters.{name}", "is not a PostgreSQL parameter name")
        elif isinstance(value, bool):
            values[name] = "on" if value else "off"
        elif not isinstance(value, (str, int, float)) or value == "":
            reader.problem(f"postgres.parameters.{name}", f"expected a string or a number, got {value!r}")
        else:
            values[name] = value
    return values


def _read_monitoring(reader: Reader, raw: Any) -> MonitoringSpec | None:
    """The metrics section: who may scrape (a list of CIDRs) and on which port."""
    if raw is None:
        return None
    values = reader.section(raw, "monitoring", MonitoringSpec)
    data = reader.mapping(raw, "monitoring")
    allow = data.get("allowFrom")
    networks: list[IPv4Network] = []
    if not isinstance(allow, list) or not allow:
        reader.problem("monitoring.allowFrom", f"is required: a non-empty list of CIDRs, got {allow!r}")
    else:
        for index, item in enumerate(allow):
            key = f"monitoring.allowFrom[{index}]"
            if not isinstance(item, str):
                reader.problem(key, f"expected a CIDR string such as 10.0.0.250/32, got {item!r}")
                continue
            try:
                network = ip_network(item, strict=True)
            except ValueError as error:
                reader.problem(key, f"{item!r} is not an IPv4 network ({error})")
                continue
            if not isinstance(network, IPv4Network):
                reader.problem(key, f"{item!r} is not an IPv4 network")
                continue
            networks.append(network)
    if reader.failed("monitoring"):
        return None
    return MonitoringSpec(allow_from=tuple(networks), **values)


def _read_optional_section(reader: Reader, raw: Any, key: str, cls: type) -> dict[str, Any] | None:
    """An opt-in section's values: absent means off, ``{}`` the defaults; None when anything is wrong."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        reader.problem(key, f"expected an object (use {{}} for the defaults), got {raw!r}")
        return None
    before = len(reader.problems)
    values = reader.section(raw, key, cls)
    return values if len(reader.problems) == before else None


_PGP_PUBLIC_KEY = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\n([\x20-\x7e]*\n)+-----END PGP PUBLIC KEY BLOCK-----\n"
)


def _read_repository(reader: Reader, raw_postgres: Any) -> PostgresRepositorySpec | None:
    """``postgres.repository``: absent means the image's own packages only."""
    raw = raw_postgres.get("repository") if isinstance(raw_postgres, dict) else None
    values = _read_optional_section(reader, raw, "postgres.repository", PostgresRepositorySpec)
    if values is None:
        return None
    key = raw.get("key")
    if key is None:
        reader.problem(
            "postgres.repository.key",
            "is required: the repository's signing key (pulumi config set --path "
            "pgha:postgres.repository.key < key.asc)",
        )
        return None
    if not isinstance(key, str) or not _PGP_PUBLIC_KEY.fullmatch(key.strip() + "\n"):
        reader.problem(
            "postgres.repository.key",
            "is not an ASCII-armored key (-----BEGIN PGP PUBLIC KEY BLOCK----- ...)",
        )
        return None
    return PostgresRepositorySpec(**values, key=key.strip() + "\n")


def _versions(versions: tuple[int, ...]) -> str:
    return ", ".join(map(str, versions)) or "none"


def _check_postgres_version(reader: Reader, postgres: PostgresSpec, image: str) -> None:
    """The major must come from the image, or from the PGDG repository with ``repository`` named."""
    shipped = IMAGE_POSTGRES_VERSIONS.get(image, ())
    if postgres.version in shipped or reader.failed("postgres.repository"):
        return
    pgdg = PGDG_POSTGRES_VERSIONS.get(image, ())
    if postgres.repository is None:
        reader.problem(
            "postgres.version",
            f"PostgreSQL {postgres.version} is not in the {image} image (it provides {_versions(shipped)})"
            + (
                f"; PGDG's {PGDG_SUITES[image]} has it: name that repository in postgres.repository"
                if postgres.version in pgdg
                else ""
            ),
        )
    elif postgres.version not in pgdg:
        reader.problem(
            "postgres.version",
            f"PostgreSQL {postgres.version} is in neither the {image} image ({_versions(shipped)}) "
            f"nor the PGDG repository for it ({_versions(pgdg)})",
        )


def _read_pooler(reader: Reader, raw: Any) -> PoolerSpec | None:
    """``pgha:pooler``: absent means no PgBouncer at all; ``{}`` means the defaults."""
    values = _read_optional_section(reader, raw, "pooler", PoolerSpec)
    return None if values is None else PoolerSpec(**values)


def _read_import(
    reader: Reader, raw: Any, config: dict[str, Any], databases: tuple[DatabaseSpec, ...]
) -> ImportSpec | None:
    """``pgha:import``: the source server, its CA, and which declared databases move in."""
    if raw is None:
        return None
    values = reader.section(raw, "import", ImportSpec, extra=("databases", "caCertificate"))
    data = reader.mapping(raw, "import")
    if not config.get("importPassword"):
        reader.problem(
            "importPassword", "is required with import: pulumi config set --secret pgha:importPassword ..."
        )
    ca = data.get("caCertificate")
    if ca is None:
        reader.problem(
            "import.caCertificate",
            "is required: set it with pulumi config set --path pgha:import.caCertificate < ca.pem",
        )
    elif not isinstance(ca, str) or not _CA_CERTIFICATES.match(ca.strip() + "\n"):
        reader.problem(
            "import.caCertificate",
            "is not PEM certificates (-----BEGIN CERTIFICATE----- ...); "
            "set it with: pulumi config set --path pgha:import.caCertificate < ca.pem",
        )
    names = data.get("databases")
    present = {d.name for d in databases if d.state == "present"}
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        reader.problem("import.databases", f"expected a non-empty list of database names, got {names!r}")
        names = []
    for index, name in enumerate(names):
        if name not in present:
            reader.problem(
                f"import.databases[{index}]",
                f"{name!r} is not a present entry of pgha:databases: declare it there first (its owner owns "
                "what moves in)",
            )
    if len(set(names)) != len(names):
        reader.problem("import.databases", "names a database twice")
    if reader.failed("import") or reader.failed("importPassword"):
        return None
    return ImportSpec(**values, databases=tuple(names), ca_certificate=ca.strip() + "\n")


def _read_fast_path(reader: Reader, raw: Any) -> FastPathSpec | None:
    """``pgha:fastPath``: absent means HAProxy serves VIP:5432 alone; ``{}`` means the defaults."""
    values = _read_optional_section(reader, raw, "fastPath", FastPathSpec)
    return None if values is None else FastPathSpec(**values)


def _read_allow_from(reader: Reader, raw: Any) -> tuple[IPv4Network, ...]:
    """patroni.restApiAllowFrom: IPv4 addresses or networks, as a list."""
    data = raw if isinstance(raw, dict) else {}
    value = data.get("restApiAllowFrom")
    if value is None:
        return ()
    if not isinstance(value, list):
        reader.problem("patroni.restApiAllowFrom", f"expected a list of IPv4 networks, got {value!r}")
        return ()
    networks = []
    for index, item in enumerate(value):
        try:
            networks.append(IPv4Network(str(item), strict=True))
        except ValueError as exc:
            reader.problem(f"patroni.restApiAllowFrom[{index}]", f"{item!r} is not an IPv4 network ({exc})")
    return tuple(networks)


def _check_encrypted(reader: Reader, config: dict[str, Any], encrypted: set[str]) -> None:
    """Secrets held in clear text in the stack file: refused, so they never sit in Git unencrypted."""
    commands = {
        "backupCipherPassphrase": "pulumi stack output --show-secrets backupCipherPassphrase --stack OLD | "
        f"pulumi config set --secret {NAMESPACE}:backupCipherPassphrase",
        "rolePasswords": f"pulumi config set --secret --path '{NAMESPACE}:rolePasswords.ROLE' PASSWORD",
    }
    for key in SECRET_KEYS:
        if config.get(key) is not None and key not in encrypted:
            command = commands.get(key, f"pulumi config set --secret {NAMESPACE}:{key} VALUE")
            reader.problem(key, f"is stored in clear text; set it with {command}")
    ssh = config.get("ssh")
    jump = ssh.get("jumpHost") if isinstance(ssh, dict) else None
    if isinstance(jump, dict) and jump.get("privateKey") and "ssh" not in encrypted:
        reader.problem(
            "ssh.jumpHost.privateKey",
            f"is stored in clear text; set it with "
            f"pulumi config set --secret --path '{NAMESPACE}:ssh.jumpHost.privateKey' < KEYFILE",
        )


def _check_tls(reader: Reader, tls: TlsSpec) -> None:
    if tls.ca_validity_days <= tls.cert_validity_days:
        reader.problem(
            "tls.caValidityDays",
            f"{tls.ca_validity_days} days must exceed tls.certValidityDays ({tls.cert_validity_days}): "
            "a node certificate must not outlive the CA that signed it",
        )


def load_spec(config: dict[str, Any], stack: str, encrypted: Collection[str] | None = None) -> ClusterSpec:
    """Validate the ``pgha:`` namespace (keys without prefix) and build the spec.

    ``encrypted`` are the top-level keys the stack keeps encrypted (``--secret``),
    as the caller reads them from the engine or the stack file: a secret key
    outside it is refused. None: the caller holds no stack (a test, a lab
    variant of a stack already checked), so nothing is known to be clear text.
    """
    reader = Reader()
    config = {k.removeprefix(f"{NAMESPACE}:"): v for k, v in config.items()}
    if encrypted is not None:
        _check_encrypted(reader, config, {k.removeprefix(f"{NAMESPACE}:") for k in encrypted})
    # Before anything reads a value: no string anywhere, secrets included, may
    # carry a control character into a config line or a script.
    for key, value in _without_jump_host_key(config).items():
        reader.control_characters(value, key, secret=key in (*SUPPLIED.values(), *SECRET_KEYS))
    for unknown in sorted(set(config) - set(KNOWN_KEYS)):
        reader.problem(unknown, f"unknown key (known: {', '.join(KNOWN_KEYS)})")

    network = _read_network(reader, config.get("network"))
    network = _resolve_mtu(reader, network)
    cidr = network.cidr if network else None
    nodes = [dataclasses.replace(n, stack=stack) for n in _read_nodes(reader, config, cidr)]
    vip = reader.ipv4(config.get("vip"), "vip")
    if vip is not None and cidr is not None:
        if vip not in cidr:
            reader.problem("vip", f"{vip} is outside pgha:network.cidr {cidr}")
        elif vip in (cidr.network_address, cidr.broadcast_address):
            reader.problem("vip", f"{vip} is the network or broadcast address of {cidr}")
    for node in nodes:
        if vip is not None and node.ip == vip:
            reader.problem("vip", f"{vip} is also the IP of VM {node.name}")
    if network and network.gateway and (network.gateway == vip or network.gateway in {n.ip for n in nodes}):
        reader.problem("network.gateway", f"{network.gateway} is also the VIP or a VM's IP")

    ssh = _read_ssh(reader, config.get("ssh"))
    postgres_values = reader.section(config.get("postgres"), "postgres", PostgresSpec)
    postgres_values["parameters"] = _read_parameters(reader, postgres_values.get("parameters") or {})
    postgres_values["repository"] = _read_repository(reader, config.get("postgres"))
    postgres = PostgresSpec(**postgres_values)
    patroni_values = reader.section(config.get("patroni"), "patroni", PatroniSpec)
    patroni_values["rest_api_allow_from"] = _read_allow_from(reader, config.get("patroni"))
    patroni = PatroniSpec(**patroni_values)
    haproxy = HaproxySpec(**reader.section(config.get("haproxy"), "haproxy", HaproxySpec))
    etcd = EtcdSpec(**reader.section(config.get("etcd"), "etcd", EtcdSpec))
    vm = VmSpec(**reader.section(config.get("vm"), "vm", VmSpec))
    tls = TlsSpec(**reader.section(config.get("tls"), "tls", TlsSpec))
    maintenance = MaintenanceSpec(**reader.section(config.get("maintenance"), "maintenance", MaintenanceSpec))
    secret_rotation = SecretRotationSpec(
        **reader.section(config.get("secretRotation"), "secretRotation", SecretRotationSpec)
    )
    # The router id defaults to the VIP's last octet: a VIP per segment, a router id per VIP.
    router_id = int(vip.packed[-1]) if vip else 1
    keepalived_values = reader.section(
        config.get("keepalived"), "keepalived", KeepalivedSpec, defaults={"virtual_router_id": router_id}
    )
    keepalived = KeepalivedSpec(**keepalived_values)
    _check_postgres_version(reader, postgres, vm.image)
    for name in sorted(set(postgres.parameters) & set(MANAGED_PARAMETERS)):
        reader.problem(
            f"postgres.parameters.{name}",
            "is managed by pgha (TLS, scram-sha-256, listeners, programs, ALTER SYSTEM) "
            "and cannot be overridden",
        )
    _check_patroni(reader, patroni, len([n for n in nodes if n.runs_postgres]) - 1)
    backup = _read_backup(reader, config.get("backup"), config)
    if patroni.etcd_api == "v3" and backup is not None and backup.repository == "host":
        # Under v3 etcd checks no client name (its own gRPC gateway would fail the
        # check), so every certificate of the CA writes Patroni's keys: the
        # repository VM's too, which is meant to reach the database VMs'
        # pgBackRest only.
        reader.problem(
            "patroni.etcdApi",
            "v3 cannot go with backup.repository host: etcd then admits the repository VM's "
            "certificate and it could write Patroni's keys; use v2 or an s3 repository",
        )
    monitoring = _read_monitoring(reader, config.get("monitoring"))
    pooler = _read_pooler(reader, config.get("pooler"))
    fast_path = _read_fast_path(reader, config.get("fastPath"))
    restore = _read_restore(reader, config.get("restore"), config.get("backup"))
    _check_ports(
        reader,
        {
            "postgres": postgres,
            "patroni": patroni,
            "haproxy": haproxy,
            "etcd": etcd,
            "ssh_port": ssh.port if ssh else 22,
            "backup_tls_port": backup.tls_port if backup else None,
            "monitoring_port": monitoring.port if monitoring else None,
            "pooler": pooler,
        },
    )
    _check_tls(reader, tls)
    databases, roles = _read_applications(reader, config)
    importing = _read_import(reader, config.get("import"), config, databases)
    clients = _read_clients(reader, config.get("clients"))
    if vm.template_vm_id is not None and vm.template_node is None:
        reader.problem("vm.templateNode", "is required with vm.templateVmId (the node holding the template)")
    _check_vm_image(reader, config.get("vm"), vm)
    _check_jump_host_key(reader, ssh)

    if reader.problems or network is None or vip is None or ssh is None:
        raise ConfigError(reader.problems or ["incomplete config"])
    spec = ClusterSpec(
        stack=stack,
        vip=vip,
        network=network,
        nodes=tuple(nodes),
        ssh=ssh,
        postgres=postgres,
        patroni=patroni,
        haproxy=haproxy,
        keepalived=keepalived,
        etcd=etcd,
        vm=vm,
        tls=tls,
        backup=backup,
        maintenance=maintenance,
        secret_rotation=secret_rotation,
        databases=databases,
        roles=roles,
        clients=clients,
        monitoring=monitoring,
        restore=restore,
        pooler=pooler,
        fast_path=fast_path,
        importing=importing,
    )
    # etcd.members() is the one place that decides who votes: ask it.
    voters = len(etcd_members(spec))
    if voters > MAX_ETCD_MEMBERS:
        raise ConfigError(
            [
                f"{NAMESPACE}:vms: {voters} etcd members (every VM, on two Proxmox hosts) is more than "
                f"{MAX_ETCD_MEMBERS}: use fewer VMs, or a witness on a third host (one member per host)"
            ]
        )
    return spec


# ---- applications: pgha:databases, pgha:roles, pgha:rolePasswords, pgha:clients ----

# Lowercase SQL identifiers only: they read the same quoted or not, in SQL,
# pg_hba and connection URLs.
_SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_EXTENSION = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
# pgha's own roles (the superuser, replication, pg_rewind, the metrics
# exporter's; pgha_verify and pgha_pooler by their prefix), pg_hba keywords
# and names PostgreSQL reserves or treats specially.
RESERVED_ROLES = frozenset(
    {"postgres", "replicator", "rewind_user", "prometheus", "public", "all", "replication", "none"}
    | {"samerole", "samegroup", "sameuser", "current_user", "current_role", "session_user"}
)
RESERVED_DATABASES = frozenset({"postgres", "all", "replication", "samerole", "samegroup", "sameuser"})
# Predefined roles an application role may join (not pg_read_server_files,
# pg_write_server_files or pg_execute_server_program, which reach the OS as
# postgres): the same list pgha-databases manages, so one place decides it.
GRANTABLE_PREDEFINED = frozenset(databases_tool.GRANTABLE_PREDEFINED)
_PASSWORD = re.compile(r"[\x21-\x7e]{16,128}")


def _reserved(name: str, reserved: frozenset[str]) -> str | None:
    """Why ``name`` may not be declared, or None."""
    if name in reserved:
        return "is reserved (pgha's own roles and PostgreSQL keywords)"
    if name.startswith("pg_"):
        return "starts with pg_, reserved by PostgreSQL"
    if name.startswith("pgha"):
        return "starts with pgha, reserved for pgha's own roles"
    if name.startswith("template"):
        return "starts with template, reserved for PostgreSQL's templates"
    return None


def _name(reader: Reader, raw: Any, key: str, reserved: frozenset[str]) -> str | None:
    if not isinstance(raw, str) or not _SQL_NAME.fullmatch(raw):
        reader.problem(key, f"{raw!r} must be a lowercase SQL name (a-z, 0-9, _; at most 63)")
        return None
    why = _reserved(raw, reserved)
    if why:
        reader.problem(key, f"{raw!r} {why}")
        return None
    return raw


def _list(reader: Reader, raw: Any, key: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.problem(key, f"expected a list, got {raw!r}")
        return []
    return raw


def _state(reader: Reader, data: dict[str, Any], key: str) -> Literal["present", "absent"]:
    state = data.get("state", "present")
    if state not in ("present", "absent"):
        reader.problem(f"{key}.state", f"{state!r} is not one of 'present', 'absent'")
        return "present"
    return state


def _read_role(reader: Reader, raw: Any, key: str) -> RoleSpec | None:
    data = reader.mapping(raw, key)
    reader.unknown_keys(data, key, (k.key for k in keys(RoleSpec)))
    name = _name(reader, data.get("name"), f"{key}.name", RESERVED_ROLES)
    login = reader.value(data.get("login", True), f"{key}.login", bool)
    limit_raw = data.get("connectionLimit", -1)
    limit = -1
    if isinstance(limit_raw, bool) or not isinstance(limit_raw, int) or limit_raw < -1:
        reader.problem(f"{key}.connectionLimit", f"{limit_raw!r} must be an integer, -1 (no limit) or more")
    else:
        limit = limit_raw
    rotation = reader.value(data.get("rotation", 0), f"{key}.rotation", int)
    groups: list[str] = []
    for i, group in enumerate(_list(reader, data.get("memberOf"), f"{key}.memberOf")):
        if isinstance(group, str) and group in GRANTABLE_PREDEFINED:
            groups.append(group)
        elif isinstance(group, str) and group.startswith("pg_"):
            allowed = ", ".join(sorted(GRANTABLE_PREDEFINED))
            reader.problem(
                f"{key}.memberOf[{i}]", f"{group!r} is not a predefined role one may join ({allowed})"
            )
        elif (checked := _name(reader, group, f"{key}.memberOf[{i}]", RESERVED_ROLES)) is not None:
            groups.append(checked)
    if name is None or login is None:
        return None
    return RoleSpec(
        name=name,
        login=login,
        connection_limit=limit,
        member_of=tuple(dict.fromkeys(groups)),
        state=_state(reader, data, key),
        rotation=rotation or 0,
    )


def _read_database(reader: Reader, raw: Any, key: str) -> DatabaseSpec | None:
    data = reader.mapping(raw, key)
    reader.unknown_keys(data, key, (k.key for k in keys(DatabaseSpec)))
    name = _name(reader, data.get("name"), f"{key}.name", RESERVED_DATABASES)
    owner = _name(reader, data.get("owner"), f"{key}.owner", RESERVED_ROLES)
    extensions: list[str] = []
    for i, ext in enumerate(_list(reader, data.get("extensions"), f"{key}.extensions")):
        if not isinstance(ext, str) or not _EXTENSION.fullmatch(ext):
            reader.problem(f"{key}.extensions[{i}]", f"{ext!r} is not an extension name")
        elif ext not in TRUSTED_EXTENSIONS:
            reader.problem(
                f"{key}.extensions[{i}]",
                f"{ext!r} is not a trusted extension; allowed: {', '.join(sorted(TRUSTED_EXTENSIONS))}",
            )
        else:
            extensions.append(ext)
    if name is None or owner is None:
        return None
    return DatabaseSpec(
        name=name, owner=owner, extensions=tuple(dict.fromkeys(extensions)), state=_state(reader, data, key)
    )


def _read_applications(
    reader: Reader, config: dict[str, Any]
) -> tuple[tuple[DatabaseSpec, ...], tuple[RoleSpec, ...]]:
    """Databases and roles, checked together: owners, memberships, duplicates, passwords."""
    raw_databases = config.get("databases")
    if raw_databases is None:
        databases: list[DatabaseSpec] = list(DEFAULT_DATABASES)
    else:
        entries = _list(reader, raw_databases, "databases")
        found = (_read_database(reader, raw, f"databases[{i}]") for i, raw in enumerate(entries))
        databases = [d for d in found if d is not None]
    entries = _list(reader, config.get("roles"), "roles")
    found_roles = (_read_role(reader, raw, f"roles[{i}]") for i, raw in enumerate(entries))
    roles = [r for r in found_roles if r is not None]
    for label, names in (("databases", [d.name for d in databases]), ("roles", [r.name for r in roles])):
        for name, count in Counter(names).items():
            if count > 1:
                reader.problem(label, f"{name!r} is declared more than once")
    declared = {r.name: r for r in roles}
    # An owner nobody declared becomes a login role of its own.
    for database in databases:
        if database.owner not in declared and database.state == "present":
            declared[database.owner] = RoleSpec(name=database.owner)
            roles.append(declared[database.owner])
    for i, database in enumerate(databases):
        owner = declared.get(database.owner)
        if database.state == "present" and owner is not None and owner.state == "absent":
            reader.problem(
                f"databases[{i}].owner", f"{database.owner!r} is declared absent but owns this database"
            )
    for i, role in enumerate(roles[: len(entries)]):
        if role.state == "absent":
            continue  # about to be dropped: its memberships go with it
        for group in role.member_of:
            if group.startswith("pg_"):
                continue
            if group == role.name:
                reader.problem(f"roles[{i}].memberOf", f"{role.name!r} cannot be a member of itself")
            elif group not in declared or declared[group].state == "absent":
                reader.problem(
                    f"roles[{i}].memberOf", f"{group!r} is not a role declared present in pgha:roles"
                )
    _check_cycles(reader, declared)
    _check_role_passwords(reader, config.get("rolePasswords"), declared)
    return tuple(databases), tuple(roles)


def _check_cycles(reader: Reader, roles: dict[str, RoleSpec]) -> None:
    """PostgreSQL refuses circular memberships; say so before anything runs."""

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for group in roles[start].member_of if start in roles else ():
            if group == target or (group not in seen and reaches(group, target, seen | {group})):
                return True
        return False

    for name in roles:
        if reaches(name, name, {name}):
            reader.problem("roles", f"{name!r} is in a circular memberOf chain")
            return


def _check_role_passwords(reader: Reader, raw: Any, roles: dict[str, RoleSpec]) -> None:
    """Given passwords (secret config): for declared login roles, printable ASCII without spaces."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        reader.problem("rolePasswords", "expected an object {role: password} (pulumi config set --secret)")
        return
    for name, password in raw.items():
        role = roles.get(name)
        if role is None or not role.login or role.state == "absent":
            reader.problem(f"rolePasswords.{name}", "is not a login role declared present")
        # Never echo the value: it is a secret.
        elif not isinstance(password, str) or not _PASSWORD.fullmatch(password):
            reader.problem(
                f"rolePasswords.{name}",
                "must be 16-128 printable ASCII characters without spaces (value hidden)",
            )


def _read_clients(reader: Reader, raw: Any) -> ClientsSpec:
    data = reader.mapping(raw, "clients")
    reader.unknown_keys(data, "clients", (k.key for k in keys(ClientsSpec)))
    networks: list[IPv4Network] = []
    for i, entry in enumerate(_list(reader, data.get("allowFrom"), "clients.allowFrom")):
        try:
            if not isinstance(entry, str):
                raise ValueError("not a string")
            networks.append(IPv4Network(entry, strict=True))
        except ValueError as exc:
            reader.problem(f"clients.allowFrom[{i}]", f"{entry!r} is not an IPv4 network ({exc})")
    return ClientsSpec(allow_from=tuple(networks))


# --- Proxmox-facing keys: vm.image*, network.mtu, ssh.jumpHost.privateKey --------

_CHECKSUM_LENGTHS = {"sha256": 64, "sha512": 128}
_IMAGE_URL = re.compile(r"^https?://[^\s'\"`$\\]+$")
_CA_CERTIFICATES = re.compile(
    r"^(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n)+$"
)
_PRIVATE_KEY = re.compile(
    r"^-----BEGIN ((?:OPENSSH |RSA |EC )?)PRIVATE KEY-----\n"
    r"[A-Za-z0-9+/=\n:,-]+\n-----END \1PRIVATE KEY-----\n?$"
)
MIN_MTU = 1280  # IPv6's minimum: nothing smaller is a sane guest MTU
MAX_MTU = 9000


def _check_vm_image(reader: Reader, raw: Any, vm: VmSpec) -> None:
    """A pinned image: URL and checksum go together, so no download is ever unchecked."""
    data = raw if isinstance(raw, dict) else {}
    given = {key for key in ("imageUrl", "imageChecksum") if data.get(key) is not None}
    if len(given) == 1:
        (missing,) = {"imageUrl", "imageChecksum"} - given
        reader.problem(
            f"vm.{missing}",
            "is required together with vm.imageUrl and vm.imageChecksum: an image is pinned by "
            "its URL and its checksum (see docs/proxmox-changes.md)",
        )
    if not _IMAGE_URL.match(vm.image_url):
        reader.problem("vm.imageUrl", f"{vm.image_url!r} is not an http(s) URL without spaces or quotes")
    elif "/latest/" in vm.image_url:
        reader.problem(
            "vm.imageUrl",
            f"{vm.image_url!r} changes under the same name: use a dated build "
            "(https://cloud.debian.org/images/cloud/trixie/<date>/...) and its checksum",
        )
    length = _CHECKSUM_LENGTHS.get(vm.image_checksum_algorithm)
    checksum = vm.image_checksum
    if length and not (isinstance(checksum, str) and re.fullmatch(rf"[0-9a-f]{{{length}}}", checksum)):
        reader.problem(
            "vm.imageChecksum",
            f"{checksum!r} is not a {vm.image_checksum_algorithm} checksum ({length} lowercase hex digits)",
        )


def _resolve_mtu(reader: Reader, network: NetworkSpec | None) -> NetworkSpec | None:
    """The guests' MTU: 1450 on a VXLAN zone unless set, and never more than the zone carries."""
    if network is None:
        return None
    vxlan = network.sdn is not None and network.sdn.type == "vxlan"
    if network.mtu is None:
        if vxlan:
            return dataclasses.replace(network, mtu=ETHERNET_MTU - VXLAN_OVERHEAD)
        return network
    ceiling = MAX_MTU - VXLAN_OVERHEAD if vxlan else MAX_MTU
    if not MIN_MTU <= network.mtu <= ceiling:
        extra = f" (a VXLAN zone costs {VXLAN_OVERHEAD} bytes of the hosts' MTU)" if vxlan else ""
        reader.problem("network.mtu", f"{network.mtu} is outside {MIN_MTU}-{ceiling}{extra}")
    return network


def _without_jump_host_key(config: dict[str, Any]) -> dict[str, Any]:
    """The config minus ``ssh.jumpHost.privateKey``, the CA certificates (``backup.offsite``,
    ``import``) and ``postgres.repository.key``: PEM and armor have newlines by nature;
    :func:`_check_jump_host_key`, :func:`_read_offsite`, :func:`_read_import` and
    :func:`_read_repository` hold them to strict patterns instead."""
    postgres = config.get("postgres")
    repository = postgres.get("repository") if isinstance(postgres, dict) else None
    if isinstance(repository, dict) and isinstance(repository.get("key"), str):
        repository = {k: v for k, v in repository.items() if k != "key"}
        config = {**config, "postgres": {**postgres, "repository": repository}}
    importing = config.get("import")
    if isinstance(importing, dict) and isinstance(importing.get("caCertificate"), str):
        config = {**config, "import": {k: v for k, v in importing.items() if k != "caCertificate"}}
    backup = config.get("backup")
    offsite = backup.get("offsite") if isinstance(backup, dict) else None
    if isinstance(offsite, dict) and isinstance(offsite.get("caCertificate"), str):
        offsite = {k: v for k, v in offsite.items() if k != "caCertificate"}
        config = {**config, "backup": {**backup, "offsite": offsite}}
    ssh = config.get("ssh")
    jump = ssh.get("jumpHost") if isinstance(ssh, dict) else None
    if not isinstance(jump, dict) or "privateKey" not in jump:
        return config
    return {**config, "ssh": {**ssh, "jumpHost": {k: v for k, v in jump.items() if k != "privateKey"}}}


def _check_jump_host_key(reader: Reader, ssh: SshSpec | None) -> None:
    jump = ssh.jump_host if ssh else None
    if jump is None or jump.private_key is None:
        return
    if jump.private_key.startswith(ENCRYPTED_STAND_IN):
        return  # encrypted in the stack file: the offline tools cannot read it (pgha.stackfile)
    if not _PRIVATE_KEY.match(jump.private_key.strip() + "\n"):
        # Never echo the value: it is (or should have been) a secret.
        reader.problem(
            "ssh.jumpHost.privateKey",
            "is not a PEM/OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY----- ...); "
            "set it with: pulumi config set --secret --path pgha:ssh.jumpHost.privateKey < KEYFILE",
        )
