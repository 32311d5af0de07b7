"""``python -m lab VERB``: bring a stack up locally, look at it, break it.

up [--stack dev]        build/boot/seed the machines and run every step
status [--json]         roles, lag, VIP holder, etcd health
down                    stop everything, remove namespace and overlays (refused while
                        another live process, e.g. a test run, holds the stack's lock)
replace NODE            destroy a VM's disk and rebuild it (a dead VM replaced)
exec NODE -- CMD        run CMD inside a machine
run -- CMD              run CMD inside the lab network (libpq env → VIP:5432)
psql [--replica]        psql on the VIP
kill|start NODE         hard power-off / boot again on the same disk
crash-host HOST         kill every machine of that Proxmox host
partition|heal NODE     cut / restore its private link
freeze|thaw NODE        stop / resume every process of the machine
switchover [--to NODE]  planned switchover with patronictl, run inside a node
backup [--type full|diff|incr]   one pgBackRest backup, as its timer takes it
restore-drill [--time T] [--sql Q] [--keep]   restore onto a fresh machine, check it
rolling-update          rolling package update, one VM at a time (the upgrade steps)
change --to FILE [--from F] [--plan-only] [--without-guards]   pulumi up to FILE, replayed
host-maintenance HOST start|finish|status   a Proxmox host's planned maintenance (scenarios/hostmaint.py)
disaster-recovery       lose every VM but the repository, up again with pgha:restore (scenarios/restore.py)
bench failover [--runs N] | bench vip-follow [--faults 8,1]   (scenarios/bench.py, scenarios/onehop.py)
bench vip-only [--runs N]   fault 5b with primaryWeight 0: the VIP holder dies, not the primary
bench proxy [--clients 1,8] [--rounds N] [--primaries all]   VIP:5432 against direct, A B A B
bench pooler [--clients 200] [--seconds 30] [--rounds N]   VIP:6432 (PgBouncer) against VIP:5432
bench moving-in [--runs N] [--no-kill]   an old server's database moved in, refused writes at the cutover
bench blue-green [--runs N]   a live dev lab moved into the green stack beside it, refused writes
bench offsite-restore [--runs N]   (--stack offsite) lose every VM and the repository, rebuild from repo2
bench offsite-archive [--lost repository-vm|bucket] [--runs N]   (--stack offsite) WAL to the repository left
bench changes [--rows NAME,...]   the change table's rows, each there and back under the writer
pictures architecture|timeline [--data F] | pictures prometheus   the docs' pictures (lab/pictures)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pgha import ConfigError
from pgha.topology import failure_domains

from . import pictures as pictures_
from .cluster import Lab, switchover
from .machines import LabBusy, StepError
from .pictures import prometheus as prometheus_pictures
from .scenarios import (
    FAILOVER_FAULTS,
    ab_switchover,
    backups,
    bluegreen,
    change,
    change_table,
    failover,
    follow,
    hostmaint,
    moving_in,
    offsite_archive,
    pooler,
    proxy,
    restore,
    timeline_table,
    without_one_hop,
)


def _print_outputs(lab: Lab) -> None:
    status = lab.status()
    print(f"\nvip: {status['vip']}")
    print(f"primaryPort: {status['primaryPort']}   (read-write, the primary)")
    print(f"replicaPort: {status['replicaPort']}   (read-only, the replicas)")
    for node in status["nodes"]:
        print(
            f"  {node['name']:<10} host={node['host']:<6} {node['ip']:<12} {node['role']:<12} {node['state']}"
        )
    print(f"VIP held by: {status['vipHolder']}")
    print("connect: python -m lab psql   (or: python -m lab run -- psql)")


def _render_status(status: dict) -> str:
    lines = [f"VIP {status['vip']} held by {status['vipHolder']}  (5432 rw, 5433 ro)"]
    lines.append(f"{'node':<10} {'host':<8} {'ip':<12} {'role':<13} {'state':<12} {'lag':>8}  machine")
    for n in status["nodes"]:
        lag = "" if n["lagBytes"] is None else str(n["lagBytes"])
        identity = f"{n['name']:<10} {n['host']:<8} {n['ip']:<12}"
        lines.append(f"{identity} {n['role']:<13} {n['state']:<12} {lag:>8}  {n['machine']}")
    etcd = status["etcd"]
    backup = status.get("backup")
    if backup is not None:
        last = backup.get("lastBackup") or {}
        verdict = "ok" if backup.get("ok") else "PROBLEM: " + "; ".join(backup.get("problems", []))
        lines.append(
            f"backups: {backup.get('backups', 0)}, newest {last.get('label')} ({last.get('type')}, "
            f"{last.get('ageHours')} h old), WAL archived up to {backup.get('archiveMax')}: {verdict}"
        )
    healthy = sum(etcd.values())
    quorum = len(etcd) // 2 + 1
    verdict = "quorum" if healthy >= quorum else "NO QUORUM: no failover possible"
    lines.append(
        f"etcd: {healthy}/{len(etcd)} healthy ({verdict}): "
        + ", ".join(f"{k}={'ok' if v else 'down'}" for k, v in etcd.items())
    )
    # The same text as the stack output failureDomains: which host's loss the layout survives.
    for host, consequence in status.get("failureDomains", {}).items():
        lines.append(f"if {host} is lost: {consequence}")
    return "\n".join(lines)


def _print_failover_summary(summary: dict[str, Any]) -> None:
    """A fault's summary as one JSON line, then its timeline as a table."""
    print(json.dumps(summary), flush=True)
    print(timeline_table(summary), flush=True)


