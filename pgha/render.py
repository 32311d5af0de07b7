"""Offline render, like ``helm template``: every file and step of every VM.

    python -m pgha.render --stack dev --out DIR

writes ``DIR/<vm>/<path on the VM>`` for each file, ``DIR/<vm>/steps/NN-name.sh``
for each remote step in order (NN: its group's place in pgha.plan.ORDER, so
``ls`` shows the order; steps with one NN run at the same time), and ``DIR/<vm>/cloud-init/`` for the NoCloud
seed. Secrets Pulumi would generate appear as ``PULUMI-SECRET(name)``, the
certificates it would issue as ``PULUMI-GENERATED(...)``.
Exit code 2 and one line per problem on an invalid stack config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import ClusterSecrets, ClusterTls, ConfigError, leave_step, load_stack, node_files, node_steps
from .cloudinit import DEPLOY_KEY_PLACEHOLDER, HostKey, seed
from .plan import group_number
from .spec import ClusterSpec


def write_tree(
    spec: ClusterSpec, secrets: ClusterSecrets, tls: ClusterTls, out: Path, deploy_key: str
) -> None:
    for node in spec.nodes:
        root = out / node.name
        for rendered in node_files(spec, node, secrets, tls):
            target = root / rendered.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rendered.content)
            target.chmod(rendered.mode)
        steps_dir = root / "steps"
        steps_dir.mkdir(parents=True, exist_ok=True)
        for step in node_steps(spec, node, secrets, tls):
            title = f"{group_number(step.name):02d}-{step.name}"
            script = steps_dir / f"{title}.sh"
            script.write_text(step.script)
            script.chmod(0o755)
            (steps_dir / f"{title}.files").write_text(
                "".join(f"{f.mode:04o} {f.owner}:{f.group} {f.path}\n" for f in step.files)
            )
        # Not in the plan's order: what runs on the VM before it is deleted (scale-in).
        leave = steps_dir / "leave.sh"
        leave.write_text(leave_step(spec, node).script)
        leave.chmod(0o755)
        if node.external:
            continue  # an existing machine: no VM, so no NoCloud seed
        seed_dir = root / "cloud-init"
        seed_dir.mkdir(parents=True, exist_ok=True)
        for name, content in seed(spec, node, deploy_key, HostKey.placeholder(node)).items():
            (seed_dir / name).write_text(content)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pgha.render", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_stack(args.stack)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_tree(
        spec,
        ClusterSecrets.placeholders(r.name for r in spec.login_roles),
        ClusterTls.placeholders(spec),
        args.out,
        DEPLOY_KEY_PLACEHOLDER,
    )
    print(f"rendered {len(spec.nodes)} VMs of stack {args.stack} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
