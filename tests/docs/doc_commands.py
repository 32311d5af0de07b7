"""The commands the docs show, checked against the programs they name.

An operator copies a fenced command from README.md, docs/ or dev/; a flag, verb or
config key renamed in the code but not in the page fails only then, on a
production cluster. So every fenced line is read here and each command it
holds is checked against the program's own grammar:

- ``python -m lab ...`` and ``python -m pgha.<module> ...``: the module's
  ``build_parser()`` (verbs, sub-verbs, flags, and the choices of a flag or
  positional);
- ``pulumi config set|get|rm [--path] ... pgha:KEY``: KEY against
  :func:`pgha.config_docs.documented_keys`, the same declarations the
  validation runs from (a dotted key without ``--path`` is a literal key
  pulumi would store, so that is stale too);
- the programs installed on the VMs: the Python ones by their own argument
  check (``pgha-host-maintenance``, ``pgha-rolling``) or as programs that take
  at most a settings path; the shell ones by the ``case`` arms of their
  template.

The docs write usage notation too (``[--type full|diff|incr]``, ``kill|start
NODE``): brackets are dropped, every ``|`` alternative is checked, and
upper-case or ``<...>`` words are placeholders.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgha.config_docs import documented_keys
from pgha.files import INSTALLER_PATH, INSTALLER_SOURCE, REPO_DIR

# Dated measurement logs quote commands as they were run then.
SKIPPED_DIRS = ("docs/measurements",)
# A fenced block's lines; ``~~~`` fences as well as backticks.
FENCE = re.compile(r"^\s*(```|~~~)")
PYTHON = re.compile(r"^(.*/)?python3?$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"^([A-Z][A-Z0-9_]*|<.*>|…|\.\.\.)$")
SEGMENT_SEPARATORS = re.compile(r"\s(?:&&|\|\||;|\|)\s")


@dataclass(frozen=True)
class DocLine:
    path: Path
    number: int
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(REPO_DIR)}:{self.number}"


def doc_pages(root: Path = REPO_DIR) -> list[Path]:
    """The operator's manual (README.md, docs/) and the developer pages (dev/): all show commands."""
    pages = [
        root / "README.md",
        *sorted((root / "docs").rglob("*.md")),
        *sorted((root / "dev").rglob("*.md")),
    ]
    return [
        p for p in pages if not any(p.relative_to(root).as_posix().startswith(d + "/") for d in SKIPPED_DIRS)
    ]


def fenced_lines(path: Path) -> Iterator[DocLine]:
    """The lines inside fenced blocks, a backslash continuation joined to its first line."""
    inside = False
    pending: DocLine | None = None
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(text):
            inside = not inside
            continue
        if not inside:
            continue
        if pending is not None:
            pending = DocLine(path, pending.number, pending.text[:-1] + " " + text.strip())
        else:
            pending = DocLine(path, number, text)
        if not pending.text.endswith("\\"):
            yield pending
            pending = None


