"""pgBackRest: WAL archiving from the primary, backups read from a standby.

Every database VM archives its WAL when it is primary (Patroni sets
``archive_command`` on all of them; only a primary archives) and runs
pgBackRest's TLS server, so the node that takes backups can reach every
PostgreSQL with the cluster's certificates: no SSH between VMs. Backups use
``backup-standby``: the files come from a replica, as the seed wanted, and
only the start/stop calls touch the primary.

Who takes the backups, one at a time for the whole cluster:
- repository ``host``: the repository VM, the only one with timers;
- repository ``path`` or ``s3``: every database VM has the timers and only
  the current primary acts, so a failover moves the job with the role.

No ``restore_command`` on the replicas: a promotion asks it for timeline
history files, and with the repository down each call waited for pgBackRest's
timeout; in the lab, losing the host of the primary and the repository
stalled the failover for 143 s instead of 19. Replication slots keep the WAL
replicas need, so they never have to read the archive.
"""

from __future__ import annotations

from pathlib import Path

from .. import pki, postgres_server, vmprograms
from ..files import RenderedFile, Step, render_script, render_template
from ..secrets import ClusterSecrets
from ..service import Service
from ..spec import BackupSpec, ClusterSpec, Node
from . import backup_status

HERE = Path(__file__).resolve().parent
PACKAGES = ("pgbackrest",)
CONFIG_PATH = "/etc/pgbackrest.conf"  # Debian's, read by its pgbackrest.service
BACKUP_PATH = "/usr/local/sbin/pgha-backup"
STATUS_PATH = backup_status.INSTALL_PATH
RESTORE_PATH = "/usr/local/sbin/pgha-restore"
UNIT_DIR = "/etc/systemd/system"
SERVICE_UNIT = "pgha-backup@.service"
CHECK_TIMER = "pgha-backup-check.timer"
# pgBackRest's own copy of the VM's certificate and key: its step then sees a
# rotation and reloads the TLS server (one copy per service that reads it).
PEM_PATH = f"{pki.TLS_DIR}/pgbackrest.pem"
# The certificate name a restore machine presents to the repository VM.
RESTORE_CLIENT = "pgha-restore"
RESTORE_DIR = "/var/lib/postgresql/pgha-restore"
# pgha:restore: Patroni's custom bootstrap and what it runs after promotion.
BOOTSTRAP_PATH = "/usr/local/lib/pgha/bootstrap-restore"
POST_BOOTSTRAP_PATH = "/usr/local/lib/pgha/post-restore"
# A restore's restore_command: a failed read of the repository is retried, then fatal.
ARCHIVE_GET_PATH = "/usr/local/lib/pgha/archive-get"
ARCHIVE_GET_ATTEMPTS = 6
ARCHIVE_GET_DELAY_S = 5
RECOVERY_SETTINGS = (
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_action",
    "recovery_target_timeline",
)
RESTORE_PORT = 5499
# backup.offsite: the CA its endpoint is verified against, and the spool of
# asynchronous archiving (pgBackRest's own default directory).
OFFSITE_CA_PATH = "/etc/pgbackrest/offsite-ca.pem"
SPOOL_DIR = "/var/spool/pgbackrest"
OFFSITE_REPO = "repo2"
OFFSITE_PATH = "/pgbackrest"  # the prefix in the bucket
# Unarchived WAL kept while a repository is down; beyond it pgBackRest drops
# WAL (a gap in both archives) rather than let pg_wal fill the disk.
ARCHIVE_QUEUE_MAX = "4GiB"
# archive-push's own timeouts, in seconds ([global:archive-push]; backups keep
# pgBackRest's defaults). Each asynchronous run connects to every repository
# before it pushes, and a connection to a dead host costs three tries of
# io-timeout (60 s by default: 3 min a run for a dead repository VM); an S3
# request retries that thrice more, and a check reads two files (18 tries for a
# dead bucket). protocol-timeout bounds a session whose peer died mid-push
# (31 min by default); a segment must upload within it.
ARCHIVE_PUSH_IO_TIMEOUT_S = 5
ARCHIVE_PUSH_PROTOCOL_TIMEOUT_S = 60
ARCHIVE_PUSH_SECTION = "global:archive-push"