def build_parser() -> argparse.ArgumentParser:
    """Every verb with a one-line help, so ``--help`` is a map; the docs' commands are checked against it."""
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description=__doc__.split("\n")[0].replace("``", ""),
        epilog="`python -m lab VERB --help` for a verb's options; docs/lab.md for the whole story.",
    )
    parser.add_argument("--stack", default="dev", help="the stack, Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument(
        "--beside", metavar="STACK", help="on that stack's lab bridge (--stack green --beside dev)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("up", help="build, boot and seed the machines and run every step")
    verbs.add_parser(
        "down",
        help="stop everything, remove namespace and overlays (refused while another process holds the stack)",
    )
    status = verbs.add_parser("status", help="roles, lag, VIP holder, etcd health, backups")
    status.add_argument("--json", action="store_true", help="the same as JSON")
    exec_ = verbs.add_parser("exec", help="run CMD inside a machine: exec NODE -- CMD")
    exec_.add_argument("node")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER)
    run = verbs.add_parser(
        "run", help="run CMD inside the lab network, libpq env set to VIP:5432: run -- CMD"
    )
    run.add_argument("--replica", action="store_true", help="point libpq at port 5433")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    psql = verbs.add_parser("psql", help="psql on the VIP (read-write port)")
    psql.add_argument("--replica", action="store_true", help="the read-only port instead")
    machine_verbs = {
        "kill": "hard power-off of a machine",
        "start": "boot a machine again on the same disk",
        "partition": "cut a machine's private link",
        "heal": "restore a machine's private link",
        "freeze": "stop every process of a machine",
        "thaw": "resume every process of a machine",
    }
    for verb, help_text in machine_verbs.items():
        verbs.add_parser(verb, help=help_text).add_argument("node")
    verbs.add_parser("crash-host", help="kill every machine of one Proxmox host").add_argument("host")
    verbs.add_parser("replace", help="destroy a VM's disk and rebuild it (a dead VM replaced)").add_argument(
        "node"
    )
    verbs.add_parser("switchover", help="planned switchover with patronictl, run inside a node").add_argument(
        "--to", metavar="NODE", help="default: the sync standby"
    )
    take = verbs.add_parser("backup", help="one pgBackRest backup, as its timer takes it")
    take.add_argument("--type", default="full", choices=("full", "diff", "incr"))
    drill = verbs.add_parser("restore-drill", help="restore onto a fresh machine and check it")
    drill.add_argument("--time", help="PITR target, e.g. '2026-11-26 15:04:05+00' (default: latest)")
    drill.add_argument("--sql", help="a query to run on the restored copy")
    drill.add_argument("--keep", action="store_true", help="leave the restore machine running")
    verbs.add_parser("rolling-update", help="rolling package update, one VM at a time (the upgrade steps)")
    change_ = verbs.add_parser("change", help="pulumi up from the stack's config to another, on the lab")
    change_.add_argument("--to", type=Path, required=True, help="the new stack file (Pulumi.dev.next.yaml)")
    change_.add_argument("--from", dest="start", type=Path, help="the old one (default: the stack's file)")
    change_.add_argument("--plan-only", action="store_true", help="print the plan; no lab needed")
    change_.add_argument(
        "--without-guards", action="store_true", help="the program's inputs without ignoreChanges (a control)"
    )
    host_maintenance = verbs.add_parser("host-maintenance", help="a Proxmox host's planned maintenance")
    host_maintenance.add_argument("host")
    host_maintenance.add_argument("action", choices=("start", "finish", "status"))
    drill = verbs.add_parser(
        "disaster-recovery", help="lose every VM but the repository, up again with pgha:restore"
    )
    drill.add_argument(
        "--history-gap",
        action="store_true",
        help="first two switchovers, the first one's timeline history file taken out of the repository",
    )
    bench = verbs.add_parser(
        "bench", help="measurements: failover, vip-follow, vip-only, proxy, pooler, moving-in"
    )
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bench_failover = benches.add_parser("failover", help="time each failover scenario, end to end")
    bench_failover.add_argument("--runs", type=int, default=3)
    bench_failover.add_argument("--faults", default=",".join(FAILOVER_FAULTS), help="scenario keys")
    bench_failover.add_argument(
        "--timeline-out", metavar="FILE", help="also write every run's timeline there (JSON)"
    )
    bench_follow = benches.add_parser("vip-follow", help="how fast the VIP follows the new primary")
    bench_follow.add_argument("--runs", type=int, default=2)
    bench_follow.add_argument("--faults", default="8,1", help="scenario keys (8: switchover, 1: power-off)")
    bench_follow.add_argument(
        "--ab", action="store_true", help="switchovers alternating primaryWeight 0 and 50 (A B A B)"
    )
    bench_vip_only = benches.add_parser(
        "vip-only", help="fault 5b with primaryWeight 0: the VIP holder dies, not the primary"
    )
    bench_vip_only.add_argument("--runs", type=int, default=5)
    bench_proxy = benches.add_parser("proxy", help="VIP:5432 through HAProxy against direct, A B A B")
    bench_proxy.add_argument("--seconds", type=int, default=10, help="per pgbench run")
    bench_proxy.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    bench_proxy.add_argument("--rounds", type=int, default=3, help="A B pairs per client count")
    bench_proxy.add_argument(
        "--primaries", default="", help="comma-separated nodes to switch over to in turn, or 'all'"
    )
    bench_pooler = benches.add_parser("pooler", help="VIP:6432 (PgBouncer) against VIP:5432")
    bench_pooler.add_argument("--clients", type=int, default=200)
    bench_pooler.add_argument("--seconds", type=int, default=30, help="per pgbench run")
    bench_pooler.add_argument("--rounds", type=int, default=1, help="pooler/direct pairs per mode")
    bench_pooler.add_argument("--modes", default="-S,-N", help="pgbench modes, comma-separated")
    bench_moving_in = benches.add_parser(
        "moving-in", help="pgha-import from a Debian 12 PostgreSQL 15 across a switchover and a kill"
    )
    bench_moving_in.add_argument("--runs", type=int, default=3)
    bench_moving_in.add_argument(
        "--no-kill", action="store_true", help="the switchover only, no lost primary"
    )
    bench_bluegreen = benches.add_parser(
        "blue-green", help="the dev lab (blue) moved into the green stack beside it, refused writes"
    )
    bench_bluegreen.add_argument("--runs", type=int, default=3)
    bench_offsite = benches.add_parser(
        "offsite-restore", help="RPO and RTO of a rebuild from the off-site bucket alone (--stack offsite)"
    )
    bench_offsite.add_argument("--runs", type=int, default=3)
    bench_archive = benches.add_parser(
        "offsite-archive", help="one repository lost: seconds until WAL is in the other (--stack offsite)"
    )
    bench_archive.add_argument("--lost", choices=("repository-vm", "bucket"), default="bucket")
    bench_archive.add_argument("--runs", type=int, default=1)
    bench_changes = benches.add_parser(
        "changes", help="the change table's rows, each replayed there and back (scenarios/change_table.py)"
    )
    bench_changes.add_argument("--rows", default="", help="row names (substrings), comma-separated")
    pictures = verbs.add_parser("pictures", help="draw the docs' pictures into docs/pictures/")
    drawn = pictures.add_subparsers(dest="picture", required=True, metavar="PICTURE")
    drawn.add_parser("architecture", help="the stack's hosts, VMs, services and ports, from its spec")
    drawn.add_parser(
        "timeline", help="failover phases, median per fault, from the bench's data"
    ).add_argument(
        "--data", type=Path, help="the bench's timelines (default: its committed file, else the sample)"
    )
    drawn.add_parser("prometheus", help="screenshots of Prometheus's alerts and a graph (the lab must be up)")
    pictures.add_argument("--out", type=Path, help="another directory than docs/pictures/")
    for sub in verbs.choices.values():
        # `python -m lab up --stack ops` as well as `python -m lab --stack ops up`.
        sub.add_argument("--stack", default=argparse.SUPPRESS, help="the stack (default: dev)")
    return parser


