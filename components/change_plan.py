"""What ``pulumi up`` would do, computed from two runs of the program: the replay's pure part.

``pulumi preview`` needs the CLI, the state and a Proxmox: none runs in the
lab. Two runs of the program under Pulumi's mocks (the old stack config and
the new one, the second with the first's state, as the engine keeps it) give
every resource's inputs and options; :func:`diff` turns them into the steps
the engine would take, each with its reason, and the provider's reaction to
each changed input is read off :mod:`components.provider_behaviour` (rows
citing bpg/terraform-provider-proxmox) or :data:`OTHER_PROVIDERS`. Steps
are grouped in waves: a resource waits for the changed resources it depends
on, and those of one wave run at the same time, as the engine runs them.

The rule the program promises, judged by :meth:`Plan.verdict`: a change
reaches no VM, or it rolls (the steps' own scripts take the VMs one at a
time), or the preview refuses it naming the key. A plan that restarts,
stops, replaces or re-plugs two VMs in the same wave breaks it, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .provider_behaviour import IMAGE, SNIPPET, VM, covers, predict, row

COMMAND = "command:remote:Command"
PASSWORD = "random:index/randomPassword:RandomPassword"

# Providers other than Proxmox: what a changed input does, with the source it rests on.
OTHER_PROVIDERS: dict[str, tuple[str, str]] = {
    # type: (action on any changed input but those named in _UPDATE_IN_PLACE, source)
    COMMAND: (
        "replace",
        "pulumi_command/remote/command.py (the SDK's schema text): a changed trigger replaces the Command "
        "when it has no `update` command (pgha sets none): its `create` runs again",
    ),
    PASSWORD: ("replace", "terraform-provider-random: every input of random_password is RequiresReplace"),
    "tls:index/privateKey:PrivateKey": (
        "replace",
        "terraform-provider-tls: tls_private_key, RequiresReplace",
    ),
    "tls:index/selfSignedCert:SelfSignedCert": (
        "replace",
        "terraform-provider-tls: tls_self_signed_cert, RequiresReplace",
    ),
    "tls:index/certRequest:CertRequest": (
        "replace",
        "terraform-provider-tls: tls_cert_request, RequiresReplace",
    ),
    "tls:index/locallySignedCert:LocallySignedCert": (
        "replace",
        "terraform-provider-tls: tls_locally_signed_cert, RequiresReplace",
    ),
}
# A Command's inputs other than its triggers: an update, which runs `create` again (no `update` set).
_COMMAND_TRIGGER = "triggers"

# The VM effects that take a VM's service away, and those that change every NIC at once.
DISRUPTIVE = ("replace", "stop", "reboot")
PROVIDER_TABLE_TYPES = (VM, SNIPPET, IMAGE)


@dataclass(frozen=True)
class Resource:
    """One registration as the engine gets it: plain inputs (secrets unwrapped) and options."""

    urn: str
    typ: str
    name: str
    inputs: Mapping[str, Any]
    dependencies: frozenset[str] = frozenset()  # URNs, depends_on and inputs'
    parent: str = ""
    ignore_changes: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()
    replacement_trigger: Any = None
    replace_with: tuple[str, ...] = ()
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    id: str = ""  # what the run's provider (the mocks) answered: other resources' inputs may carry it


@dataclass(frozen=True)
class Step:
    """What the engine does to one resource, and what reaches the machine."""

    op: str  # create, update, replace, delete
    resource: Resource
    reason: str
    paths: tuple[str, ...] = ()
    # For a VM: what the provider does to the running machine (reboot, pending, stop, migrate, live).
    effect: str = ""
    unknown: tuple[str, ...] = ()  # changed inputs no table row covers
    wave: int = 0

    @property
    def symbol(self) -> str:
        if self.op == "replace":
            return "-+" if self.resource.delete_before_replace else "+-"
        return {"create": "+", "update": "~", "delete": "-"}[self.op]


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    unchanged: int
    refused: tuple[str, ...] = ()  # the preview's error lines, when the program refused the change
    warnings: tuple[str, ...] = ()
    waves: dict[int, tuple[Step, ...]] = field(default_factory=dict, compare=False)

    def of(self, typ: str) -> list[Step]:
        return [s for s in self.steps if s.resource.typ == typ]

    def vm_actions(self) -> dict[str, str]:
        """Each VM's fate: its step's effect, or its op (create, delete, replace), or none."""
        found = {s.resource.name: (s.effect or s.op) for s in self.of(VM)}
        return found

    def reaches_vms(self) -> bool:
        """A step runs on a VM, or the provider changes a running VM (a pending restart does not)."""
        return any(s.resource.typ == COMMAND for s in self.steps) or any(
            s.effect not in ("", "pending") or s.op in ("create", "replace", "delete") for s in self.of(VM)
        )

    def violations(self) -> list[str]:
        """Waves that take more than one VM down, or change every VM's NIC, at the same time."""
        problems = []
        for wave, steps in sorted(self.waves.items()):
            vms = [s for s in steps if s.resource.typ == VM]
            down = sorted(s.resource.name for s in vms if s.effect in DISRUPTIVE or s.op == "replace")
            if len(down) > 1:
                what = sorted({s.effect or s.op for s in vms if s.resource.name in down})
                problems.append(
                    f"wave {wave}: {'/'.join(what)} of {len(down)} VMs at once: {', '.join(down)}"
                )
            nics = sorted(
                s.resource.name for s in vms if any(p.startswith("networkDevices") for p in s.paths)
            )
            if len(nics) > 1:
                problems.append(f"wave {wave}: the NICs of {len(nics)} VMs change at once: {', '.join(nics)}")
        unknown = sorted({f"{s.resource.name}: {p}" for s in self.steps for p in s.unknown})
        problems += [f"no row for a changed input ({u}): the replay cannot tell" for u in unknown]
        return problems

    def verdict(self) -> str:
        """One of the three kinds the program promises, or the violation."""
        if self.refused:
            return "refused by preview"
        if self.violations():
            return "VIOLATION"
        return "rolling" if self.reaches_vms() else "nothing reaches the VMs"

    def render(self, stack: str = "") -> str:
        """The plan as ``pulumi preview --diff`` prints it, wave by wave; values never shown."""
        lines = [f"Previewing update ({stack}):" if stack else "Previewing update:"]
        if self.refused:
            lines += [f"    error: {line}" for line in self.refused]
        for wave, steps in sorted(self.waves.items()):
            lines.append(f"  wave {wave} ({len(steps)} at the same time):")
            for step in steps:
                effect = f" [{step.effect}]" if step.effect and step.effect != step.op else ""
                shown = ", ".join(step.paths[:6]) + (", ..." if len(step.paths) > 6 else "")
                diff = f" [diff: ~{shown}]" if shown else ""
                lines.append(
                    f"    {step.symbol} {step.resource.typ} {step.resource.name} {step.op}{effect}{diff}"
                )
                lines.append(f"        {step.reason}")
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.op] = counts.get(step.op, 0) + 1
        lines.append("Resources:")
        for op in ("create", "update", "replace", "delete"):
            if counts.get(op):
                lines.append(f"    {counts[op]} to {op}")
        lines.append(f"    {self.unchanged} unchanged")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"VIOLATION: {v}" for v in self.violations()]
        lines.append(f"kind: {self.verdict()}")
        return "\n".join(lines)