def stanza(spec: ClusterSpec) -> str:
    return spec.postgres.scope


def postgres_parameters(spec: ClusterSpec) -> dict[str, str | int]:
    """What PostgreSQL needs for archiving; an empty dict without backups."""
    if spec.backup is None:
        return {}
    return {
        "archive_mode": "on",
        "archive_command": f"pgbackrest --stanza={stanza(spec)} archive-push %p",
        "archive_timeout": spec.backup.archive_timeout_s,
    }


def runs_backups(spec: ClusterSpec, node: Node) -> bool:
    """Whether the node carries the backup timers (gated to the primary unless it is the repository)."""
    if spec.backup is None:
        return False
    if spec.backup.repository == "host":
        return node.role == "repository"
    return node.runs_postgres


def _tls_client(prefix: str, pem_path: str, port: int) -> list[tuple[str, str]]:
    return [
        (f"{prefix}-host-type", "tls"),
        (f"{prefix}-host-port", str(port)),
        (f"{prefix}-host-ca-file", pki.CA_PATH),
        (f"{prefix}-host-cert-file", pem_path),
        (f"{prefix}-host-key-file", pem_path),
    ]


def _tls_server(
    node: Node, pem_path: str, port: int, clients: list[str], stanza_name: str
) -> list[tuple[str, str]]:
    return [
        ("tls-server-address", str(node.ip)),
        ("tls-server-port", str(port)),
        ("tls-server-ca-file", pki.CA_PATH),
        ("tls-server-cert-file", pem_path),
        ("tls-server-key-file", pem_path),
        *(("tls-server-auth", f"{client}={stanza_name}") for client in clients),
    ]


def _repository(backup: BackupSpec, secrets: ClusterSecrets) -> list[tuple[str, str]]:
    """Where the repository is, for the nodes that write it directly (not through the repository VM)."""
    if backup.repository == "s3":
        assert backup.s3_bucket and backup.s3_endpoint and backup.s3_region
        return [
            ("repo1-type", "s3"),
            ("repo1-path", backup.path),
            ("repo1-s3-bucket", backup.s3_bucket),
            ("repo1-s3-endpoint", backup.s3_endpoint),
            ("repo1-s3-region", backup.s3_region),
            ("repo1-s3-uri-style", backup.s3_uri_style),
            ("repo1-s3-key", secrets.backup_s3_key),
            ("repo1-s3-key-secret", secrets.backup_s3_key_secret),
        ]
    return [("repo1-path", backup.path)]


def _cipher(backup: BackupSpec, secrets: ClusterSecrets) -> list[tuple[str, str]]:
    """Encryption, where the repository is written: pgBackRest encrypts on the
    node that holds repo1's storage (the repository VM, or each database VM with
    path and s3), so the database VMs of a repository host never see the passphrase."""
    if backup.cipher == "none":
        return []
    return [("repo1-cipher-type", backup.cipher), ("repo1-cipher-pass", secrets.backup_cipher_pass)]


def _offsite(backup: BackupSpec, secrets: ClusterSecrets) -> list[tuple[str, str]]:
    """repo2, the bucket away from the machine room, on every VM that writes a repository.

    Encrypted with the cluster's one passphrase: the database VMs that push WAL
    there already hold the data it protects, the repository VM already decrypts
    repo1 for them, and one passphrase is one copy to keep and one
    ``pgha:backupCipherPassphrase`` to give a restore from either repository.
    TLS is always verified: against the given CA, else the system's.
    """
    offsite = backup.offsite
    if offsite is None:
        return []
    prefix = OFFSITE_REPO
    options = [
        (f"{prefix}-type", "s3"),
        (f"{prefix}-path", OFFSITE_PATH),
        (f"{prefix}-s3-bucket", offsite.bucket),
        (f"{prefix}-s3-endpoint", offsite.endpoint),
        (f"{prefix}-s3-region", offsite.region),
        # Path-style: what self-hosted servers serve without wildcard DNS.
        (f"{prefix}-s3-uri-style", "path"),
        (f"{prefix}-s3-key", secrets.backup_offsite_key),
        (f"{prefix}-s3-key-secret", secrets.backup_offsite_key_secret),
        (f"{prefix}-storage-verify-tls", "y"),
    ]
    if offsite.ca_certificate is not None:
        options.append((f"{prefix}-storage-ca-file", OFFSITE_CA_PATH))
    options += [
        (f"{prefix}-cipher-type", backup.cipher),
        (f"{prefix}-cipher-pass", secrets.backup_cipher_pass),
        (f"{prefix}-retention-full", str(backup.retention_full)),
        (f"{prefix}-retention-diff", str(backup.retention_diff)),
    ]
    return options


