"""The typed cluster spec: the one object every renderer reads.

It is built only by :func:`pgha.config.load_spec`, after validation,
so renderers may trust every field (addresses parse, ports differ, and so on).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

NodeRole = Literal["postgres", "witness", "repository", "restore"]

# PostgreSQL major versions each VM image ships in its own archive. Debian 13
# carries exactly one server version; anything else would need the PGDG repo.
IMAGE_POSTGRES_VERSIONS: dict[str, tuple[int, ...]] = {"debian-13": (17,)}

# A dated build, never ``latest/``: the same URL must always mean the same bytes,
# checked by the provider against this SHA-512 (see docs/proxmox-changes.md for
# where it comes from and how to move to a newer build).
DEBIAN_13_CLOUD_IMAGE = "https://cloud.debian.org/images/cloud/trixie/20250814-2204/debian-13-genericcloud-amd64-20250814-2204.qcow2"
DEBIAN_13_CLOUD_IMAGE_SHA512 = (
    "d76122c87c940d1ab9334f4307c98c01dc42f0b49a20cddf278d59b92d34ab63"
    "d05ac1f40dffda3d2d32e381f097706eee6ccbf79a596bfb2cbb3d83c635ae35"
)
# A VXLAN zone wraps each frame in 50 bytes (outer Ethernet, IP, UDP, VXLAN headers).
VXLAN_OVERHEAD = 50
ETHERNET_MTU = 1500


@dataclass(frozen=True)
class Node:
    """One VM: where it runs and how it is reached on the private network."""

    name: str
    host: str
    ip: IPv4Address
    role: NodeRole = "postgres"
    vm_id: int | None = None
    # The stack the VM belongs to (set by load_spec): two stacks on one layer-2
    # network may both name their VMs psql-01..03, but must not share MACs.
    stack: str = ""
    # A machine that exists already (the witness on a NAS, a QDevice host, a
    # VPS): no VM is created for it; the steps reach it over SSH all the same.
    external: bool = False
    # An external machine's SSH host public key (``witness.hostKey``): the steps
    # pin it, as they pin the keys Pulumi generates for its VMs.
    host_key: str | None = None

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

    zone: str
    vnet: str
    type: Literal["vlan", "vxlan"]
    tag: int
    bridge: str | None = None
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    cidr: IPv4Network
    interface: str = "ens18"
    gateway: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    bridge: str | None = None
    vlan: int | None = None
    sdn: SdnSpec | None = None
    # The guests' MTU (and the SDN zone's); load_spec defaults it to 1450 on a
    # VXLAN zone, None leaves the bridge's own MTU.
    mtu: int | None = None

    def interface_address(self, ip: IPv4Address) -> IPv4Interface:
        return IPv4Interface(f"{ip}/{self.cidr.prefixlen}")


@dataclass(frozen=True)
class PostgresSpec:
    version: int = 17
    port: int = 5442
    scope: str = "pgha"
    parameters: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def bin_dir(self) -> str:
        return f"/usr/lib/postgresql/{self.version}/bin"

    @property
    def data_dir(self) -> str:
        return f"/var/lib/postgresql/{self.version}/{self.scope}"


@dataclass(frozen=True)
class PatroniSpec:
    rest_api_port: int = 8008
    # Tuned in the lab (docs/ha.md, "Failover timing"): within the maintainers' safe
    # range (ttl >= 20, loop_wait + 2 x retry_timeout <= ttl).
    ttl: int = 20
    # 1 s: the leader drops a dead synchronous standby (and notices a switchover
    # request) within a second; the price is one leader-key write a second.
    loop_wait: int = 1
    retry_timeout: int = 7
    maximum_lag_on_failover: int = 1048576
    synchronous_mode: bool = True
    # Host-aware synchronous replication (docs/ha-durability.md): standbys that
    # share the primary's Proxmox host carry Patroni's nosync tag, so a commit
    # waits only for a standby on another host.
    host_aware_sync: bool = True
    # None: one synchronous standby with host-aware sync, else every replica
    # (see ClusterSpec.sync_standbys()).
    synchronous_node_count: int | None = None
    failsafe_mode: bool = True
    # Which etcd API Patroni's DCS uses: v2 (TTL keys; see pgha/patroni's render
    # for why) or v3 (leases), for the comparison in docs/ha-durability.md.
    etcd_api: Literal["v2", "v3"] = "v2"
    # Seconds the leader keeps the replication slot of a member whose key is
    # gone (Patroni 4's member_slots_ttl, its default): a crashed replica
    # finds its WAL when it returns; a VM removed by a scale-in loses its slot
    # only then. 0 drops slots as soon as a member's key expires.
    member_slots_ttl: int = 1800
    watchdog: Literal["off", "automatic", "required"] = "automatic"
    # Networks (besides the members) that may call the REST API's unsafe
    # endpoints (switchover, restart, config), password still required.
    rest_api_allow_from: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True)
class HaproxySpec:
    primary_port: int = 5432
    replica_port: int = 5433
    stats_port: int = 7000
    check_inter_ms: int = 2000
    # A server in transition (DOWN going UP: a new primary) is re-checked this
    # soon, so it is UP rise checks later: 2 x 250 ms after its first success.
    check_fastinter_ms: int = 250
    # A DOWN server (a replica on the primary port) is checked this often, so a
    # newly promoted primary is found within rise x downinter.
    check_downinter_ms: int = 500
    check_fall: int = 3
    check_rise: int = 2
    max_replica_lag_bytes: int = 16 * 1024 * 1024
    timeout_connect_s: int = 4
    timeout_client_m: int = 30
    timeout_server_m: int = 30
    maxconn: int = 1000


@dataclass(frozen=True)
class KeepalivedSpec:
    virtual_router_id: int
    # VRRPv3 adverts in milliseconds (a multiple of 10): a backup takes the
    # VIP over after 3 missed adverts plus a skew of about 0.6 of one, so
    # 500 ms moves the VIP within about 1.8 s of its holder's death.
    advert_interval_ms: int = 500
    check_interval: int = 1
    check_fall: int = 2
    check_rise: int = 2
    # One hop (docs/one-hop.md): the VM whose Patroni is primary gets this much
    # more VRRP priority, so the VIP's HAProxy forwards to a local PostgreSQL.
    # 0 turns it off (the VIP then stays where it is until its HAProxy fails).
    primary_weight: int = 50


@dataclass(frozen=True)
class EtcdSpec:
    client_port: int = 2379
    peer_port: int = 2380


@dataclass(frozen=True)
class TlsSpec:
    """The private CA's and the node certificates' lifetimes, and the rotation knob.

    Bumping ``rotation`` re-issues every node's key and certificate (the CA
    stays), and the steps roll them out without a restart of etcd or PostgreSQL.
    """

    rotation: int = 0
    cert_validity_days: int = 365
    ca_validity_days: int = 3650

    @property
    def renew_before_days(self) -> int:
        """A certificate this close to its end is re-issued by the next deployment."""
        return max(1, min(30, self.cert_validity_days // 3))


@dataclass(frozen=True)
class MaintenanceSpec:
    """Operator-triggered maintenance, reachable from stack config.

    ``upgrade`` is a generation: any new value makes the next deployment run
    a rolling package update (one VM at a time, replicas first, then a
    switchover, then the old primary). ``apt_update`` refreshes the package
    lists first; without it the upgrade uses the lists already on the VMs
    (a VM without a mirror, such as the lab's machines).
    """

    upgrade: int = 0
    apt_update: bool = True


@dataclass(frozen=True)
class JumpHost:
    """The SSH bastion in front of the VMs' private network.

    Without ``private_key`` the operator's SSH agent must hold a key the jump
    host accepts; with it (secret config), Pulumi logs in with that key.
    """

    host: str
    user: str
    port: int = 22
    private_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SshSpec:
    authorized_keys: tuple[str, ...]
    user: str = "pgha"
    port: int = 22
    jump_host: JumpHost | None = None


@dataclass(frozen=True)
class VmSpec:
    """Proxmox-side sizing and boot source, shared by every VM."""

    cores: int = 2
    memory_mb: int = 2048
    disk_gb: int = 20
    datastore: str = "local-lvm"
    snippets_datastore: str = "local"
    image: Literal["debian-13"] = "debian-13"
    image_url: str = DEBIAN_13_CLOUD_IMAGE
    image_checksum: str = DEBIAN_13_CLOUD_IMAGE_SHA512
    image_checksum_algorithm: Literal["sha256", "sha512"] = "sha512"
    image_datastore: str = "local"
    template_vm_id: int | None = None
    template_node: str | None = None
    # True when snippets_datastore is shared by every host (NFS, CephFS): each
    # snippet is uploaded once. False (a host's own "local"): to every host, so
    # a VM migrated to another host still finds its cloud-init files there.
    snippets_shared: bool = False

    def image_file_name(self, stack: str) -> str:
        """The image's name in the datastore: this stack's, and this build's.

        Another stack's download (or a manual one) never collides with it,
        destroying this stack deletes only its own copy, and a new checksum is a
        new file next to the old one instead of a clash with it.
        """
        return f"pgha-{stack}-{self.image}-{self.image_checksum[:16]}.qcow2"


@dataclass(frozen=True)
class BackupSpec:
    """pgBackRest: where the repository lives, how long backups live, when they run.

    ``repository`` is ``host`` (a VM of its own, the program's ``repository``
    node, reached over pgBackRest's TLS protocol), ``path`` (a directory
    every VM mounts, e.g. NFS or Proxmox-side storage) or ``s3`` (a bucket;
    its key pair comes from secret config).
    """

    repository: Literal["host", "path", "s3"]
    path: str = "/var/lib/pgbackrest"
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_uri_style: Literal["host", "path"] = "host"
    retention_full: int = 2
    retention_diff: int = 6
    # systemd OnCalendar expressions, in the VMs' time zone (UTC by default).
    full_schedule: str = "Sun *-*-* 01:00:00"
    diff_schedule: str = "Mon..Sat *-*-* 01:00:00"
    # The check fails once the newest backup is older than this.
    max_age_hours: int = 26
    # A WAL segment is archived at least this often, bounding what PITR can miss.
    archive_timeout_s: int = 60
    tls_port: int = 8432
    # Client-side encryption of everything in the repository, with the
    # generated passphrase (ClusterSecrets.backup_cipher_pass). "none" only
    # for a repository created unencrypted by an older pgha (docs/security.md).
    cipher: Literal["aes-256-cbc", "none"] = "aes-256-cbc"


@dataclass(frozen=True)
class RoleSpec:
    """A PostgreSQL role pgha creates and keeps in line (``pgha:roles``, or a database's owner).

    Never a superuser, never able to create roles or databases: applications
    get exactly what they own and the groups listed in ``member_of``.
    ``rotation`` is a generation: a new value makes Pulumi generate a new
    password (unless one is given in the secret ``pgha:rolePasswords``).
    """

    name: str
    login: bool = True
    connection_limit: int = -1
    member_of: tuple[str, ...] = ()
    state: Literal["present", "absent"] = "present"
    rotation: int = 0


@dataclass(frozen=True)
class DatabaseSpec:
    """A database pgha creates (owned by ``owner``, CONNECT revoked from PUBLIC) or drops when absent."""

    name: str
    owner: str
    extensions: tuple[str, ...] = ()
    state: Literal["present", "absent"] = "present"


@dataclass(frozen=True)
class ClientsSpec:
    """Who may reach the VIP's PostgreSQL ports: empty means every address HAProxy hears."""

    allow_from: tuple[IPv4Network, ...] = ()


# Without pgha:databases, one application database and its owner, so the
# exported connection strings never hand out the superuser.
DEFAULT_DATABASES = (DatabaseSpec(name="app", owner="app"),)


@dataclass(frozen=True)
class MonitoringSpec:
    """Prometheus metrics (docs/monitoring.md): one HTTPS port per VM, scrapers from ``allow_from`` only.

    ``prometheus_dir`` is where the operator's Prometheus keeps this stack's
    CA and file_sd target files: the scrape configs of the stack output name it.
    """

    allow_from: tuple[IPv4Network, ...]
    port: int = 9443
    prometheus_dir: str = "/etc/prometheus/pgha"
    # How often the pgha collector (backups, certificates, VIP, archiving) runs.
    collector_interval_s: int = 15


@dataclass(frozen=True)
class PoolerSpec:
    """PgBouncer on every PostgreSQL VM (docs/pooler.md), reached through HAProxy on ``port``.

    HAProxy binds ``port`` on the VIP and each VM (as it does 5432) and sends
    clients to the pooler of the VM whose Patroni is primary; PgBouncer itself
    listens on ``listen_port`` of its VM, as PostgreSQL does on 5442 beside 5432.
    """

    port: int = 6432
    listen_port: int = 6442
    # Server connections per (database, role) pair: what PostgreSQL sees.
    default_pool_size: int = 20
    max_client_conn: int = 1000
    # An idle server connection is closed after this: PgBouncer's default is
    # 600 s; shorter, so that what a demoted VM's pooler still holds (idle,
    # serving nobody: HAProxy sends it no client) goes soon (docs/pooler.md).
    server_idle_timeout_s: int = 60


@dataclass(frozen=True)
class FastPathSpec:
    """VIP:5432 forwarded by the kernel to the primary's own PostgreSQL, past HAProxy (pgha/fastpath)."""

    # How often the agent asks the local Patroni whether it is the primary:
    # the longest a demoted VM keeps taking new VIP connections for itself.
    poll_ms: int = 200


@dataclass(frozen=True)
class RestoreSpec:
    """``pgha:restore``: a fresh cluster's first start restores from the backup repository.

    Patroni bootstraps the primary with pgBackRest instead of initdb (its custom
    bootstrap method); the replicas clone from it. ``from_stanza`` is the
    stanza to read in the stack's repository (default: this stack's own, its
    ``postgres.scope``); another stack's stanza in a shared ``path`` or ``s3``
    repository makes a staging copy. ``time`` (PITR) or ``label`` (one backup
    set, to its end) pick the point; neither: the latest archived state.
    Only a cluster that does not exist yet is affected: Patroni bootstraps once.
    """

    from_stanza: str | None = None
    time: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    """Everything the renderers need, for one stack."""

    stack: str
    vip: IPv4Address
    network: NetworkSpec
    nodes: tuple[Node, ...]
    ssh: SshSpec
    postgres: PostgresSpec
    patroni: PatroniSpec
    haproxy: HaproxySpec
    keepalived: KeepalivedSpec
    etcd: EtcdSpec
    vm: VmSpec
    tls: TlsSpec = field(default_factory=TlsSpec)
    backup: BackupSpec | None = None
    maintenance: MaintenanceSpec = field(default_factory=MaintenanceSpec)
    databases: tuple[DatabaseSpec, ...] = DEFAULT_DATABASES
    # Declared roles plus every database owner not declared (a login role).
    roles: tuple[RoleSpec, ...] = (RoleSpec(name="app"),)
    clients: ClientsSpec = field(default_factory=ClientsSpec)

    @property
    def login_roles(self) -> tuple[RoleSpec, ...]:
        """The roles that need a password: present and allowed to log in."""
        return tuple(r for r in self.roles if r.login and r.state == "present")

    @property
    def client_database(self) -> DatabaseSpec | None:
        """The database behind primaryConnectionString: the first present one."""
        return next((d for d in self.databases if d.state == "present"), None)

    monitoring: MonitoringSpec | None = None
    restore: RestoreSpec | None = None
    pooler: PoolerSpec | None = None
    fast_path: FastPathSpec | None = None

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