def leaf_paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of an input as Pulumi property paths (``disks[0].importFrom``)."""
    if isinstance(value, dict):
        if not value and prefix:
            return {prefix: value}
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(leaf_paths(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list):
        if not value and prefix:
            return {prefix: value}
        found = {}
        for index, item in enumerate(value):
            found.update(leaf_paths(item, f"{prefix}[{index}]"))
        return found
    return {prefix: value}


def changed_paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    before, after = leaf_paths(dict(old)), leaf_paths(dict(new))
    return tuple(sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)))


def _within(path: str, prop: str) -> bool:
    return path == prop or path.startswith((f"{prop}.", f"{prop}["))


def unknown_inputs(new: Resource, replaced: Mapping[str, str]) -> list[str]:
    """The inputs a replaced resource's outputs feed (``replaced``: URN -> id), unknown until the apply.

    The preview shows them changed (the mocks' stand-in outputs stay equal, a
    real certificate would not). The engine keeps an unknown where the output
    sits, not over the whole input: where leaves of the input hold every
    replaced dependency's id, those leaves stand for it (so an ``ignoreChanges``
    on them applies, as the engine would); otherwise the whole input is taken.
    """
    leaves = leaf_paths(dict(new.inputs))
    found: set[str] = set()
    for prop, urns in new.property_dependencies.items():
        hit = [replaced[u] for u in sorted(urns) if u in replaced]
        if not hit:
            continue
        holding = {
            p
            for p, value in leaves.items()
            if _within(p, prop) and isinstance(value, str) and any(i and i in value for i in hit)
        }
        carried = all(any(i and i in leaves[p] for p in holding) for i in hit)
        found.update(holding if carried else {prop})
    return sorted(found)


def _judge(old: Resource, new: Resource, replaced: Mapping[str, str], *, guards: bool) -> Step | None:
    """The step for a resource in both runs, or None when the engine leaves it alone."""
    unknown = unknown_inputs(new, replaced)
    paths = tuple(sorted({*changed_paths(old.inputs, new.inputs), *unknown}))
    ignores = new.ignore_changes if guards else ()
    visible = tuple(p for p in paths if not any(covers(i, p) for i in ignores))
    if old.replacement_trigger != new.replacement_trigger and new.replacement_trigger is not None:
        return Step("replace", new, "replacementTrigger changed (resource option)", visible)
    chained = sorted(u for u in new.replace_with if u in replaced)
    if chained:
        names = ", ".join(u.rsplit("::", 1)[-1] for u in chained)
        return Step("replace", new, f"replaceWith: {names} is replaced (resource option)", visible)
    if not visible:
        return None
    forced = [p for p in visible if any(covers(r, p) for r in new.replace_on_changes)]
    if forced:
        return Step("replace", new, "replaceOnChanges (resource option)", visible)
    if new.typ in PROVIDER_TABLE_TYPES:
        reboot = bool(new.inputs.get("rebootAfterUpdate", True)) if guards else True
        found = predict(new.typ, visible, reboot_after_update=reboot)
        sources = sorted({row(new.typ, p).source for p in found.changed})  # type: ignore[union-attr]
        reason = "; ".join(sources) if sources else "no row in provider_behaviour"
        if found.action == "replace":
            return Step("replace", new, reason, visible, "replace", found.unknown)
        effect = "" if found.action == "update" and new.typ != VM else found.action
        if new.typ == VM and found.action == "update":
            effect = "live"
        return Step("update", new, reason, visible, effect, found.unknown)
    if new.typ == COMMAND:
        if any(p.startswith(_COMMAND_TRIGGER) for p in visible):
            return Step("replace", new, OTHER_PROVIDERS[COMMAND][1], visible)
        return Step("update", new, "pulumi_command: no `update` command, so `create` runs again", visible)
    if new.typ in OTHER_PROVIDERS:
        action, source = OTHER_PROVIDERS[new.typ]
        return Step(action, new, source, visible)
    return Step(
        "update", new, "no row for this provider: assumed an update in place", visible, unknown=visible
    )


def diff(
    old: Mapping[str, Resource],
    new: Mapping[str, Resource],
    *,
    refused: Iterable[str] = (),
    warnings: Iterable[str] = (),
    guards: bool = True,
) -> Plan:
    """The engine's steps from the old run's resources to the new run's (both keyed by URN).

    ``guards`` false drops the program's ``ignoreChanges`` and its
    ``rebootAfterUpdate: false`` (the provider's default, true): what the same
    edit would do without them, the replay's negative control.
    """
    if refused:
        # The preview stops at the refusal: nothing is done, whatever the program registered so far.
        return Plan((), len(old), tuple(refused), tuple(warnings))
    order = _topological(new)
    replaced: dict[str, str] = {}  # URN -> the id its inputs' dependents may carry
    steps: dict[str, Step] = {}
    for urn in order:
        resource = new[urn]
        if urn not in old:
            steps[urn] = Step("create", resource, "new in the program")
            continue
        step = _judge(old[urn], resource, replaced, guards=guards)
        if step is not None:
            steps[urn] = step
            if step.op == "replace":
                replaced[urn] = resource.id
    waves = _waves(new, order, steps)
    deleted = [old[u] for u in reversed(_topological(old)) if u not in new]
    last = max(waves.values(), default=0)
    planned = [
        Step(s.op, s.resource, s.reason, s.paths, s.effect, s.unknown, waves[u]) for u, s in steps.items()
    ]
    # Deletions come last, dependents first (the engine deletes in reverse dependency order).
    delete_wave = _delete_waves(old, deleted, last)
    for resource in deleted:
        reason = "gone from the program" + (
            " (retainOnDelete: the provider leaves it)" if resource.retain_on_delete else ""
        )
        planned.append(Step("delete", resource, reason, wave=delete_wave[resource.urn]))
    planned.sort(key=lambda s: (s.wave, s.resource.typ, s.resource.name))
    grouped: dict[int, list[Step]] = {}
    for step in planned:
        grouped.setdefault(step.wave, []).append(step)
    unchanged = len([u for u in new if u in old and u not in steps])
    return Plan(
        tuple(planned),
        unchanged,
        tuple(refused),
        tuple(warnings),
        {k: tuple(v) for k, v in grouped.items()},
    )


def _edges(resources: Mapping[str, Resource], urn: str) -> set[str]:
    resource = resources[urn]
    found = set(resource.dependencies)
    if resource.parent:
        found.add(resource.parent)
    return {u for u in found if u in resources and u != urn}


def _topological(resources: Mapping[str, Resource]) -> list[str]:
    """Dependencies before dependents; ties by URN, so the order is stable."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(urn: str, path: tuple[str, ...]) -> None:
        if urn in seen:
            return
        if urn in path:
            raise ValueError(f"dependency cycle at {urn}")
        for dep in sorted(_edges(resources, urn)):
            visit(dep, (*path, urn))
        seen.add(urn)
        done.append(urn)

    for urn in sorted(resources):
        visit(urn, ())
    return done


def _waves(resources: Mapping[str, Resource], order: list[str], steps: Mapping[str, Step]) -> dict[str, int]:
    """A changed resource's wave: one past the latest changed resource it waits for (unchanged ones pass
    their dependencies' wave through, as they finish at once)."""
    reached: dict[str, int] = {}
    for urn in order:
        before = max((reached[d] for d in _edges(resources, urn)), default=0)
        reached[urn] = before + 1 if urn in steps else before
    return {u: reached[u] for u in steps}


def _delete_waves(old: Mapping[str, Resource], deleted: list[Resource], last: int) -> dict[str, int]:
    """Dependents are deleted before what they depend on: a wave per level, after every other step."""
    gone = {r.urn for r in deleted}
    level: dict[str, int] = {}
    for resource in deleted:  # dependents first
        dependents = [u for u in gone if resource.urn in _edges(old, u)]
        level[resource.urn] = 1 + max((level.get(u, 0) for u in dependents), default=0)
    return {u: last + n for u, n in level.items()}