def _archive_async(backup: BackupSpec) -> list[tuple[str, str]]:
    """With two repositories, a segment reaches the live one but stays ``.ready`` in pg_wal
    until both have it (the lost one catches up on its return): asynchronous, so
    PostgreSQL's archiver waits on the spool, not on S3, and a queue limit past which
    WAL is dropped rather than fill pg_wal (docs/backups.md, "An off-site copy")."""
    if backup.offsite is None:
        return []
    return [
        ("archive-async", "y"),
        ("spool-path", SPOOL_DIR),
        ("archive-push-queue-max", ARCHIVE_QUEUE_MAX),
    ]


def _archive_push_timeouts(backup: BackupSpec) -> list[tuple[str, str]]:
    """With two repositories, a dead one must cost each push seconds, not minutes, so the live one
    still gets every segment: io-timeout bounds a connection (and, to S3, a transfer without any
    progress: a working link seldom stalls 5 s, and a false alarm costs a retry, never WAL),
    protocol-timeout a session whose peer died. Scoped to archive-push: a backup keeps the
    defaults, as its remote may sit silent for minutes."""
    if backup.offsite is None:
        return []
    return [
        ("io-timeout", str(ARCHIVE_PUSH_IO_TIMEOUT_S)),
        # db-timeout, unset, follows it down (pgBackRest keeps it 30 s below).
        ("protocol-timeout", str(ARCHIVE_PUSH_PROTOCOL_TIMEOUT_S)),
    ]


def _retention(backup: BackupSpec) -> list[tuple[str, str]]:
    return [
        ("repo1-retention-full", str(backup.retention_full)),
        ("repo1-retention-diff", str(backup.retention_diff)),
    ]


def _local_pg(spec: ClusterSpec) -> list[tuple[str, str]]:
    return [
        ("pg1-path", spec.postgres.data_dir),
        ("pg1-port", str(spec.postgres.port)),
        ("pg1-socket-path", postgres_server.SOCKET_DIR),
    ]


def _remote_pgs(
    spec: ClusterSpec, nodes: list[Node], pem_path: str, port: int, first: int
) -> list[tuple[str, str]]:
    options: list[tuple[str, str]] = []
    for index, peer in enumerate(nodes, start=first):
        prefix = f"pg{index}"
        options += [
            (f"{prefix}-host", str(peer.ip)),
            *_tls_client(prefix, pem_path, port),
            (f"{prefix}-path", spec.postgres.data_dir),
            (f"{prefix}-port", str(spec.postgres.port)),
            (f"{prefix}-socket-path", postgres_server.SOCKET_DIR),
        ]
    return options


