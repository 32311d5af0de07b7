"""The schema machinery: a declaration on a spec field is what the config reader enforces."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from pgha import load_spec, spec
from pgha.schema import Reader, declared, keys, setting


@dataclass(frozen=True)
class Toy:
    """A section of its own, so these tests do not hang on any real key."""

    name: str = setting(doc="required, no default")
    derived: int = setting(doc="defaulted by the caller", min=1, max=255)
    poll_ms: int = setting(200, doc="bounded", min=50, max=2000)
    mode: Literal["fast", "slow"] = setting("fast", doc="choices")
    label: str | None = setting(None, doc="patterned", pattern=r"[a-z]+", what="a lowercase word")
    step: int = setting(10, doc="stepped", min=10, max=100, multiple_of=10, message="{value} is off the grid")


def read(raw: Any, **defaults: Any) -> tuple[dict[str, Any], list[str]]:
    reader = Reader()
    values = reader.section(raw, "toy", Toy, defaults={"derived": 7, **defaults})
    return values, reader.problems


def test_a_bound_refuses_out_of_range_naming_the_key():
    _, problems = read({"name": "a", "pollMs": 20})
    assert problems == ["pgha:toy.pollMs: 20 is outside 50-2000"]
    _, problems = read({"name": "a", "pollMs": "2001"})
    assert problems == ["pgha:toy.pollMs: 2001 is outside 50-2000"]
    values, problems = read({"name": "a", "pollMs": 50})
    assert (values["poll_ms"], problems) == (50, [])


def test_an_unknown_key_is_refused_with_the_known_ones():
    _, problems = read({"name": "a", "pollMS": 100})
    assert problems == ["pgha:toy.pollMS: unknown key (known: derived, label, mode, name, pollMs, step)"]


def test_defaults_come_from_the_declaration():
    values, problems = read({"name": "a"})
    assert problems == []
    toy = Toy(**values)
    assert (toy.poll_ms, toy.mode, toy.label, toy.step, toy.derived) == (200, "fast", None, 10, 7)
    # A value of the wrong type is reported and leaves the default, so later rules see a typed spec.
    values, problems = read({"name": "a", "pollMs": None, "mode": ["fast"]})
    assert problems == [
        "pgha:toy.pollMs: expected an integer, got None",
        "pgha:toy.mode: ['fast'] is not one of 'fast', 'slow'",
    ]
    assert "poll_ms" not in values and "mode" not in values


def test_required_choices_patterns_and_messages():
    _, problems = read({"mode": "medium", "label": "Abc", "step": 15})
    assert problems == [
        "pgha:toy.name: is required",
        "pgha:toy.mode: 'medium' is not one of 'fast', 'slow'",
        "pgha:toy.label: 'Abc' is not a lowercase word",
        "pgha:toy.step: 15 is off the grid",
    ]


def test_a_computed_default_is_held_to_the_range_too():
    _, problems = read({"name": "a"}, derived=0)
    assert problems == ["pgha:toy.derived: 0 is outside 1-255"]


def _sections(cls: type, seen: set[type]) -> None:
    """``cls`` and every dataclass its fields hold (directly, optionally or in a tuple)."""
    if cls in seen:
        return
    seen.add(cls)
    pending = list(typing.get_type_hints(cls).values())
    while pending:
        hint = pending.pop()
        pending.extend(typing.get_args(hint))
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            _sections(hint, seen)


def undeclared_fields(root: type) -> list[str]:
    """Fields of the spec reachable from ``root`` that declare no config key (and are not derived)."""
    derived = {"ClusterSpec.stack", "Node.role", "Node.stack"}
    classes: set[type] = set()
    _sections(root, classes)
    return sorted(
        f"{cls.__name__}.{field.name}"
        for cls in classes
        for field in dataclasses.fields(cls)
        if "pgha" not in field.metadata and f"{cls.__name__}.{field.name}" not in derived
    )


def test_every_spec_field_is_declared():
    classes: set[type] = set()
    _sections(spec.ClusterSpec, classes)
    assert {spec.SdnSpec, spec.JumpHost, spec.Node, spec.RoleSpec, spec.FastPathSpec} <= classes
    assert undeclared_fields(spec.ClusterSpec) == []


def test_an_undeclared_field_is_caught():
    """The negative control of the test above."""

    @dataclass(frozen=True)
    class Loose:
        known: int = setting(1, doc="declared")
        forgotten: int = 2

    assert undeclared_fields(Loose) == ["Loose.forgotten"]


def test_the_real_spec_reads_from_its_declarations(dev_config):
    assert declared(spec.PatroniSpec, "ttl").minimum == 20
    assert [k.key for k in keys(spec.PoolerSpec)][:2] == ["port", "listenPort"]
    dev_config["patroni"] = {"ttl": 19}
    with pytest.raises(Exception) as caught:
        load_spec(dev_config, "dev")
    assert "pgha:patroni.ttl: 19 s is below 20 s, the minimum Patroni's maintainers call safe" in str(
        caught.value
    )
