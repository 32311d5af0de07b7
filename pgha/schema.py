"""The config schema's machinery: each spec field declares its key, default, range and meaning once.

A field of :mod:`pgha.spec` is declared with :func:`setting`, which stores a
:class:`Setting` in the dataclass field's metadata. From that declaration

- :class:`Reader` reads a config section generically (camelCase keys, types,
  required and unknown keys, bounds, choices, patterns, defaults), recording
  one problem per bad key instead of raising, and
- :mod:`pgha.config_docs` writes the reference table of docs/configuration.md.

``dataclasses.field(metadata=...)`` rather than ``typing.Annotated``: the
default must live in the field anyway, and one call keeps default, range and
meaning on the field's own line, while the annotation stays the plain type
every renderer reads. Rules that relate fields to each other (ttl against
loopWait, the VIP inside the CIDR) are not declarations: they stay explicit
functions in :mod:`pgha.config`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import MISSING, dataclass
from ipaddress import IPv4Address, ip_address
from typing import Any, Literal, get_args, get_origin

NAMESPACE = "pgha"
# Control characters (C0, DEL, C1) and the Unicode line separators: a newline
# in a value splits the config line, YAML document or shell word it lands in.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
METADATA_KEY = "pgha"


@dataclass(frozen=True)
class Setting:
    """What one config key is: the declaration behind a spec field (see :func:`setting`)."""

    doc: str
    key: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    multiple_of: int | None = None
    pattern: re.Pattern[str] | None = None
    # The pattern's meaning, for "'x' is not <what>" and for the docs' range column.
    what: str | None = None
    # The problem for a value out of range or not matching: a str.format template
    # of ``value``, ``minimum`` and ``maximum``; None: the generic wording.
    message: str | None = None
    # The problem for a missing key without a default (None: "is required").
    required: str | None = None
    # Read by an explicit function of pgha.config (a list, a nested object, an
    # address): the generic reader only knows the key exists.
    custom: bool = False
    # For the docs, where the declaration alone does not say it.
    type_doc: str | None = None
    default_doc: str | None = None
    range_doc: str | None = None
    # An object of like keys (generations): one row in the docs, its keys listed in the
    # values column, instead of a table of its own.
    inline: bool = False

    def out_of_range(self, value: Any) -> str | None:
        """The problem with a (well-typed) value, or None when the declaration admits it."""
        if self.pattern is not None:
            if isinstance(value, str) and self.pattern.fullmatch(value):
                return None
            return (self.message or "{value!r} is not {what}").format(value=value, what=self.what)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        low = self.minimum is not None and value < self.minimum
        high = self.maximum is not None and value > self.maximum
        off_step = self.multiple_of is not None and value % self.multiple_of != 0
        if not (low or high or off_step):
            return None
        if self.message:
            return self.message.format(value=value, minimum=self.minimum, maximum=self.maximum)
        if self.maximum is None:
            return f"{value} must be at least {self.minimum}"
        return f"{value} is outside {self.minimum}-{self.maximum}"


def setting(
    default: Any = MISSING,
    *,
    doc: str,
    factory: Any = MISSING,
    key: str | None = None,
    min: int | None = None,
    max: int | None = None,
    multiple_of: int | None = None,
    pattern: str | re.Pattern[str] | None = None,
    what: str | None = None,
    message: str | None = None,
    required: str | None = None,
    custom: bool = False,
    type_doc: str | None = None,
    default_doc: str | None = None,
    range_doc: str | None = None,
    inline: bool = False,
    repr: bool = True,
) -> Any:
    """A dataclass field that is also a config key: its default, range and one-line meaning."""
    declared = Setting(
        doc=doc,
        key=key,
        minimum=min,
        maximum=max,
        multiple_of=multiple_of,
        pattern=re.compile(pattern) if isinstance(pattern, str) else pattern,
        what=what,
        message=message,
        required=required,
        custom=custom,
        type_doc=type_doc,
        default_doc=default_doc,
        range_doc=range_doc,
        inline=inline,
    )
    metadata = {METADATA_KEY: declared}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata, repr=repr)
    return dataclasses.field(default=default, metadata=metadata, repr=repr)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Key:
    """One declared key of a section: the field it fills and its declaration."""

    name: str
    key: str
    setting: Setting
    hint: Any
    field: dataclasses.Field[Any]

    @property
    def has_default(self) -> bool:
        return self.field.default is not MISSING or self.field.default_factory is not MISSING

    @property
    def default(self) -> Any:
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return MISSING


@functools.cache
def keys(cls: type) -> tuple[Key, ...]:
    """The config keys ``cls`` declares, in field order (fields without a setting are not keys)."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        declared = field.metadata.get(METADATA_KEY)
        if declared is not None:
            found.append(
                Key(field.name, declared.key or camel(field.name), declared, hints[field.name], field)
            )
    return tuple(found)


def declared(cls: type, name: str) -> Setting:
    """The declaration of field ``name`` of ``cls``."""
    return next(k.setting for k in keys(cls) if k.name == name)


def optional(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint)