def config_sections(
    spec: ClusterSpec, node: Node, secrets: ClusterSecrets
) -> list[tuple[str, list[tuple[str, str]]]]:
    """pgbackrest.conf of one VM, as ordered (section, options) pairs."""
    backup = spec.backup
    assert backup is not None
    name = stanza(spec)
    common = [
        ("compress-type", "zst"),
        ("log-level-console", "info"),
        ("log-level-file", "detail"),
        ("start-fast", "y"),
        ("backup-standby", "y"),
        # Parallel copy from the standby: two processes suit a 2-core VM.
        ("process-max", "2"),
    ]
    others = [n.name for n in spec.postgres_nodes if n != node]
    if node.role == "repository":
        # The repository VM holds the files and takes the backups through the databases' TLS servers.
        clients = [n.name for n in spec.postgres_nodes] + [RESTORE_CLIENT]
        global_options = [
            *_repository(backup, secrets),
            *_cipher(backup, secrets),
            *_retention(backup),
            *_offsite(backup, secrets),
            *common,
            *_tls_server(node, PEM_PATH, backup.tls_port, clients, name),
        ]
        stanza_options = _remote_pgs(spec, list(spec.postgres_nodes), PEM_PATH, backup.tls_port, first=1)
    elif backup.repository == "host":
        repository = spec.repository_node
        assert repository is not None
        global_options = [
            ("repo1-host", str(repository.ip)),
            *_tls_client("repo1", PEM_PATH, backup.tls_port),
            *_offsite(backup, secrets),
            *_archive_async(backup),
            *common,
            *_tls_server(node, PEM_PATH, backup.tls_port, [repository.name], name),
        ]
        stanza_options = _local_pg(spec)
    else:
        # path or s3: each database VM writes the repository itself, and as
        # primary takes backups reading its peers through their TLS servers.
        peers = [n for n in spec.postgres_nodes if n != node]
        global_options = [
            *_repository(backup, secrets),
            *_cipher(backup, secrets),
            *_retention(backup),
            *_offsite(backup, secrets),
            *_archive_async(backup),
            *common,
            *_tls_server(node, PEM_PATH, backup.tls_port, others, name),
        ]
        stanza_options = _local_pg(spec) + _remote_pgs(spec, peers, PEM_PATH, backup.tls_port, first=2)
    sections = [("global", global_options)]
    push_options = _archive_push_timeouts(backup) if node.runs_postgres else []
    if push_options:
        sections.append((ARCHIVE_PUSH_SECTION, push_options))
    return [*sections, (name, stanza_options)]


