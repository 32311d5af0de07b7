"""The typed cluster spec: the one object every renderer reads.

It is built only by :func:`pgha.config.load_spec`, after validation,
so renderers may trust every field (addresses parse, ports differ, and so on).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from .schema import Setting, setting

# Every pattern is applied as a whole (re.fullmatch): ``$`` alone would accept
# a trailing newline, which splits the lines it lands in.
HOSTNAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
PROXMOX_ID = r"[A-Za-z][A-Za-z0-9_.-]*"
# An absolute path of plain characters: it reaches pgBackRest's config and a root step.
ABSOLUTE_PATH = r"(/[A-Za-z0-9._-]+)+/?"
PORT = {"min": 1, "max": 65535, "message": "port {value} is outside {minimum}-{maximum}"}

NodeRole = Literal["postgres", "witness", "repository", "restore"]

# PostgreSQL major versions each VM image ships in its own archive. Debian 13
# carries exactly one server version; anything else needs the PGDG repository
# (``postgres.repository``), whose suite for that image carries these majors:
# the ones PostgreSQL supports that Patroni 4.0 and pgBackRest from that
# repository run (not tried here: the lab reaches Debian's mirror only).
IMAGE_POSTGRES_VERSIONS: dict[str, tuple[int, ...]] = {"debian-13": (17,)}
PGDG_POSTGRES_VERSIONS: dict[str, tuple[int, ...]] = {"debian-13": (14, 15, 16, 17, 18)}
PGDG_SUITES: dict[str, str] = {"debian-13": "trixie-pgdg"}

# A dated build, never ``latest/``: the same URL must always mean the same bytes,
# checked by the provider against this SHA-512 (see docs/proxmox-changes.md for
# where it comes from and how to move to a newer build).
DEBIAN_13_CLOUD_IMAGE = "https://cloud.debian.org/images/cloud/trixie/20250814-2204/debian-13-genericcloud-amd64-20250814-2204.qcow2"
DEBIAN_13_CLOUD_IMAGE_SHA512 = (
    "d76122c87c940d1ab9334f4307c98c01dc42f0b49a20cddf278d59b92d34ab63"
    "d05ac1f40dffda3d2d32e381f097706eee6ccbf79a596bfb2cbb3d83c635ae35"
)
# The extensions a database may get: those PostgreSQL 17 marks ``trusted``
# in their control files and Debian's postgresql-17 ships, i.e. what its owner
# could create without a superuser. pgha creates them as the superuser, so
# anything else (untrusted languages, file or network access, server-wide
# statistics) would hand the application role a superuser's reach.
TRUSTED_EXTENSIONS = frozenset(
    {
        "btree_gin", "btree_gist", "citext", "cube", "dict_int", "fuzzystrmatch", "hstore",
        "intarray", "isn", "lo", "ltree", "pg_trgm", "pgcrypto", "plpgsql", "seg", "tablefunc",
        "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "uuid-ossp",
    }
)  # fmt: skip
# A VXLAN zone wraps each frame in 50 bytes (outer Ethernet, IP, UDP, VXLAN headers).
VXLAN_OVERHEAD = 50
ETHERNET_MTU = 1500


@dataclass(frozen=True)
class Node:
    """One VM: where it runs and how it is reached on the private network."""

    name: str = setting(
        doc="the VM's host name", pattern=HOSTNAME, what="a valid hostname (a-z, 0-9, '-')", custom=True
    )
    host: str = setting(
        doc="the Proxmox node it runs on (an external witness: its failure domain, default its name)",
        pattern=PROXMOX_ID,
        what="a valid Proxmox node name",
        custom=True,
    )
    ip: IPv4Address = setting(
        doc="its address, inside `network.cidr` (an external witness's may be routed)", custom=True
    )
    role: NodeRole = "postgres"
    vm_id: int | None = setting(
        None,
        doc="the Proxmox VM id (default: Proxmox picks one); not for an external witness",
        min=100,
        max=999999999,
        message="{value} is outside Proxmox's {minimum}-{maximum}",
        custom=True,
    )
    # The stack the VM belongs to (set by load_spec): two stacks on one layer-2
    # network may both name their VMs psql-01..03, but must not share MACs.
    stack: str = ""
    # A machine that exists already (the witness on a NAS, a QDevice host, a
    # VPS): no VM is created for it; the steps reach it over SSH all the same.
    external: bool = setting(
        False,
        doc="`witness` only: an existing Debian 13 machine, no VM "
        "(see [two-hosts.md](two-hosts.md#a-witness-on-any-small-machine))",
        custom=True,
    )
    # An external machine's SSH host public key (``witness.hostKey``): the steps
    # pin it, as they pin the keys Pulumi generates for its VMs.
    host_key: str | None = setting(
        None,
        doc="`witness` with `external: true` only, and then required: its SSH host public key "
        "(`ssh-keyscan -t ed25519 <ip>`, without the address)",
        custom=True,
    )

    @property
    def mac(self) -> str:
        """A stable MAC in Proxmox's BC:24:11 range, so cloud-init can match the NIC."""
        digest = hashlib.sha256(f"{self.stack}\0{self.name}".encode()).digest()
        return "bc:24:11:" + ":".join(f"{b:02x}" for b in digest[:3])

    @property
    def runs_postgres(self) -> bool:
        return self.role == "postgres"

    @property
    def uses_etcd(self) -> bool:
        """Patroni or an etcd member: the only nodes whose certificate etcd admits.

        Not the backup repository nor a restore machine: a certificate of the
        cluster's CA alone must not give write access to Patroni's keys.
        """
        return self.role in ("postgres", "witness")


@dataclass(frozen=True)
class SdnSpec:
    """A Proxmox SDN zone and vnet that the program creates for the private network."""

    zone: str = setting(
        doc="the SDN zone pgha creates",
        pattern=r"[a-z][a-z0-9]{0,7}",
        message="{value!r} must be 1-8 lowercase letters or digits, starting with a letter",
        range_doc="1-8 of a-z, 0-9, starting with a letter",
    )
    vnet: str = setting(
        doc="the vnet in it, the VMs' NIC's bridge",
        pattern=r"[a-z][a-z0-9]{0,7}",
        message="{value!r} must be 1-8 lowercase letters or digits, starting with a letter",
        range_doc="1-8 of a-z, 0-9, starting with a letter",
    )
    type: Literal["vlan", "vxlan"] = setting(doc="the zone's kind")
    tag: int = setting(doc="the VLAN tag or VXLAN id")
    bridge: str | None = setting(
        None, doc="a `vlan` zone (required there): the VLAN-aware bridge it rides on"
    )
    peers: tuple[str, ...] = setting(
        (),
        doc="a `vxlan` zone (required there): the Proxmox hosts' peer addresses",
        custom=True,
        type_doc="list of IPv4 addresses",
    )