class Reader:
    """Reads typed values and records a problem instead of raising: every problem at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        # A key may come from the config too: its control characters are shown escaped.
        key = CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", str(key))
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def failed(self, prefix: str, since: int = 0) -> bool:
        """Whether a problem about ``prefix`` (a key and what is under it) was recorded since ``since``."""
        head = f"{NAMESPACE}:{prefix}"
        return any(p.startswith(head) for p in self.problems[since:])

    def matches(self, raw: Any, key: str, pattern: re.Pattern[str], what: str) -> bool:
        """Whether ``raw`` is a string that matches ``pattern`` as a whole; a problem otherwise."""
        if not isinstance(raw, str) or not pattern.fullmatch(raw):
            self.problem(key, f"{raw!r} is not {what}")
            return False
        return True

    def check(self, declared: Setting, value: Any, key: str) -> bool:
        """Hold ``value`` to its declared range or pattern; a problem (and False) otherwise."""
        message = declared.out_of_range(value)
        if message is not None:
            self.problem(key, message)
            return False
        return True

    def control_characters(self, raw: Any, key: str, secret: bool = False) -> None:
        """Flag control characters in every string of ``raw`` (keys and values, nested)."""
        if isinstance(raw, dict):
            for name, value in raw.items():
                self.control_characters(name, f"{key}.{name}" if isinstance(name, str) else key, secret)
                self.control_characters(value, f"{key}.{name}", secret)
        elif isinstance(raw, list):
            for index, value in enumerate(raw):
                self.control_characters(value, f"{key}[{index}]", secret)
        elif isinstance(raw, str) and (found := CONTROL.search(raw)):
            shown = "(secret, not shown)" if secret else repr(raw)
            self.problem(key, f"{shown} contains the control character U+{ord(found.group()):04X}")

    def mapping(self, raw: Any, key: str) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(key, f"expected an object, got {raw!r}")
            return {}
        return raw

    def unknown_keys(self, data: dict[str, Any], key: str, known: typing.Iterable[str]) -> None:
        allowed = sorted(known)
        for unknown in sorted(set(data) - set(allowed), key=str):
            self.problem(f"{key}.{unknown}", f"unknown key (known: {', '.join(allowed)})")

    def ipv4(self, raw: Any, key: str) -> IPv4Address | None:
        if raw is None or raw == "":
            self.problem(key, "is required (an IPv4 address)")
            return None
        try:
            address = ip_address(str(raw))
        except ValueError:
            self.problem(key, f"{raw!r} is not an IPv4 address")
            return None
        if not isinstance(address, IPv4Address):
            self.problem(key, f"{raw!r} is not an IPv4 address")
            return None
        return address

    def value(self, raw: Any, key: str, hint: Any) -> Any:
        """Coerce one scalar to the field's annotated type; None (and a problem) if it is not one."""
        if get_origin(hint) in (typing.Union, types.UnionType):
            options = [a for a in get_args(hint) if a is not type(None)]
            if raw is None:
                return None
            hint = options[0]
        if get_origin(hint) is Literal:
            if isinstance(raw, (dict, list)) or raw not in get_args(hint):
                allowed = ", ".join(repr(a) for a in get_args(hint))
                self.problem(key, f"{raw!r} is not one of {allowed}")
                return None
            return raw
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("true", "false"):
                return str(raw).lower() == "true"
            self.problem(key, f"expected true or false, got {raw!r}")
            return None
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, (int, str, float)):
                self.problem(key, f"expected an integer, got {raw!r}")
                return None
            try:
                number = int(str(raw))
            except ValueError:
                self.problem(key, f"expected an integer, got {raw!r}")
                return None
            if number < 0:
                self.problem(key, f"must not be negative, got {number}")
            return number
        if hint is str:
            if not isinstance(raw, (str, int)) or str(raw) == "":
                self.problem(key, f"expected a non-empty string, got {raw!r}")
                return None
            return str(raw)
        if get_origin(hint) is dict:
            if not isinstance(raw, dict):
                self.problem(key, f"expected an object, got {raw!r}")
                return {}
            return dict(raw)
        return raw

    def section(
        self,
        raw: Any,
        key: str,
        cls: type,
        extra: typing.Iterable[str] = (),
        defaults: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The declared, non-custom fields of ``cls`` read from ``raw``'s camelCase keys.

        Unknown keys, missing required keys, bad types and values outside their
        declared range are problems. A value of the wrong type is left out, so
        the field keeps its default and later checks see a well-typed spec; a
        required key's bad value stays in, so it is not also reported missing.
        ``extra`` are further keys the caller reads itself; ``defaults`` are
        defaults computed from other keys (held to the declared range as well).
        """
        defaults = defaults or {}
        data = self.mapping(raw, key)
        declared = keys(cls)
        self.unknown_keys(data, key, [k.key for k in declared] + list(extra))
        values: dict[str, Any] = {}
        for entry in declared:
            if entry.setting.custom:
                continue
            name = f"{key}.{entry.key}"
            if entry.key not in data:
                if entry.name in defaults:
                    values[entry.name] = defaults[entry.name]
                    self.check(entry.setting, values[entry.name], name)
                elif not entry.has_default:
                    self.problem(name, entry.setting.required or "is required")
                continue
            given = data[entry.key]
            coerced = self.value(given, name, entry.hint)
            if coerced is None and not (optional(entry.hint) and given is None):
                if entry.name in defaults:
                    values[entry.name] = defaults[entry.name]
                elif not entry.has_default:
                    values[entry.name] = given  # reported; not "missing" as well
                continue
            values[entry.name] = coerced
            if coerced is not None:
                self.check(entry.setting, coerced, name)
        return values