def _draw(picture: str, stack: str, out_dir: Path, data: Path | None) -> int:
    """The SVG pictures: no lab needed, only the stack's config or the bench's data."""
    if picture == "architecture":
        out, text = out_dir / pictures_.ARCHITECTURE_SVG.name, pictures_.draw_architecture(stack)
    else:
        out, text = out_dir / pictures_.TIMELINE_SVG.name, pictures_.draw_timeline(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def _bench_offsite(lab: Lab, runs: int) -> None:
    """Each run's result as one JSON line, then RPO and RTO over all runs (every run reported)."""
    results = []
    for run in range(1, runs + 1):
        result = restore.offsite_disaster_recovery(lab)
        results.append(result)
        print(json.dumps({"run": run, **result}), flush=True)
    summary: dict[str, Any] = {"runs": len(results)}
    for key in ("rpo_s", "rto_s", "up_s", "repo2_wal_s"):
        values = sorted(r[key] for r in results if r.get(key) is not None)
        summary[key] = values
        if values:
            summary[f"{key}_median"] = values[len(values) // 2]
    print(json.dumps(summary), flush=True)


def _change(stack: str, to: Path, start: Path | None, *, plan_only: bool, guards: bool) -> int:
    """Print the plan as ``pulumi preview --diff`` would, then carry it out under a writer."""
    plan = change.compute(stack, to, start=start, guards=guards)
    print(plan.render(stack), flush=True)
    if plan_only or plan.refused:
        return 1 if plan.refused else 0
    lab = Lab(stack)
    summary = change.carry_out(lab, plan, change.new_spec(stack, to))
    print(json.dumps(summary), flush=True)
    return 0 if summary["kind"] != "VIOLATION" and summary.get("rule", "kept") == "kept" else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "pictures" and args.picture != "prometheus":
        return _draw(
            args.picture, args.stack, args.out or pictures_.PICTURES_DIR, getattr(args, "data", None)
        )

    if args.verb == "change":
        guards = not args.without_guards
        return _change(args.stack, args.to, args.start, plan_only=args.plan_only, guards=guards)
    try:
        lab = Lab(args.stack, beside=args.beside)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2

    if args.verb == "up":
        started = time.monotonic()
        timings, results = lab.up()
        changed = [r for r in results if r.changed]
        print(f"\nlab up in {time.monotonic() - started:.1f} s: {json.dumps(timings.as_dict())}")
        print(f"steps that changed something: {len(changed)} of {len(results)}")
        _print_outputs(lab)
    elif args.verb == "replace":
        started = time.monotonic()
        lab.replace(args.node)
        print(f"\n{args.node} replaced in {time.monotonic() - started:.1f} s")
        _print_outputs(lab)
    elif args.verb == "down":
        lab.down()
        print(f"lab {args.stack} is down")
    elif args.verb == "status":
        view = lab.status()
        view["failureDomains"] = failure_domains(lab.spec)
        if lab.spec.backup is not None:
            view["backup"] = backups.status(lab)
        print(json.dumps(view, indent=2) if args.json else _render_status(view))
    elif args.verb == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return lab.exec(args.node, cmd).returncode
    elif args.verb == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        port = lab.spec.haproxy.replica_port if args.replica else None
        return lab.run(cmd, port=port).returncode
    elif args.verb == "psql":
        port = lab.spec.haproxy.replica_port if args.replica else None
        return lab.run(["psql"], port=port).returncode
    elif args.verb == "crash-host":
        victims = [n for n in lab.spec.nodes if n.host == args.host]
        if not victims:
            print(f"error: no VM on host {args.host}", file=sys.stderr)
            return 2
        for node in victims:
            lab.machine(node).kill()
        print(f"host {args.host} crashed: {', '.join(n.name for n in victims)} powered off")
    elif args.verb == "switchover":
        lab.wait_ready()
        try:
            print(f"switched over: {switchover(lab, to=args.to)} is the leader")
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    elif args.verb == "backup":
        result = backups.take(lab, args.type)
        print(result.stdout + result.stderr, end="")
        return result.returncode
    elif args.verb == "restore-drill":
        drilled = backups.restore_drill(lab, args.time, args.sql, keep=args.keep)
        print(drilled.output, end="")
        if drilled.answer is not None:
            print(drilled.answer)
    elif args.verb == "rolling-update":
        started = time.monotonic()
        try:
            lab.rolling_update()
        except StepError as error:
            print(f"error: rolling update stopped: {error}", file=sys.stderr)
            return 1
        print(f"rolling update done in {time.monotonic() - started:.1f} s")
        print(_render_status(lab.status()))
    elif args.verb == "host-maintenance":
        started = time.monotonic()
        result = hostmaint.run_tool(lab, args.host, args.action, check=False)
        print(result.stderr + result.stdout, end="")
        if args.action != "status":
            print(f"({args.action} took {time.monotonic() - started:.1f} s, exit {result.returncode})")
        return result.returncode
    elif args.verb == "disaster-recovery":
        print(json.dumps(restore.disaster_recovery(lab, history_gap=args.history_gap)))
    elif args.verb == "bench" and args.bench == "failover":
        faults = [f for f in args.faults.split(",") if f]
        summaries = failover(lab, args.runs, faults, emit=_print_failover_summary)
        if args.timeline_out:
            runs = [
                {"fault": s["fault"], "timeline": r["timeline"]}
                for s in summaries
                for r in s["per_run"]
                if r.get("timeline")
            ]
            Path(args.timeline_out).write_text(json.dumps(runs, indent=1) + "\n")
    elif args.verb == "bench" and args.bench == "vip-only":
        without_one_hop(
            lab,
            lambda lab: failover(
                lab, args.runs, ["5b"], emit=lambda summary: print(json.dumps(summary), flush=True)
            ),
        )
    elif args.verb == "bench" and args.bench == "vip-follow" and args.ab:
        for result in ab_switchover(lab, args.runs):
            print(json.dumps(result), flush=True)
    elif args.verb == "bench" and args.bench == "vip-follow":
        for fault in [f for f in args.faults.split(",") if f]:
            for _ in range(args.runs):
                print(json.dumps(follow(lab, fault)), flush=True)
    elif args.verb == "bench" and args.bench == "moving-in":
        for _ in range(args.runs):
            print(json.dumps(moving_in.run(lab, kill=not args.no_kill)), flush=True)
    elif args.verb == "bench" and args.bench == "blue-green":
        for _ in range(args.runs):
            print(json.dumps(bluegreen.run(lab)), flush=True)
    elif args.verb == "bench" and args.bench == "offsite-restore":
        _bench_offsite(lab, args.runs)
    elif args.verb == "bench" and args.bench == "offsite-archive":
        for _ in range(args.runs):
            print(json.dumps(offsite_archive.repository_lost(lab, args.lost)), flush=True)
    elif args.verb == "bench" and args.bench == "changes":
        rows = change_table.select([n for n in args.rows.split(",") if n])
        results = change_table.replay(lab, rows, emit=lambda entry: print(json.dumps(entry), flush=True))
        print(change_table.table(results))
    elif args.verb == "bench" and args.bench == "pooler":
        pooler(
            lab,
            clients=args.clients,
            seconds=args.seconds,
            rounds=args.rounds,
            modes=[m for m in args.modes.split(",") if m],
            emit=lambda summary: print(json.dumps(summary), flush=True),
        )
    elif args.verb == "bench":
        names = [n.name for n in lab.spec.postgres_nodes] if args.primaries == "all" else args.primaries
        proxy(
            lab,
            seconds=args.seconds,
            clients=[int(c) for c in args.clients.split(",") if c],
            rounds=args.rounds,
            primaries=[n for n in (names.split(",") if isinstance(names, str) else names) if n],
            emit=lambda summary: print(json.dumps(summary), flush=True),
        )
    elif args.verb == "pictures":
        written = prometheus_pictures.take(lab, args.out or pictures_.PICTURES_DIR)
        print(json.dumps(written, indent=1))
    else:
        machine = lab.machine(lab.spec.node(args.node))
        getattr(machine, args.verb)()
        print(f"{args.node}: {args.verb} done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (subprocess.CalledProcessError, LabBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