@dataclass(frozen=True)
class NetworkSpec:
    cidr: IPv4Network = setting(
        doc="private IPv4 network of the VMs (etcd, Patroni, replication, VIP)",
        custom=True,
        type_doc="IPv4 network",
        range_doc="at least 8 addresses",
    )
    interface: str = setting(
        "ens18",
        doc="name the private NIC gets inside the VMs (matched by MAC)",
        pattern=r"[A-Za-z0-9_.-]{1,15}",
        what="a valid interface name",
    )
    gateway: IPv4Address | None = setting(
        None, doc="default route of the VMs (needed to reach a mirror); inside `cidr`", custom=True
    )
    dns: tuple[IPv4Address, ...] = setting(
        (),
        doc="resolvers (the VMs resolve the Debian mirror)",
        custom=True,
        type_doc="list of IPv4 addresses",
        range_doc="required with `gateway`",
    )
    bridge: str | None = setting(None, doc="existing Proxmox bridge on every host (or use `sdn`)")
    vlan: int | None = setting(
        None,
        doc="VLAN tag on that bridge",
        min=1,
        max=4094,
        message="VLAN tag {value} is outside {minimum}-{maximum}",
    )
    sdn: SdnSpec | None = setting(
        None, doc="a Proxmox SDN zone and vnet pgha creates (instead of `bridge`)", custom=True
    )
    # The guests' MTU (and the SDN zone's); load_spec defaults it to 1450 on a
    # VXLAN zone, None leaves the bridge's own MTU.
    mtu: int | None = setting(
        None,
        doc="MTU of the private NIC and of the SDN zone",
        default_doc="`1450` on a VXLAN zone, else the bridge's",
        range_doc="1280-9000 (8950 on a VXLAN zone)",
    )

    def interface_address(self, ip: IPv4Address) -> IPv4Interface:
        return IPv4Interface(f"{ip}/{self.cidr.prefixlen}")


@dataclass(frozen=True)
class PostgresRepositorySpec:
    """An APT repository for a major the image does not ship: the PGDG repository (apt.postgresql.org)."""

    url: str = setting(
        doc="e.g. `https://apt.postgresql.org/pub/repos/apt`",
        required="is required: the repository's https URL",
        pattern=r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?",
        what="an https URL",
    )
    suite: str = setting(
        "trixie-pgdg", doc="its suite for the image", pattern=r"[a-z0-9][a-z0-9.-]*", what="a suite name"
    )
    key: str = setting(
        "",
        doc="its signing key, ASCII-armored",
        custom=True,
        default_doc="required",
    )


@dataclass(frozen=True)
class PostgresSpec:
    version: int = setting(
        17,
        doc="PostgreSQL major: the image's (Debian 13: 17), or 14-18 with `repository`",
    )
    port: int = setting(5442, doc="PostgreSQL's own port (HAProxy owns 5432/5433)", **PORT)
    scope: str = setting(
        "pgha",
        doc="Patroni cluster name; data in `/var/lib/postgresql/17/<scope>`",
        pattern=HOSTNAME,
        message="{value!r} must be a lowercase name (a-z, 0-9, '-')",
        range_doc="a-z, 0-9, '-'",
    )
    parameters: dict[str, str | int | float] = setting(
        factory=dict,
        doc="extra PostgreSQL parameters (name → string or number), in Patroni's dynamic config: applied to "
        "the running cluster by `pulumi up`, with a rolling restart when one needs it (see "
        "[Changing configuration](operations.md#changing-configuration)); the TLS, listener and "
        "`password_encryption` ones are pgha's and refused here",
        default_doc="`{}`",
    )
    repository: PostgresRepositorySpec | None = setting(
        None,
        doc="PGDG's APT repository ([major-upgrade.md](major-upgrade.md))",
        custom=True,
    )

    @property
    def bin_dir(self) -> str:
        return f"/usr/lib/postgresql/{self.version}/bin"

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.version}/{self.scope}"


