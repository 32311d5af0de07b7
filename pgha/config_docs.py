"""docs/configuration.md, written from the declarations of :mod:`pgha.spec`.

    venv/bin/python -m pgha.config_docs            # print the page
    venv/bin/python -m pgha.config_docs --write    # rewrite docs/configuration.md

Every key a stack may set comes from the same declaration the validation runs
from (:func:`pgha.schema.setting`), so the page cannot miss a key or drift
from a default. The prose around the tables lives here, in the template.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .config import top_level_keys
from .files import REPO_DIR
from .schema import Key, Setting, keys
from .spec import SECTION_ONLY_KEYS, STACK_ONLY_KEYS, ClusterSpec, Node

PAGE = REPO_DIR / "docs" / "configuration.md"
COMMAND = "venv/bin/python -m pgha.config_docs --write"
# Where a machine goes in a stack: the machine table's keys apply under each.
MACHINES = ("vms[]", "witness", "backup.repositoryVm")
MACHINE_PREFIXES = ", ".join(f"`{machine}`" for machine in MACHINES)

INTRO = f"""# Configuration reference (`pgha:` namespace)

<!-- Generated from the declarations in pgha/spec.py by `{COMMAND}`:
     edit those (or the template in pgha/config_docs.py), not this page. -->

The stack config of `Pulumi.<stack>.yaml`; a complete example is `Pulumi.dev.yaml`. How a change reaches a
running cluster: [Changing configuration](operations.md#changing-configuration).

Required: `vip`, `network` (`cidr` and `bridge` or `sdn`), `vms`, `ssh.authorizedKeys`. Everything else has a
default. Rules that relate keys to each other are in the meaning column.
"""

OUTRO = """## How problems are reported

Every rule is checked before anything is created: a bad stack fails `pulumi preview` (and
`venv/bin/python -m pgha.render --stack S --out DIR`, exit code 2) with one line per problem,
naming the key and the value, e.g. `pgha:vms[1].ip: 10.0.1.3 is outside pgha:network.cidr 10.0.0.0/24`.
"""

HEADER = "| key | type | default | values | meaning |\n|---|---|---|---|---|\n"
_TYPE_NAMES: dict[Any, str] = {
    int: "integer",
    bool: "boolean",
    str: "string",
    IPv4Address: "IPv4 address",
    IPv4Network: "IPv4 network",
}


def _inner(hint: Any) -> Any:
    """The type under ``X | None``."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in get_args(hint) if a is not type(None))
    return hint


def _element(hint: Any) -> Any | None:
    """X for ``tuple[X, ...]``, else None."""
    hint = _inner(hint)
    if get_origin(hint) is tuple:
        return get_args(hint)[0]
    return None


def _section_class(hint: Any) -> type | None:
    """The dataclass a key holds (an object, or a list of objects), if any."""
    for candidate in (_inner(hint), _element(hint)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None


def type_text(declared: Setting, hint: Any) -> str:
    if declared.type_doc:
        return declared.type_doc
    hint = _inner(hint)
    if get_origin(hint) is Literal:
        return "string"
    if get_origin(hint) is dict or (_section_class(hint) is not None and _element(hint) is None):
        return "object"
    element = _element(hint)
    if element is not None:
        if _section_class(hint) is not None:
            return "list of objects"
        return f"list of {_TYPE_NAMES.get(element, 'string')}s"
    return _TYPE_NAMES.get(hint, "string")


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == ():
        return "`[]`"
    if value == {}:
        return "`{}`"
    return f"`{value}`"


def default_text(entry: Key) -> str:
    if entry.setting.default_doc:
        return entry.setting.default_doc
    if not entry.has_default:
        return "required"
    value = entry.default
    if value is None:
        return "none"
    if dataclasses.is_dataclass(value):
        return "the defaults below"
    return _literal(value)


def values_text(declared: Setting, hint: Any) -> str:
    if declared.range_doc:
        return declared.range_doc
    inner = _inner(hint)
    if get_origin(inner) is Literal:
        return " | ".join(f"`{choice}`" for choice in get_args(inner))
    if declared.what:
        return declared.what
    if declared.minimum is not None and declared.maximum is not None:
        return f"{declared.minimum}-{declared.maximum}"
    if declared.minimum is not None:
        return f"at least {declared.minimum}"
    if declared.pattern is not None:
        return f"`{declared.pattern.pattern}`"
    return ""


def _cell(text: str) -> str:
    """A table cell: a ``|`` of the text would end it."""
    return text.replace("|", "\\|").replace("\n", " ")


def _row(key: str, type_: str, default: str, values: str, meaning: str) -> str:
    return f"| `{key}` | {_cell(type_)} | {_cell(default)} | {_cell(values)} | {_cell(meaning)} |\n"


def _entry_row(prefix: str, entry: Key) -> str:
    values = values_text(entry.setting, entry.hint)
    cls = _section_class(entry.hint)
    if entry.setting.inline and cls is not None:
        # An object of like keys, documented in this row: its keys, then what the declaration adds.
        values = "; ".join(v for v in (", ".join(f"`{k.key}`" for k in keys(cls)), values) if v)
    return _row(
        f"{prefix}{entry.key}",
        type_text(entry.setting, entry.hint),
        default_text(entry),
        values,
        entry.setting.doc,
    )


def _extra_row(key: str, declared: Setting) -> str:
    return _row(
        key,
        declared.type_doc or "string",
        declared.default_doc or "none",
        declared.range_doc or "",
        declared.doc,
    )


def _sections(prefix: str, cls: type) -> Iterator[tuple[str, str, type]]:
    """(title, key prefix, class) of ``cls`` and of the objects nested in it, depth first."""
    yield f"`{prefix}`", f"{prefix}.", cls
    for entry in keys(cls):
        nested = _section_class(entry.hint)
        if nested is not None and nested is not Node:
            suffix = "[]" if _element(entry.hint) is not None else ""
            yield from _sections(f"{prefix}.{entry.key}{suffix}", nested)


def _table(key_prefix: str, cls: type) -> str:
    rows = [_entry_row(key_prefix, entry) for entry in keys(cls)]
    rows += [_extra_row(f"{key_prefix}{key}", declared) for key, declared in SECTION_ONLY_KEYS.get(cls, ())]
    return HEADER + "".join(rows)


def documented_keys() -> dict[str, str]:
    """Every key a stack may set, as ``config set --path`` spells it (``[]``: a list index), and its type.

    The same walk as :func:`generate`: the docs' commands are checked against it. A
    machine's keys appear under each place a machine goes (``vms[]``, ``witness``,
    ``backup.repositoryVm``).
    """
    top = {entry.key: entry for entry in keys(ClusterSpec)}
    stack_only = {key: declared for _, key, declared in STACK_ONLY_KEYS}
    found: dict[str, str] = {}
    for key in top_level_keys():
        if key in stack_only:
            found[key] = stack_only[key].type_doc or "string"
            continue
        entry = top[key]
        found[key] = type_text(entry.setting, entry.hint)
        cls = _section_class(entry.hint)
        if cls is None or cls is Node:
            continue
        suffix = "[]" if _element(entry.hint) is not None else ""
        for _, key_prefix, section in _sections(f"{key}{suffix}", cls):
            for nested in keys(section):
                found[f"{key_prefix}{nested.key}"] = type_text(nested.setting, nested.hint)
            for extra, declared in SECTION_ONLY_KEYS.get(section, ()):
                found[f"{key_prefix}{extra}"] = declared.type_doc or "string"
    for machine in MACHINES:
        for entry in keys(Node):
            found[f"{machine}.{entry.key}"] = type_text(entry.setting, entry.hint)
    return found


def generate() -> str:
    """The whole page, from the declarations."""
    top = {entry.key: entry for entry in keys(ClusterSpec)}
    stack_only = {key: declared for _, key, declared in STACK_ONLY_KEYS}
    parts = [INTRO, "\n## Top level\n\n", HEADER]
    for key in top_level_keys():
        if key in stack_only:
            parts.append(_extra_row(key, stack_only[key]))
        else:
            parts.append(_entry_row("", top[key]))
    for key in top_level_keys():
        entry = top.get(key)
        cls = _section_class(entry.hint) if entry is not None else None
        if entry is None or cls is None or entry.setting.inline:
            continue
        if cls is Node:
            parts.append(f"\n## Machines: {MACHINE_PREFIXES}\n\n")
            parts.append("Each entry of `vms`, the `witness` and `backup.repositoryVm` is a machine:\n\n")
            parts.append(_table("", Node))
            continue
        suffix = "[]" if _element(entry.hint) is not None else ""
        for title, key_prefix, section in _sections(f"{key}{suffix}", cls):
            parts.append(f"\n## {title}\n\n{_table(key_prefix, section)}")
    parts.append("\n" + OUTRO)
    return "".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pgha.config_docs", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {PAGE.relative_to(REPO_DIR)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    page = generate()
    if args.write:
        Path(PAGE).write_text(page)
        print(f"wrote {PAGE.relative_to(REPO_DIR)}")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