def words(text: str) -> list[str]:
    """Shell words, comments dropped; an unbalanced quote (prose in a block) falls back to spaces."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split("#", 1)[0].split()


def unbracket(word: str) -> str:
    """``[--type`` -> ``--type``, ``incr]`` -> ``incr``: usage notation around a real word."""
    return word.lstrip("[").rstrip("]")


def is_placeholder(word: str) -> bool:
    return bool(PLACEHOLDER.match(word))


def alternatives(word: str) -> list[str]:
    return [w for w in word.split("|") if w]


# ---- argparse programs -------------------------------------------------------------------


def check_argparse(parser: argparse.ArgumentParser, tokens: list[str]) -> list[str]:
    """The tokens the parser does not know: flags, verbs, sub-verbs, choices, extra positionals."""
    bad: list[str] = []
    options = {s: a for a in parser._actions for s in a.option_strings}
    positionals = [a for a in parser._actions if not a.option_strings]
    position = 0
    index = 0
    while index < len(tokens):
        token = unbracket(tokens[index])
        index += 1
        if token == "--":
            break
        if token.startswith("-") and len(token) > 1:
            name, _, inline = token.partition("=")
            action = options.get(name)
            if action is None:
                bad.append(token)
                if index < len(tokens) and not _is_verb_or_flag(tokens[index], positionals[position:]):
                    index += 1  # its value, most likely
                continue
            if action.nargs == 0:
                continue
            if not inline:
                if index >= len(tokens):
                    continue
                inline = unbracket(tokens[index])
                index += 1
            if action.choices and not is_placeholder(inline):
                bad += [v for v in alternatives(inline) if v not in action.choices]
            continue
        if position >= len(positionals):
            if not is_placeholder(token):
                bad.append(token)
            continue
        action = positionals[position]
        if isinstance(action, argparse._SubParsersAction):
            names = alternatives(token)
            unknown = [n for n in names if n not in action.choices]
            if unknown:
                return [*bad, *unknown]
            rest = tokens[index:]
            for name in names:
                bad += [t for t in check_argparse(action.choices[name], rest) if t not in bad]
            return bad
        if action.nargs == argparse.REMAINDER:
            break
        if action.choices and not is_placeholder(token):
            bad += [v for v in alternatives(token) if v not in action.choices]
        if action.nargs not in ("*", "+"):
            position += 1
    return bad


def _is_verb_or_flag(token: str, positionals: list[argparse.Action]) -> bool:
    if token.startswith("-"):
        return True
    return (
        bool(positionals)
        and isinstance(positionals[0], argparse._SubParsersAction)
        and (unbracket(token) in positionals[0].choices)
    )


def module_parser(module: str) -> argparse.ArgumentParser | None:
    """``build_parser()`` of ``python -m MODULE``; None when the module has none (nothing to check)."""
    name = "lab.__main__" if module == "lab" else module
    try:
        loaded = importlib.import_module(name)
    except ImportError:
        raise LookupError(module) from None
    build = getattr(loaded, "build_parser", None)
    return build() if build is not None else None


# ---- pulumi config -----------------------------------------------------------------------

PULUMI_VERBS = ("set", "get", "rm")
PULUMI_VALUE_FLAGS = ("--stack", "-s", "--config-file", "--type")
MAP_TYPES = ("object",)


def check_config_key(key: str, path: bool, known: dict[str, str]) -> bool:
    """Whether ``pgha:KEY`` names a declared key (``[N]`` is a list index)."""
    if not path:
        # Without --path pulumi stores the dotted text as one literal key.
        return key in known and not re.search(r"[.\[]", key)
    normal = re.sub(r"\[\d+\]", "[]", key)
    if normal in known:
        return True
    if normal.endswith("[]") and known.get(normal[:-2], "").startswith("list"):
        return True
    # A free map (postgres.parameters, rolePasswords): any key below it.
    parts = normal.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in known:
            free = known[prefix] in MAP_TYPES and not any(k.startswith(prefix + ".") for k in known)
            return free
    return False


def check_pulumi_config(tokens: list[str]) -> list[str]:
    """What is stale in ``pulumi config set|get|rm ... pgha:KEY`` (other namespaces are Pulumi's own)."""
    if not tokens or tokens[0] not in PULUMI_VERBS:
        return []
    path = "--path" in tokens
    index = 1
    while index < len(tokens):
        token = tokens[index]
        if token in PULUMI_VALUE_FLAGS:
            index += 2
            continue
        if token.startswith("-"):
            index += 1
            continue
        if not token.startswith("pgha:"):
            return []
        key = token.removeprefix("pgha:")
        known = documented_keys()
        if check_config_key(key, path, known):
            return []
        if not path and check_config_key(key, True, known):
            return [f"{token!r} needs --path (without it pulumi stores one literal key)"]
        return [f"{token!r} is not a pgha config key (pgha/spec.py, docs/configuration.md)"]
    return []


# ---- programs on the VMs -----------------------------------------------------------------

MISSING_SETTINGS = "/nonexistent/pgha-docs-check.json"


def _accepted_by_host_maintenance(args: list[str]) -> bool:
    from pgha.host_maintenance import pgha_host_maintenance as tool

    return _accepted(lambda: tool.main([tool.INSTALL_PATH, *args]), "PGHA_HOST_MAINTENANCE_SETTINGS")


def _accepted_by_rolling(args: list[str]) -> bool:
    from pgha.rolling import pgha_rolling as tool

    return _accepted(lambda: tool.main(args, settings_path=MISSING_SETTINGS))


def _accepted_by_import(args: list[str]) -> bool:
    from pgha.importing import pgha_import as tool

    return _accepted(lambda: tool.main([*args, "--settings", MISSING_SETTINGS]))


def _accepted(run: Callable[[], int], settings_env: str | None = None) -> bool:
    """The program's own argument check: usage and exit 2 when refused; past it, it opens its settings."""
    saved = os.environ.get(settings_env) if settings_env else None
    if settings_env:
        os.environ[settings_env] = MISSING_SETTINGS
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return run() != 2
    except FileNotFoundError:
        return True
    finally:
        if settings_env:
            if saved is None:
                os.environ.pop(settings_env, None)
            else:
                os.environ[settings_env] = saved


def _no_arguments(args: list[str]) -> bool:
    """The step installer reads its bundle from standard input."""
    return not args


def _settings_path_only(args: list[str]) -> bool:
    """The programs whose one optional argument is their settings file."""
    return len(args) <= 1 and not any(a.startswith("-") for a in args)


@dataclass(frozen=True)
class ShellProgram:
    """A rendered shell program: the words its template's ``case`` arms accept."""

    template: Path

    def arms(self) -> dict[str, bool]:
        """Each accepted word, and whether it takes a value (``shift 2``)."""
        found: dict[str, bool] = {}
        for line in self.template.read_text().splitlines():
            match = re.match(r"^\s*([-\w|]+)\)(.*)$", line)
            if match:
                for word in match.group(1).split("|"):
                    found[word] = "shift 2" in match.group(2)
        return found

    def accepts(self, args: list[str]) -> list[str]:
        arms = self.arms()
        bad: list[str] = []
        index = 0
        while index < len(args):
            word = unbracket(args[index])
            index += 1
            if is_placeholder(word):
                continue
            for alternative in alternatives(word):
                if alternative not in arms:
                    bad.append(alternative)
                elif arms[alternative]:
                    index += 1
        return bad


VM_PYTHON_CHECKS: dict[str, Callable[[list[str]], bool]] = {
    "pgha-host-maintenance": _accepted_by_host_maintenance,
    "pgha-rolling": _accepted_by_rolling,
    "pgha-import": _accepted_by_import,
    INSTALLER_PATH.rsplit("/", 1)[1]: _no_arguments,
}
BACKUP_TEMPLATES = REPO_DIR / "pgha" / "backup"
SHELL_PROGRAMS = {
    "pgha-backup": ShellProgram(BACKUP_TEMPLATES / "pgha-backup.sh.j2"),
    "pgha-restore": ShellProgram(BACKUP_TEMPLATES / "pgha-restore.sh.j2"),
}
INSTALL_PATH_LINE = re.compile(r'^INSTALL_PATH = "(?P<path>[^"]+)"', re.M)


def vm_python_programs() -> dict[str, Path]:
    """Every Python program installed on the VMs (pgha/vmprograms.py): its name there, and its module."""
    found = {INSTALLER_PATH.rsplit("/", 1)[1]: INSTALLER_SOURCE}
    for module in sorted((REPO_DIR / "pgha").rglob("*.py")):
        match = INSTALL_PATH_LINE.search(module.read_text())
        if match:
            found[match.group("path").rsplit("/", 1)[1]] = module
    return found


def check_vm_program(name: str, args: list[str]) -> list[str]:
    if name in SHELL_PROGRAMS:
        return SHELL_PROGRAMS[name].accepts(args)
    args = [unbracket(a) for a in args]
    # Each `a|b` alternative is one command of its own.
    commands: list[list[str]] = [[]]
    for arg in args:
        commands = [[*c, alt] for c in commands for alt in (alternatives(arg) or [arg])]
    check = VM_PYTHON_CHECKS.get(name, _settings_path_only)
    refused = [c for c in commands if not check(c)]
    return [" ".join(refused[0]) or "(no arguments)"] if refused else []


# ---- one line ----------------------------------------------------------------------------


def command_position(tokens: list[str]) -> int:
    """Where the program word is: past ``sudo``, ``env`` and ``NAME=value`` prefixes."""
    index = 0
    while index < len(tokens) and (tokens[index] in ("sudo", "env", "-E") or ASSIGNMENT.match(tokens[index])):
        # sudo -u USER: the program runs as another user, e.g. pgha-import as postgres.
        index += 3 if tokens[index] == "sudo" and tokens[index + 1 : index + 2] == ["-u"] else 1
    return index


def problems(line: DocLine) -> list[str]:
    """One message per stale token of the line, naming the file, the line and the token."""
    found = []
    for segment in SEGMENT_SEPARATORS.split(line.text):
        tokens = words(segment)
        for bad in segment_problems(tokens):
            found.append(f"{line.where()}: {bad}   in: {line.text.strip()}")
    return found


def segment_problems(tokens: list[str]) -> list[str]:
    for index, token in enumerate(tokens):
        if PYTHON.match(token) and tokens[index + 1 : index + 2] == ["-m"] and len(tokens) > index + 2:
            module = tokens[index + 2]
            if module != "lab" and not module.startswith("pgha"):
                return []
            try:
                parser = module_parser(module)
            except LookupError:
                return [f"no module {module!r}"]
            if parser is None:
                return []
            return [
                f"{token!r} unknown to python -m {module}"
                for token in check_argparse(parser, tokens[index + 3 :])
            ]
        if token == "pulumi" and tokens[index + 1 : index + 2] == ["config"]:
            return check_pulumi_config(tokens[index + 2 :])
    start = command_position(tokens)
    if start < len(tokens):
        program = tokens[start].rsplit("/", 1)[-1]
        if program.startswith("pgha-"):
            if program not in SHELL_PROGRAMS and program not in vm_python_programs():
                return [f"{program!r}: no such program on the VMs (pgha/vmprograms.py)"]
            return [f"{bad!r} refused by {program}" for bad in check_vm_program(program, tokens[start + 1 :])]
    return []


def all_problems(root: Path = REPO_DIR) -> list[str]:
    return [problem for page in doc_pages(root) for line in fenced_lines(page) for problem in problems(line)]