@dataclass(frozen=True)
class PatroniSpec:
    rest_api_port: int = setting(8008, doc="Patroni REST API", **PORT)
    # Tuned in the lab (docs/ha.md, "Failover timing"): within the maintainers' safe
    # range (ttl >= 20, loop_wait + 2 x retry_timeout <= ttl).
    ttl: int = setting(
        20,
        doc="leader lock timeout; loopWait + 2 x retryTimeout ≤ ttl is enforced",
        min=20,
        message="{value} s is below {minimum} s, the minimum Patroni's maintainers call safe",
    )
    # 1 s: the leader drops a dead synchronous standby (and notices a switchover
    # request) within a second; the price is one leader-key write a second.
    loop_wait: int = setting(
        1, doc="seconds between Patroni's loops", min=1, message="must be at least 1 s, got {value}"
    )
    retry_timeout: int = setting(
        7,
        doc="seconds Patroni retries etcd and PostgreSQL",
        min=1,
        message="must be at least 1 s, got {value}",
    )
    maximum_lag_on_failover: int = setting(1048576, doc="bytes a replica may lag and still be promoted")
    synchronous_mode: bool = setting(
        True,
        doc="a commit is acknowledged only once a standby has it "
        "(non-strict: a lone survivor still accepts writes)",
    )
    # Host-aware synchronous replication (docs/ha-durability.md): standbys that
    # share the primary's Proxmox host carry Patroni's nosync tag, so a commit
    # waits only for a standby on another host.
    host_aware_sync: bool = setting(
        True,
        doc="that standby is on another Proxmox host than the primary; the ones on its host are tagged "
        "nosync ([ha-durability.md](ha-durability.md))",
    )
    # None: one synchronous standby with host-aware sync, else every replica
    # (see ClusterSpec.sync_standbys()).
    synchronous_node_count: int | None = setting(
        None,
        doc="how many standbys confirm each commit",
        default_doc="1 with host-aware sync, else every replica",
        range_doc="1 to the number of replicas",
    )
    failsafe_mode: bool = setting(
        True, doc="a primary that loses etcd but still sees all members keeps running"
    )
    # About 2 s of every primary failover: Patroni's leader race waits that long
    # for the dead former leader's REST API (pgha/leader_race).
    leader_race_fail_fast: bool = setting(
        True,
        doc="Patroni's calls to a peer whose REST API has been silent for ttl/2 are refused at once, "
        "so a failover does not wait 2 s for the dead primary ([ha.md](ha.md))",
    )
    # Which etcd API Patroni's DCS uses: v2 (TTL keys; see pgha/patroni's render
    # for why) or v3 (leases), for the comparison in docs/ha-durability.md.
    etcd_api: Literal["v2", "v3"] = setting(
        "v2",
        doc="the etcd API of Patroni's DCS: `v2` (TTL keys, the tested default) or `v3` (leases, not for "
        "production, refused with `backup.repository: host`; see "
        "[ha-durability.md](ha-durability.md#etcds-v2-api-and-the-way-off-it))",
    )
    # Seconds the leader keeps the replication slot of a member whose key is
    # gone (Patroni 4's member_slots_ttl, its default): a crashed replica
    # finds its WAL when it returns; a VM removed by a scale-in loses its slot
    # only then. 0 drops slots as soon as a member's key expires.
    member_slots_ttl: int = setting(
        1800,
        doc="seconds the leader keeps a gone member's replication slot (and WAL), so a crashed VM finds "
        "its WAL; `0` drops it when the member's key expires",
        range_doc="`0` or at least `patroni.ttl`",
    )
    watchdog: Literal["off", "automatic", "required"] = setting(
        "automatic", doc="use `/dev/watchdog` (softdog) when present"
    )
    # Networks (besides the members) that may call the REST API's unsafe
    # endpoints (switchover, restart, config), password still required.
    rest_api_allow_from: tuple[IPv4Network, ...] = setting(
        (),
        doc="IPv4 addresses or networks that may call the REST API's unsafe endpoints (switchover, restart, "
        "config) besides the cluster's members; the password is still required (see docs/security.md)",
        custom=True,
    )


@dataclass(frozen=True)
class HaproxySpec:
    primary_port: int = setting(5432, doc="listener of the primary (on the VIP and each VM)", **PORT)
    replica_port: int = setting(5433, doc="listener of the replicas", **PORT)
    stats_port: int = setting(
        7000, doc="stats and `/health` on the private IP (metrics are on the monitoring port)", **PORT
    )
    check_inter_ms: int = setting(2000, doc="health-check interval of an UP server")
    # A server in transition (DOWN going UP: a new primary) is re-checked this
    # soon, so it is UP rise checks later: 2 x 250 ms after its first success.
    check_fastinter_ms: int = setting(250, doc="health-check interval of a server in transition")
    # A DOWN server (a replica on the primary port) is checked this often, so a
    # newly promoted primary is found within rise x downinter.
    check_downinter_ms: int = setting(500, doc="health-check interval of a DOWN server")
    check_fall: int = setting(
        3, doc="failed checks that take a server DOWN", min=1, message="must be at least 1, got {value}"
    )
    check_rise: int = setting(
        2, doc="passed checks that bring a server UP", min=1, message="must be at least 1, got {value}"
    )
    max_replica_lag_bytes: int = setting(16 * 1024 * 1024, doc="replicas lagging more leave the replica pool")
    timeout_connect_s: int = setting(4, doc="proxy connect timeout")
    timeout_client_m: int = setting(30, doc="proxy client timeout (minutes)")
    timeout_server_m: int = setting(30, doc="proxy server timeout (minutes)")
    maxconn: int = setting(1000, doc="proxy connection limit")


@dataclass(frozen=True)
class KeepalivedSpec:
    virtual_router_id: int = setting(
        doc="VRRP router id, unique on the segment",
        min=1,
        max=255,
        default_doc="last octet of the VIP",
    )
    # VRRPv3 adverts in milliseconds (a multiple of 10): a backup takes the
    # VIP over after 3 missed adverts plus a skew of about 0.6 of one, so
    # 500 ms moves the VIP within about 1.8 s of its holder's death.
    advert_interval_ms: int = setting(
        500,
        doc="VRRPv3 advert interval (VRRPv3 carries it in centiseconds, 12 bits)",
        min=10,
        max=40950,
        multiple_of=10,
        message="{value} is not a multiple of 10 between {minimum} and {maximum}",
        range_doc="10-40950, a multiple of 10",
    )
    check_interval: int = setting(1, doc="seconds between checks of the local HAProxy")
    check_fall: int = setting(2, doc="failed HAProxy checks that drop the VM's priority")
    check_rise: int = setting(2, doc="passed HAProxy checks that restore it")
    # One hop (docs/one-hop.md): the VM whose Patroni is primary gets this much
    # more VRRP priority, so the VIP's HAProxy forwards to a local PostgreSQL.
    # 0 turns it off (the VIP then stays where it is until its HAProxy fails).
    primary_weight: int = setting(
        50,
        doc="VRRP priority the primary's VM gains, so the VIP follows the primary (`0`: the VIP stays put); "
        "see [one-hop.md](one-hop.md)",
        min=0,
        max=150,
        message="{value} is outside {minimum}-{maximum} (0 turns the primary preference off)",
    )


@dataclass(frozen=True)
class EtcdSpec:
    client_port: int = setting(2379, doc="etcd's client port", **PORT)
    peer_port: int = setting(2380, doc="etcd's peer port", **PORT)