def restore_client_sections(spec: ClusterSpec, pem_path: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """pgbackrest.conf of a restore machine that reads the repository VM (certificate CN pgha-restore)."""
    backup, repository = spec.backup, spec.repository_node
    assert backup is not None and repository is not None
    global_options = [
        ("repo1-host", str(repository.ip)),
        *_tls_client("repo1", pem_path, backup.tls_port),
        ("log-level-console", "info"),
        ("process-max", "2"),
    ]
    return [("global", global_options), (stanza(spec), [("pg1-path", RESTORE_DIR)])]


def render_config(spec: ClusterSpec, sections: list[tuple[str, list[tuple[str, str]]]], role: str) -> str:
    return render_template(HERE, "pgbackrest.conf.j2", stanza=stanza(spec), role=role, sections=sections)


def _gate_context(spec: ClusterSpec, node: Node) -> dict[str, object]:
    return {
        "gated": node.runs_postgres,
        "ca_path": pki.CA_PATH,
        "primary_url": postgres_server.rest_api_url(spec, node) + "/primary",
    }


def archive_get_file() -> RenderedFile:
    return RenderedFile(
        ARCHIVE_GET_PATH,
        render_template(
            HERE, "archive-get.sh.j2", attempts=ARCHIVE_GET_ATTEMPTS, delay_s=ARCHIVE_GET_DELAY_S
        ),
        mode=0o755,
    )


def tool_files(spec: ClusterSpec, node: Node) -> list[RenderedFile]:
    """The backup, status and restore commands, the same on every VM that has pgBackRest."""
    backup = spec.backup
    assert backup is not None
    # One backup per repository: pgBackRest writes a backup to one repository at a time.
    repos = [1, 2] if backup.offsite is not None else None
    context = {
        "stanza": stanza(spec),
        "status_path": STATUS_PATH,
        "repos": repos,
        **_gate_context(spec, node),
    }
    return [
        RenderedFile(BACKUP_PATH, render_template(HERE, "pgha-backup.sh.j2", **context), mode=0o755),
        *vmprograms.program_files(
            backup_status,
            # Every repository is judged on its own: a stale repo2 is a problem even beside a fresh repo1.
            {"stanza": stanza(spec), "max_age_hours": backup.max_age_hours, "repos": repos or [1]},
        ),
        RenderedFile(
            RESTORE_PATH,
            render_template(
                HERE,
                "pgha-restore.sh.j2",
                stanza=stanza(spec),
                restore_dir=RESTORE_DIR,
                restore_port=RESTORE_PORT,
                archive_get=ARCHIVE_GET_PATH,
                bin_dir=spec.postgres.bin_dir,
                cluster_data_dir=spec.postgres.data_dir,
                patroni_config=postgres_server.CONFIG_PATH,
                socket_dir=postgres_server.SOCKET_DIR,
            ),
            mode=0o755,
        ),
        archive_get_file(),
    ]


def timer_files(spec: ClusterSpec) -> list[RenderedFile]:
    backup = spec.backup
    assert backup is not None
    timers = [
        ("full", "full backup", backup.full_schedule),
        ("diff", "differential backup", backup.diff_schedule),
        ("check", "backup and WAL-archive check", "hourly"),
    ]
    files = [
        RenderedFile(
            f"{UNIT_DIR}/{SERVICE_UNIT}",
            render_template(HERE, "pgha-backup@.service.j2", backup_path=BACKUP_PATH),
        )
    ]
    for kind, description, schedule in timers:
        files.append(
            RenderedFile(
                f"{UNIT_DIR}/{timer_name(kind)}",
                render_template(
                    HERE, "pgha-backup.timer.j2", kind=kind, description=description, schedule=schedule
                ),
            )
        )
    return files


def timer_name(kind: str) -> str:
    return f"pgha-backup-{kind}.timer"


def files(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[RenderedFile]:
    backup = spec.backup
    assert backup is not None
    sections = config_sections(spec, node, secrets)
    conf = render_config(spec, sections, node.role)
    # Group postgres: pgBackRest runs as postgres; the S3 key pair or the
    # repository passphrase make it a secret.
    secret_keys = {f"{repo}-{key}" for repo in ("repo1", OFFSITE_REPO) for key in SECRET_OPTIONS}
    holds_secret = any(key in secret_keys for _, options in sections for key, _ in options)
    result = [
        RenderedFile(CONFIG_PATH, conf, mode=0o640, owner="root", group="postgres", secret=holds_secret),
        *tool_files(spec, node),
    ]
    if backup.offsite is not None and backup.offsite.ca_certificate is not None:
        result.append(RenderedFile(OFFSITE_CA_PATH, backup.offsite.ca_certificate, mode=0o644))
    result.append(pki.key_file(PEM_PATH, tls.node(node), owner="postgres"))
    if not node.runs_postgres:
        # No Patroni here to stop Debian's server package from creating a cluster.
        result.append(postgres_server.createcluster_file())
    if runs_backups(spec, node):
        result += timer_files(spec)
    return result


# pgBackRest options of a repository that are secrets.
SECRET_OPTIONS = ("s3-key", "s3-key-secret", "cipher-pass")


def steps(spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls) -> list[Step]:
    backup = spec.backup
    if backup is None or not (node.runs_postgres or node.role == "repository"):
        return []
    node_files = tuple(files(spec, node, secrets, tls))
    repo_dir = backup.path if node.role == "repository" or backup.repository == "path" else None
    runner = runs_backups(spec, node)
    install = render_script(
        HERE,
        "backup.sh.j2",
        "backup",
        # The repository VM gets the server binaries too: pgha-restore runs there.
        packages=PACKAGES if node.runs_postgres else (*PACKAGES, *postgres_server.server_packages(spec)),
        postgres_version=None if node.runs_postgres else spec.postgres.version,
        repo_dir=repo_dir,
        spool_dir=SPOOL_DIR if backup.offsite is not None and node.runs_postgres else None,
        units=[f.path for f in node_files if f.path.startswith(UNIT_DIR)],
        tls_port=backup.tls_port,
        timers=[timer_name(k) for k in ("full", "diff", "check")] if runner else [],
    )
    result = [Step(node.name, "backup", install, node_files)]
    if runner:
        stanza_script = render_script(
            HERE,
            "stanza.sh.j2",
            "backup-stanza",
            stanza=stanza(spec),
            backup_path=BACKUP_PATH,
            repositories=2 if backup.offsite is not None else 1,
            **_gate_context(spec, node),
        )
        result.append(Step(node.name, "backup-stanza", stanza_script))
    return result


def bootstrap_method(spec: ClusterSpec) -> dict[str, object]:
    """Patroni's ``bootstrap`` keys for pgha:restore: the custom method, then the clean-up."""
    return {
        "method": "pgbackrest",
        "pgbackrest": {
            "command": BOOTSTRAP_PATH,
            # pgBackRest writes the recovery settings (target, restore_command): keep them.
            "keep_existing_recovery_conf": True,
            "no_params": True,
        },
        "post_bootstrap": POST_BOOTSTRAP_PATH,
    }


def bootstrap_files(
    spec: ClusterSpec, node: Node, secrets: ClusterSecrets, tls: pki.ClusterTls
) -> list[RenderedFile]:
    """What Patroni's restore bootstrap needs before Patroni starts (the patroni step installs them):
    pgBackRest's config and certificate, as the backup step renders them, and the two scripts."""
    restore = spec.restore
    assert restore is not None and spec.backup is not None
    # With backup.offsite, the CA of repo2 too: a restore reads repo2 when repo1 is lost.
    wanted = {CONFIG_PATH, PEM_PATH, OFFSITE_CA_PATH}
    bootstrap = render_template(
        HERE,
        "bootstrap-restore.sh.j2",
        data_dir=spec.postgres.data_dir,
        from_stanza=restore.from_stanza or stanza(spec),
        time=restore.time,
        label=restore.label,
        # repo2 alone: the local repository may be gone, or a fresh empty one.
        repo=2 if restore.repository == "offsite" else None,
        archive_get=ARCHIVE_GET_PATH,
    )
    post = render_template(
        HERE, "post-restore.sh.j2", settings=RECOVERY_SETTINGS, data_dir=spec.postgres.data_dir
    )
    return [
        *(f for f in files(spec, node, secrets, tls) if f.path in wanted),
        RenderedFile(BOOTSTRAP_PATH, bootstrap, mode=0o755),
        RenderedFile(POST_BOOTSTRAP_PATH, post, mode=0o755),
        archive_get_file(),
    ]


def restore_files(spec: ClusterSpec, tls: pki.ClusterTls, client: pki.NodeTls) -> list[RenderedFile]:
    """What a fresh restore machine needs: the CA, its pgha-restore certificate, config and tools."""
    pem_path = f"{pki.TLS_DIR}/pgha-restore.pem"
    conf = render_config(spec, restore_client_sections(spec, pem_path), "restore")
    node = spec.repository_node
    assert node is not None
    return [
        pki.ca_file(tls),
        postgres_server.createcluster_file(),
        pki.key_file(pem_path, client, owner="postgres"),
        RenderedFile(CONFIG_PATH, conf, mode=0o640, owner="root", group="postgres"),
        *tool_files(spec, node),
    ]


def restore_step(
    spec: ClusterSpec, machine: str, tls: pki.ClusterTls, client: pki.NodeTls, target_time: str | None
) -> Step:
    """Restore the latest backup, or the state at ``target_time``, on a fresh machine: the drill."""
    script = render_script(
        HERE,
        "restore.sh.j2",
        "restore",
        packages=(*PACKAGES, *postgres_server.server_packages(spec)),
        restore_path=RESTORE_PATH,
        target_time=target_time,
        postgres_version=spec.postgres.version,
    )
    return Step(machine, "restore", script, tuple(restore_files(spec, tls, client)))


SERVICE = Service(
    "backup",
    step_names=("backup", "backup-stanza"),
    steps=lambda t: steps(t.spec, t.node, t.secrets, t.tls),
    packages=lambda spec: PACKAGES,
)