@dataclass(frozen=True)
class TlsSpec:
    """The private CA's and the node certificates' lifetimes, and the rotation knob.

    Bumping ``rotation`` re-issues every node's key and certificate (the CA
    stays), and the steps roll them out without a restart of etcd or PostgreSQL.
    """

    rotation: int = setting(
        0,
        doc="bump it to re-issue every VM's key and certificate (see "
        "[Rotating certificates](security.md#rotating-certificates))",
    )
    cert_validity_days: int = setting(
        365,
        doc="lifetime of a VM certificate; one within `min(30, certValidityDays/3)` days of its end is "
        "re-issued by `pulumi up --refresh`",
        # At least 30 days, so the renewal window (a third of it, at most 30 days)
        # spans at least ten days of deployments; at most 825, the longest the
        # CA/Browser Forum ever allowed a TLS certificate.
        min=30,
        max=825,
        message="{value} days is outside {minimum}-{maximum}",
    )
    ca_validity_days: int = setting(
        3650,
        doc="lifetime of the CA; replacing it means re-trusting it everywhere, so a year at least, "
        "and at most twenty years",
        min=365,
        max=7300,
        message="{value} days is outside {minimum}-{maximum}",
        range_doc="365-7300, more than `tls.certValidityDays`",
    )

    @property
    def renew_before_days(self) -> int:
        """A certificate this close to its end is re-issued by the next deployment."""
        return max(1, min(30, self.cert_validity_days // 3))


@dataclass(frozen=True)
class SecretRotationSpec:
    """A generation per generated internal secret: a new value makes Pulumi generate a new one.

    Like ``roles[].rotation``: the generation is the RandomPassword's keeper, so
    bumping one key replaces that secret only, and only the steps holding it run
    again. The database passwords change on the primary first (a SCRAM verifier,
    never the password), then each VM's configs are reloaded; a marker key keeps
    the previous one as a second, verify-only key (see docs/runbooks.md,
    "Rotate a password"). The backup cipher passphrase cannot change under an
    existing repository: only ``0`` is accepted there.
    """

    superuser: int = setting(0, doc="`postgres`'s password")
    replication: int = setting(0, doc="`replicator`'s")
    rewind: int = setting(0, doc="`rewind_user`'s")
    rest_api: int = setting(0, doc="Patroni's REST API's")
    haproxy_stats: int = setting(0, doc="HAProxy's stats page's")
    verify: int = setting(0, doc="`pgha_verify`'s")
    pooler: int = setting(0, doc="`pgha_pooler`'s")
    maintenance_marker: int = setting(0, doc="the host maintenance markers' key")
    rolling_marker: int = setting(0, doc="the rolling update markers' key")
    backup_cipher: int = setting(
        0,
        doc="refused: a new passphrase needs a new repository",
        max=0,
        message="{value}: the backup cipher passphrase cannot be rotated in place (pgBackRest encrypts the "
        "whole repository with it); start a new repository instead, see docs/backups.md",
        range_doc="`0` only",
    )


@dataclass(frozen=True)
class MaintenanceSpec:
    """Operator-triggered maintenance, reachable from stack config.

    ``upgrade`` is a generation: any new value makes the next deployment run
    a rolling package update (one VM at a time, replicas first, then a
    switchover, then the old primary). ``apt_update`` refreshes the package
    lists first; without it the upgrade uses the lists already on the VMs
    (a VM without a mirror, such as the lab's machines).
    """

    upgrade: int = setting(
        0,
        doc="a generation: any new value makes `pulumi up` run a rolling package update (see "
        "[Rolling package update](operations.md#rolling-package-update)); `0` never upgrades",
    )
    apt_update: bool = setting(
        True,
        doc="`apt-get update` before upgrading; `false` upgrades from the package lists already on the VMs",
    )


@dataclass(frozen=True)
class JumpHost:
    """The SSH bastion in front of the VMs' private network.

    Without ``private_key`` the operator's SSH agent must hold a key the jump
    host accepts; with it (secret config), Pulumi logs in with that key.
    """

    host: str = setting(doc="the bastion's address")
    user: str = setting(doc="the user it logs in as")
    port: int = setting(22, doc="its SSH port", **PORT)
    private_key: str | None = setting(
        None,
        doc="secret: the key Pulumi logs in with; without it the operator's SSH agent logs in "
        "(`pulumi config set --secret --path pgha:ssh.jumpHost.privateKey < KEYFILE`)",
        range_doc="a PEM/OpenSSH private key",
        repr=False,
    )


@dataclass(frozen=True)
class SshSpec:
    authorized_keys: tuple[str, ...] = setting(
        doc="operators' public keys (the deploy key is added by pgha)",
        custom=True,
        type_doc="list of SSH public keys",
        range_doc="at least one",
    )
    user: str = setting(
        "pgha",
        doc="user created by cloud-init, with passwordless sudo; not a system or service account "
        "(`root`, `postgres`, `etcd`, …)",
        pattern=HOSTNAME,
        what="a valid user name",
    )
    port: int = setting(22, doc="SSH port of the VMs", **PORT)
    jump_host: JumpHost | None = setting(
        None, doc="the SSH bastion in front of the private network", custom=True
    )


@dataclass(frozen=True)
class VmSpec:
    """Proxmox-side sizing and boot source, shared by every VM."""

    cores: int = setting(2, doc="vCPUs of each VM")
    memory_mb: int = setting(2048, doc="memory of each VM (MiB)")
    disk_gb: int = setting(20, doc="disk of each VM (GiB)")
    datastore: str = setting("local-lvm", doc="storage of the VMs' disks")
    snippets_datastore: str = setting("local", doc="storage of the cloud-init snippets")
    image: Literal["debian-13"] = setting("debian-13", doc="the VMs' operating system")
    image_url: str = setting(
        DEBIAN_13_CLOUD_IMAGE,
        doc="cloud image; required together with `imageChecksum`, `latest/` refused "
        "([docs/proxmox-changes.md](proxmox-changes.md))",
        default_doc="the dated Debian 13 genericcloud amd64 build 20250814-2204",
        range_doc="an http(s) URL",
    )
    image_checksum: str = setting(
        DEBIAN_13_CLOUD_IMAGE_SHA512,
        doc="the image's checksum; required together with `imageUrl`",
        default_doc="its SHA-512",
        range_doc="lowercase hex of the algorithm's length",
    )
    image_checksum_algorithm: Literal["sha256", "sha512"] = setting("sha512", doc="the checksum's algorithm")
    image_datastore: str = setting("local", doc="storage the image is downloaded to")
    template_vm_id: int | None = setting(None, doc="clone this template instead of importing the image")
    template_node: str | None = setting(
        None, doc="the node holding the template; required with `templateVmId`"
    )
    # True when snippets_datastore is shared by every host (NFS, CephFS): each
    # snippet is uploaded once. False (a host's own "local"): to every host, so
    # a VM migrated to another host still finds its cloud-init files there.
    snippets_shared: bool = setting(
        False,
        doc="`true` if `snippetsDatastore` is shared by every host: one upload per snippet, not one per host",
    )

    def image_file_name(self, stack: str) -> str:
        """The image's name in the datastore: this stack's, and this build's.

        Another stack's download (or a manual one) never collides with it,
        destroying this stack deletes only its own copy, and a new checksum is a
        new file next to the old one instead of a clash with it.
        """
        return f"pgha-{stack}-{self.image}-{self.image_checksum[:16]}.qcow2"


@dataclass(frozen=True)
class OffsiteSpec:
    """A second pgBackRest repository (``repo2``) in an S3-compatible bucket away from the machine room.

    It sits beside the stack's own repository: WAL goes to both, each backup
    is taken into both. Its key pair comes from secret config only; TLS is
    always verified (against ``ca_certificate``, or the system's CAs).
    """

    endpoint: str = setting(
        doc="HTTPS",
        required="is required: the S3 endpoint (host or host:port)",
        pattern=r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?",
        what="host or host:port",
    )
    bucket: str = setting(
        doc="the bucket",
        required="is required: the bucket",
        pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        what="an S3 bucket name",
    )
    region: str = setting(
        doc="the region",
        required="is required: the region",
        pattern=r"[a-z0-9][a-z0-9-]{0,62}",
        what="an S3 region",
    )
    ca_certificate: str | None = setting(
        None,
        doc="its CA; default: the system's",
        custom=True,
    )


@dataclass(frozen=True)
class BackupSpec:
    """pgBackRest: where the repository lives, how long backups live, when they run.

    ``repository`` is ``host`` (a VM of its own, the program's ``repository``
    node, reached over pgBackRest's TLS protocol), ``path`` (a directory
    every VM mounts, e.g. NFS or Proxmox-side storage) or ``s3`` (a bucket;
    its key pair comes from secret config).
    """

    repository: Literal["host", "path", "s3"] = setting(
        doc="where the repository lives: a VM of its own (`repositoryVm`), a directory every VM mounts, "
        "or a bucket",
        required="is required: host, path or s3",
    )
    path: str = setting(
        "/var/lib/pgbackrest",
        doc="the repository directory (on the repository VM; for `path`, a mount every VM has, e.g. NFS); "
        "for `s3`, the prefix in the bucket",
        pattern=ABSOLUTE_PATH,
        what="an absolute path of letters, digits, '.', '_', '-' and '/'",
        range_doc="an absolute path without `.` or `..` segments; for `host` and `path`, "
        "`/var/lib/pgbackrest` or below it, or strictly below `/srv`, `/mnt`, `/data` or `/var/backups` "
        "(root makes it postgres's own: never a system directory)",
    )
    s3_bucket: str | None = setting(
        None,
        doc="`s3` (required there): the bucket; its key pair comes from the secret keys `pgha:backupS3Key` "
        "and `pgha:backupS3KeySecret`",
        pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        what="an S3 bucket name (3-63 of a-z, 0-9, '.', '-')",
    )
    s3_endpoint: str | None = setting(
        None,
        doc="`s3` (required there): the endpoint",
        pattern=r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?",
        what="an S3 endpoint host name, optionally with :port",
    )
    s3_region: str | None = setting(
        None,
        doc="`s3` (required there): the region",
        pattern=r"[a-z0-9][a-z0-9-]{0,62}",
        what="an S3 region (a-z, 0-9, '-')",
    )
    s3_uri_style: Literal["host", "path"] = setting(
        "host", doc="`s3`: bucket in the host name or in the path"
    )
    retention_full: int = setting(2, doc="full backups kept (with their WAL)", min=1)
    retention_diff: int = setting(6, doc="differential backups kept", min=1)
    # systemd OnCalendar expressions, in the VMs' time zone (UTC by default).
    full_schedule: str = setting(
        "Sun *-*-* 01:00:00",
        doc="systemd `OnCalendar` of the full backup's timer (UTC on the VMs)",
        pattern=r"[A-Za-z0-9 ,.:*/~+-]+",
        what="a systemd OnCalendar expression",
    )
    diff_schedule: str = setting(
        "Mon..Sat *-*-* 01:00:00",
        doc="systemd `OnCalendar` of the differential backup's timer",
        pattern=r"[A-Za-z0-9 ,.:*/~+-]+",
        what="a systemd OnCalendar expression",
    )
    # The check fails once the newest backup is older than this.
    max_age_hours: int = setting(26, doc="the backup check fails once the newest backup is older", min=1)
    # A WAL segment is archived at least this often, bounding what PITR can miss.
    archive_timeout_s: int = setting(
        60, doc="PostgreSQL's `archive_timeout`: a quiet primary still archives a segment this often", min=1
    )
    tls_port: int = setting(8432, doc="pgBackRest's TLS server on each VM that has one", **PORT)
    # Client-side encryption of everything in the repository, with the
    # generated passphrase (ClusterSecrets.backup_cipher_pass). "none" only
    # for a repository created unencrypted by an older pgha (docs/security.md).
    cipher: Literal["aes-256-cbc", "none"] = setting(
        "aes-256-cbc",
        doc="repository encryption with a generated passphrase (kept in the stack's state: keep a copy, see "
        "docs/security.md); `none` only for a repository created unencrypted by an older pgha",
    )
    offsite: OffsiteSpec | None = setting(
        None,
        doc="[a second repository](backups.md#an-off-site-copy)",
        default_doc="none",
        custom=True,
    )


@dataclass(frozen=True)
class RoleSpec:
    """A PostgreSQL role pgha creates and keeps in line (``pgha:roles``, or a database's owner).

    Never a superuser, never able to create roles or databases: applications
    get exactly what they own and the groups listed in ``member_of``.
    ``rotation`` is a generation: a new value makes Pulumi generate a new
    password (unless one is given in the secret ``pgha:rolePasswords``).
    """

    name: str = setting(
        doc="the role",
        custom=True,
        range_doc="lowercase SQL name, not reserved (`pg_*`, `pgha*`, `postgres`, …)",
    )
    login: bool = setting(True, doc="a login role (gets a password) or a group", custom=True)
    connection_limit: int = setting(
        -1, doc="its connection limit; `-1` none", custom=True, range_doc="-1 or more"
    )
    member_of: tuple[str, ...] = setting(
        (),
        doc="groups it joins: declared roles, or predefined ones such as `pg_read_all_data`",
        custom=True,
        type_doc="list of role names",
    )
    state: Literal["present", "absent"] = setting("present", doc="`absent` drops the role", custom=True)
    rotation: int = setting(
        0, doc="a generation: a new value makes Pulumi generate a new password", custom=True
    )


@dataclass(frozen=True)
class DatabaseSpec:
    """A database pgha creates (owned by ``owner``, CONNECT revoked from PUBLIC) or drops when absent."""

    name: str = setting(doc="the database", custom=True, range_doc="lowercase SQL name, not reserved")
    owner: str = setting(
        doc="its owning role (a login role of its own unless declared in `roles`)",
        custom=True,
        range_doc="lowercase SQL name",
    )
    extensions: tuple[str, ...] = setting(
        (),
        doc="extensions created in it, by the superuser: only those PostgreSQL marks trusted "
        "(see [applications.md](applications.md))",
        custom=True,
        type_doc="list of extension names",
        range_doc="trusted ones: " + ", ".join(sorted(TRUSTED_EXTENSIONS)),
    )
    state: Literal["present", "absent"] = setting("present", doc="`absent` drops the database", custom=True)


@dataclass(frozen=True)
class ClientsSpec:
    """Who may reach the VIP's PostgreSQL ports: empty means every address HAProxy hears."""

    allow_from: tuple[IPv4Network, ...] = setting(
        (),
        doc="networks that may reach the VIP's PostgreSQL ports; empty: every address HAProxy hears",
        custom=True,
    )


# Without pgha:databases, one application database and its owner, so the
# exported connection strings never hand out the superuser.
DEFAULT_DATABASES = (DatabaseSpec(name="app", owner="app"),)


@dataclass(frozen=True)
class MonitoringSpec:
    """Prometheus metrics (docs/monitoring.md): one HTTPS port per VM, scrapers from ``allow_from`` only.

    ``prometheus_dir`` is where the operator's Prometheus keeps this stack's
    CA and file_sd target files: the scrape configs of the stack output name it.
    """

    allow_from: tuple[IPv4Network, ...] = setting(
        doc="the networks that may scrape", custom=True, range_doc="at least one"
    )
    port: int = setting(9443, doc="the HTTPS metrics port of each VM", **PORT)
    prometheus_dir: str = setting(
        "/etc/prometheus/pgha",
        doc="where the operator's Prometheus keeps this stack's CA and file_sd targets",
        pattern=r"/[A-Za-z0-9_./-]*",
        message="{value!r} must be absolute (letters, digits, _ . / -)",
        range_doc="an absolute path",
    )
    # How often the pgha collector (backups, certificates, VIP, archiving) runs.
    collector_interval_s: int = setting(
        15,
        doc="how often the pgha collector (backups, certificates, VIP, archiving) runs",
        min=5,
        max=300,
        message="{value} is outside {minimum}-{maximum} seconds",
    )


# PgBouncer's own limits are far higher; these keep a typo from exhausting a VM.
MAX_POOLER_CLIENTS = 100_000
MAX_POOL_SIZE = 10_000


@dataclass(frozen=True)
class ImportSpec:
    """An existing PostgreSQL (11 or later) outside the stack whose databases move in (``pgha-import``).

    pgha never writes to it except at the cutover (read-only, then back on an
    abort) and for the publication; TLS is always verified against ``ca_certificate``.
    The role's password is the secret ``pgha:importPassword``.
    """

    host: str = setting(
        doc="the source server's DNS name or address, as its certificate names it",
        required="is required: the source server's DNS name or address",
        pattern=r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?",
        what="a host name or IPv4 address",
    )
    databases: tuple[str, ...] = setting(
        doc="the databases to move in, by name: each a present entry of `pgha:databases` (its owner "
        "owns every imported object)",
        custom=True,
        type_doc="list of names",
        default_doc="required",
    )
    ca_certificate: str = setting(
        doc="the CA that signed the source's server certificate (PEM); sslmode is verify-full",
        custom=True,
        default_doc="required",
    )
    port: int = setting(5432, doc="its PostgreSQL port", **PORT)
    user: str = setting(
        "pgha_import",
        doc="the source role pgha logs in as: LOGIN, REPLICATION, member of each database's owner "
        "(see [moving-in.md](moving-in.md#what-the-source-needs))",
        pattern=r"[a-z_][a-z0-9_]{0,62}",
        what="a lowercase SQL name",
    )
    method: Literal["logical", "dump"] = setting(
        "logical",
        doc="`logical`: schema, copy, streaming, then a cutover of seconds; `dump`: pg_dump/pg_restore "
        "with the source read-only throughout",
    )
    cutover_timeout_s: int = setting(
        30,
        doc="how long the cutover waits for the lag to reach zero before it aborts and sets the source "
        "writable again",
        min=5,
        max=3600,
    )


@dataclass(frozen=True)
class PoolerSpec:
    """PgBouncer on every PostgreSQL VM (docs/pooler.md), reached through HAProxy on ``port``.

    HAProxy binds ``port`` on the VIP and each VM (as it does 5432) and sends
    clients to the pooler of the VM whose Patroni is primary; PgBouncer itself
    listens on ``listen_port`` of its VM, as PostgreSQL does on 5442 beside 5432.
    """

    port: int = setting(6432, doc="HAProxy on the VIP and each VM, to the primary's pooler", **PORT)
    listen_port: int = setting(6442, doc="PgBouncer on each PostgreSQL VM's IP", **PORT)
    # Server connections per (database, role) pair: what PostgreSQL sees.
    default_pool_size: int = setting(
        20,
        doc="server connections per database and role",
        min=1,
        max=MAX_POOL_SIZE,
        message="{value} is outside {minimum}-{maximum}",
    )
    max_client_conn: int = setting(
        1000, doc="client connections of each PgBouncer", min=1, max=MAX_POOLER_CLIENTS
    )
    # An idle server connection is closed after this: PgBouncer's default is
    # 600 s; shorter, so that what a demoted VM's pooler still holds (idle,
    # serving nobody: HAProxy sends it no client) goes soon (docs/pooler.md).
    server_idle_timeout_s: int = setting(
        60, doc="an idle server connection is closed after this", min=1, max=3600
    )


@dataclass(frozen=True)
class FastPathSpec:
    """VIP:5432 forwarded by the kernel to the primary's own PostgreSQL, past HAProxy (pgha/fastpath)."""

    # How often the agent asks the local Patroni whether it is the primary:
    # the longest a demoted VM keeps taking new VIP connections for itself.
    poll_ms: int = setting(
        200, doc="how often each VM's agent asks its Patroni whether it is the primary", min=50, max=2000
    )


@dataclass(frozen=True)
class RestoreSpec:
    """``pgha:restore``: a fresh cluster's first start restores from the backup repository.

    Patroni bootstraps the primary with pgBackRest instead of initdb (its custom
    bootstrap method); the replicas clone from it. ``from_stanza`` is the
    stanza to read in the stack's repository (default: this stack's own, its
    ``postgres.scope``); another stack's stanza in a shared ``path`` or ``s3``
    repository makes a staging copy. ``time`` (PITR) or ``label`` (one backup
    set, to its end) pick the point; neither: the latest archived state.
    ``repository`` ``offsite`` reads ``repo2`` (``backup.offsite``) alone: the
    rebuild after the machine room and its repository are lost.
    Only a cluster that does not exist yet is affected: Patroni bootstraps once.
    """

    repository: Literal["local", "offsite"] = setting(
        "local",
        doc="where to read: the stack's own repository, or `offsite`, the bucket of `backup.offsite` "
        "(when the local one is lost with the machine room)",
    )

    from_stanza: str | None = setting(
        None,
        doc="the stanza to restore from; another stack's, in a shared `path` or `s3` repository, "
        "makes a staging copy",
        default_doc="this stack's (`postgres.scope`)",
        pattern=HOSTNAME,
        message="{value!r} is not a stanza name (a-z, 0-9, '-')",
        range_doc="a-z, 0-9, '-'",
    )
    time: str | None = setting(
        None,
        doc="point in time to restore to (PITR)",
        default_doc="the latest archived state",
        # PostgreSQL's timestamptz input as pgBackRest passes it on: date, time, optional zone.
        pattern=r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([+-]\d{2}(:?\d{2})?|Z| UTC)?",
        message="{value!r} is not a timestamp like '2026-11-30 14:05:00+00'",
        range_doc="a timestamp like `2026-11-30 14:05:00+00`",
    )
    label: str | None = setting(
        None,
        doc="one backup set to restore, to its end (not with `time`)",
        # pgBackRest's backup labels: a full one, or a diff/incr on top of one.
        pattern=r"\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?",
        message="{value!r} is not a pgBackRest backup label like 20261130-010002F",
        range_doc="a label like `20261130-010002F`",
    )


@dataclass(frozen=True)
class ClusterSpec:
    """Everything the renderers need, for one stack."""

    stack: str
    vip: IPv4Address = setting(
        doc="virtual IP clients use; inside `network.cidr`, not a VM's IP",
        custom=True,
        type_doc="IPv4 address",
    )
    network: NetworkSpec = setting(
        doc="the VMs' private network: `cidr` and `bridge` or `sdn`",
        required="is required (an object with at least cidr and bridge or sdn)",
        custom=True,
    )
    nodes: tuple[Node, ...] = setting(
        key="vms",
        doc="the database VMs, each a machine (below); at least 3, on at least 2 hosts. Adding or removing "
        "entries scales the cluster: [Scaling out and in](operations.md#scaling-out-and-in)",
        custom=True,
        type_doc="list of machines",
        range_doc="3-9",
    )
    ssh: SshSpec = setting(
        doc="how pgha and the operators reach the VMs", default_doc="required (`authorizedKeys`)", custom=True
    )
    postgres: PostgresSpec = setting(default_doc="the defaults below", doc="PostgreSQL", custom=True)
    patroni: PatroniSpec = setting(
        default_doc="the defaults below", doc="Patroni: leader election and failover", custom=True
    )
    haproxy: HaproxySpec = setting(
        default_doc="the defaults below",
        doc="HAProxy: the VIP's ports, routed to the primary or the replicas",
        custom=True,
    )
    keepalived: KeepalivedSpec = setting(
        default_doc="the defaults below", doc="keepalived: which VM holds the VIP", custom=True
    )
    etcd: EtcdSpec = setting(
        default_doc="the defaults below", doc="etcd, Patroni's consensus store", custom=True
    )
    vm: VmSpec = setting(
        default_doc="the defaults below",
        doc="Proxmox-side sizing and boot source, shared by every VM",
        custom=True,
    )
    tls: TlsSpec = setting(factory=TlsSpec, doc="the private CA and the VMs' certificates", custom=True)
    backup: BackupSpec | None = setting(
        None,
        doc="pgBackRest; the dev stack sets it",
        default_doc="none (no archiving, no backups)",
        custom=True,
    )
    maintenance: MaintenanceSpec = setting(
        factory=MaintenanceSpec, doc="operator-triggered maintenance", custom=True
    )
    secret_rotation: SecretRotationSpec = setting(
        factory=SecretRotationSpec,
        doc="internal secrets' generations ([runbooks](runbooks.md#rotate-a-password))",
        custom=True,
        default_doc="`{}`",
        range_doc="`backupCipher` only `0`",
        inline=True,
    )
    databases: tuple[DatabaseSpec, ...] = setting(
        DEFAULT_DATABASES,
        doc="the application databases pgha creates (CONNECT revoked from PUBLIC) or drops",
        default_doc="one database `app` owned by `app`",
        custom=True,
        type_doc="list of databases",
    )
    # Declared roles plus every database owner not declared (a login role).
    roles: tuple[RoleSpec, ...] = setting(
        (RoleSpec(name="app"),),
        doc="the application roles pgha creates and keeps in line (never superusers); every database owner "
        "not declared here is a login role of its own",
        default_doc="`[]`",
        custom=True,
        type_doc="list of roles",
    )
    clients: ClientsSpec = setting(
        factory=ClientsSpec, doc="who may reach the VIP's PostgreSQL ports", custom=True
    )

    @property
    def login_roles(self) -> tuple[RoleSpec, ...]:
        """The roles that need a password: present and allowed to log in."""
        return tuple(r for r in self.roles if r.login and r.state == "present")

    @property
    def client_database(self) -> DatabaseSpec | None:
        """The database behind primaryConnectionString: the first present one."""
        return next((d for d in self.databases if d.state == "present"), None)

    monitoring: MonitoringSpec | None = setting(
        None,
        doc="Prometheus exporters behind one HTTPS port per VM; see [monitoring.md](monitoring.md)",
        default_doc="none (no exporters, no metrics port)",
        custom=True,
    )
    restore: RestoreSpec | None = setting(
        None,
        doc="a fresh stack bootstraps from the backup repository instead of initdb; needs `backup` (see "
        "[two-hosts.md](two-hosts.md#losing-both-hosts-rebuilding-from-the-backups-pgharestore))",
        custom=True,
    )
    pooler: PoolerSpec | None = setting(
        None,
        doc="PgBouncer on every PostgreSQL VM, `{}` for the defaults: transaction pooling, TLS both sides, "
        "`auth_query`; see [pooler.md](pooler.md)",
        default_doc="none (no PgBouncer, no 6432)",
        custom=True,
    )
    fast_path: FastPathSpec | None = setting(
        None,
        doc="`{}` for the defaults: the primary's VM hands VIP:5432 connections from the private network "
        "to its PostgreSQL past HAProxy (nftables); see [one-hop.md](one-hop.md#the-fast-path-pghafastpath)",
        default_doc="none (HAProxy serves VIP:5432 alone)",
        custom=True,
    )
    importing: ImportSpec | None = setting(
        None,
        key="import",
        doc="an existing PostgreSQL whose databases move in over logical replication or pg_dump; "
        "see [moving-in.md](moving-in.md)",
        default_doc="none",
        custom=True,
    )

    @property
    def postgres_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.runs_postgres)

    @property
    def host_aware_sync(self) -> bool:
        """Whether commits wait only for standbys on another Proxmox host than the primary's.

        Only meaningful with synchronous mode and database VMs on two hosts or more.
        """
        hosts = {n.host for n in self.postgres_nodes}
        return self.patroni.synchronous_mode and self.patroni.host_aware_sync and len(hosts) > 1

    @property
    def sync_hosts(self) -> dict[str, str]:
        """Database member -> Proxmox host when host-aware sync is on (empty otherwise): what the
        health rule ``pgha.vmlib.cluster_health.host_crash_problem`` checks the sync standby against."""
        return {n.name: n.host for n in self.postgres_nodes} if self.host_aware_sync else {}

    @property
    def sync_standbys(self) -> int:
        """How many standbys confirm each commit (Patroni's synchronous_node_count).

        Host-aware: one, always on another host than the primary (the others on
        the primary's host are tagged nosync), so a crash of the primary's host
        leaves a lossless, promotable standby, and a fault of any other standby
        costs no write. Without it, every replica is synchronous (any survivor
        can take over, but any standby fault holds commits until Patroni drops it).
        """
        replicas = len(self.postgres_nodes) - 1
        if self.patroni.synchronous_node_count:
            return self.patroni.synchronous_node_count
        return 1 if self.host_aware_sync else replicas

    def node(self, name: str) -> Node:
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.host for n in self.nodes))

    @property
    def proxmox_hosts(self) -> tuple[str, ...]:
        """The Proxmox hosts that run a VM of the stack (an external witness's machine is none)."""
        return tuple(dict.fromkeys(n.host for n in self.nodes if not n.external))

    @property
    def quorum_nodes(self) -> tuple[Node, ...]:
        """The nodes etcd may live on: database nodes and the witness, not the backup repository."""
        return tuple(n for n in self.nodes if n.role != "repository")

    @property
    def repository_node(self) -> Node | None:
        return next((n for n in self.nodes if n.role == "repository"), None)


# Keys of the ``pgha:`` namespace that fill no field of ClusterSpec of their
# own, each listed after the key it belongs with: the witness becomes one of
# the nodes, the secrets reach ClusterSecrets (pgha.secrets).
STACK_ONLY_KEYS: tuple[tuple[str, str, Setting], ...] = (
    (
        "vms",
        "witness",
        Setting(
            doc="a machine (below) on a third host that runs only an etcd member: a VM, or with "
            "`external: true` an existing Debian 13 machine, its SSH host key pinned (see "
            "[two-hosts.md](two-hosts.md#a-witness-on-any-small-machine))",
            type_doc="machine",
            default_doc="none",
        ),
    ),
    (
        "backup",
        "backupS3Key",
        Setting(
            doc="secret (`pulumi config set --secret`): the S3 repository's access key",
            type_doc="string",
            default_doc="required with `backup.repository: s3`",
        ),
    ),
    (
        "backupS3Key",
        "backupS3KeySecret",
        Setting(
            doc="secret: the S3 repository's secret key",
            type_doc="string",
            default_doc="required with `backup.repository: s3`",
        ),
    ),
    (
        "backupS3KeySecret",
        "backupOffsiteKey",
        Setting(
            doc="secret",
            type_doc="string",
            default_doc="required with `backup.offsite`",
        ),
    ),
    (
        "backupOffsiteKey",
        "backupOffsiteKeySecret",
        Setting(
            doc="secret",
            type_doc="string",
            default_doc="required with `backup.offsite`",
        ),
    ),
    (
        "backupOffsiteKeySecret",
        "backupCipherPassphrase",
        Setting(
            doc="secret: another stack's backup cipher passphrase, to read its backups",
            type_doc="string",
            default_doc="none",
        ),
    ),
    (
        "import",
        "importPassword",
        Setting(
            doc="secret: the password of `import.user` on the source server",
            type_doc="string",
            default_doc="required with `import`",
        ),
    ),
    (
        "roles",
        "rolePasswords",
        Setting(
            doc="secret: `{role: password}` for declared login roles; "
            "a role without one gets a generated password",
            type_doc="object",
            default_doc="`{}`",
            range_doc="16-128 printable ASCII characters without spaces",
        ),
    ),
)
# Keys under a section that fill no field of its class: the repository VM
# becomes one of ClusterSpec.nodes.
SECTION_ONLY_KEYS: dict[type, tuple[tuple[str, Setting], ...]] = {
    BackupSpec: (
        (
            "repositoryVm",
            Setting(
                doc="`host` (required there): the repository VM pgha creates, a machine (below); "
                "best on a third machine",
                type_doc="machine",
                default_doc="none",
            ),
        ),
    ),
}
