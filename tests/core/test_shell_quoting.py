"""Every value that reaches bash goes through the one quoting filter, ``shquote``.

Three detectors, each able to go red on its own:
- the templates: every ``{{ … }}`` in a ``.sh.j2`` ends in ``| shquote`` (or,
  for a list, ``| map("shquote") | join(" ")``); no exemptions;
- every step (and leave step) of every stack file, and every bash program the
  steps install, parses with ``bash -n``;
- hostile values: with a cluster scope made of quotes, ``;``, ``$(…)`` and
  spaces, every step still parses and the dangerous parts of the value sit
  inside single quotes only.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import nodes

from pgha import ClusterSecrets, ClusterSpec, ClusterTls, leave_step, node_files, node_steps
from pgha.files import CORE_DIR, REPO_DIR, shquote, template_env
from pgha.stackfile import load_stack

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in REPO_DIR.glob("Pulumi.*.yaml"))
BASH_TEMPLATES = sorted(CORE_DIR.rglob("*.sh.j2"))
# What a hostile value may carry into a step; the markers must stay inside single quotes.
SENTINEL = "x; touch /tmp/pwned; $(id) `id` 'y \"z"
MARKERS = ("; touch /tmp/pwned;", "$(id)", "`id`")


def _quoted(expression: nodes.Expr) -> bool:
    if isinstance(expression, nodes.Filter) and expression.name == "shquote":
        return True
    # A list, one word per item: map("shquote") | join(" ").
    return (
        isinstance(expression, nodes.Filter)
        and expression.name == "join"
        and isinstance(expression.node, nodes.Filter)
        and expression.node.name == "map"
        and [a.value for a in expression.node.args if isinstance(a, nodes.Const)] == ["shquote"]
    )


def unquoted_outputs(source: str, directory: Path) -> list[str]:
    """Each ``{{ … }}`` of a bash template that skips the quoting filter, as 'line N: expr'."""
    tree = template_env(directory).parse(source)
    return [
        f"line {expression.lineno}: {{{{ {_describe(expression)} }}}}"
        for output in tree.find_all(nodes.Output)
        for expression in output.nodes
        if not isinstance(expression, nodes.TemplateData) and not _quoted(expression)
    ]


def _describe(expression: nodes.Expr) -> str:
    if isinstance(expression, nodes.Name):
        return expression.name
    if isinstance(expression, nodes.Getattr):
        return f"{_describe(expression.node)}.{expression.attr}"
    if isinstance(expression, nodes.Filter):
        return f"{_describe(expression.node) if expression.node else ''} | {expression.name}"
    return type(expression).__name__


def test_there_are_bash_templates_to_check():
    assert len(BASH_TEMPLATES) >= 15, BASH_TEMPLATES


@pytest.mark.parametrize("path", BASH_TEMPLATES, ids=lambda p: str(p.relative_to(CORE_DIR)))
def test_every_value_in_a_bash_template_is_quoted(path):
    assert unquoted_outputs(path.read_text(), path.parent) == []


def test_the_template_check_sees_an_unquoted_value():
    """The negative control: one ``| shquote`` removed is one finding."""
    path = CORE_DIR / "backup" / "stanza.sh.j2"
    source = path.read_text()
    assert "{{ stanza | shquote }}" in source
    broken = source.replace("{{ stanza | shquote }}", "{{ stanza }}", 1)
    assert unquoted_outputs(broken, path.parent) == ["line 12: {{ stanza }}"]
    assert unquoted_outputs('x {{ items | join(" ") }}', path.parent) == ["line 1: {{ items | join }}"]
    assert unquoted_outputs("# {{ node.name }}", path.parent) == ["line 1: {{ node.name }}"]


def test_shquote_takes_strings_and_integers_only():
    assert shquote("a b") == "'a b'" and shquote(8432) == "8432" and shquote("/etc/x") == "/etc/x"
    for wrong in (None, True, ["a"], 1.5):
        with pytest.raises(TypeError):
            shquote(wrong)


def bash_texts(spec: ClusterSpec) -> Iterator[tuple[str, str]]:
    """(name, text) of every step, leave step and bash program the steps install."""
    secrets, tls = ClusterSecrets.placeholders(), ClusterTls.placeholders(spec)
    for node in spec.nodes:
        for step in node_steps(spec, node, secrets, tls):
            yield f"{node.name}/{step.name}", step.script
        yield f"{node.name}/leave", leave_step(spec, node).script
        for rendered in node_files(spec, node, secrets, tls):
            if rendered.content.startswith(("#!/bin/bash", "#!/bin/sh")):
                yield f"{node.name}:{rendered.path}", rendered.content


def bash_syntax_errors(texts: Iterator[tuple[str, str]]) -> list[str]:
    errors = []
    for name, text in texts:
        result = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        if result.returncode != 0:
            errors.append(f"{name}: {result.stderr.strip()}")
    return errors


@pytest.mark.parametrize("stack", STACKS)
def test_every_step_of_every_stack_parses(stack):
    assert bash_syntax_errors(bash_texts(load_stack(stack))) == []


def test_the_syntax_check_sees_a_broken_script():
    assert bash_syntax_errors(iter([("broken", "if true; then\n")])) != []
    assert bash_syntax_errors(iter([("fine", "if true; then :; fi\n")])) == []


def outside_single_quotes(text: str) -> str:
    """The text bash would interpret: single-quoted spans and comments removed."""
    kept: list[str] = []
    single = double = escaped = comment = False
    previous = "\n"
    for char in text:
        if comment:
            if char == "\n":
                comment = False
                kept.append(char)
        elif single:
            if char == "'":
                single = False
        elif escaped:
            escaped = False
            kept.append(char)
        elif char == "\\":
            escaped = True
            kept.append(char)
        elif char == "'" and not double:
            single = True
            kept.append(" ")
        elif char == '"':
            double = not double
            kept.append(char)
        elif char == "#" and not double and previous in " \t\n;(":
            comment = True
        else:
            kept.append(char)
        previous = char
    return "".join(kept)


def hostile(spec: ClusterSpec) -> ClusterSpec:
    """The spec with a cluster scope no config would accept: it names the stanza, the data
    directory, the etcd keys of the rolling update, and reaches many steps."""
    return dataclasses.replace(spec, postgres=dataclasses.replace(spec.postgres, scope=SENTINEL))


def leaks(texts: Iterator[tuple[str, str]]) -> list[str]:
    """Steps where a part of the hostile value reaches bash outside single quotes."""
    return [
        f"{name}: {marker!r}"
        for name, text in texts
        for marker in MARKERS
        if marker in outside_single_quotes(text)
    ]


def test_hostile_values_stay_inside_single_quotes():
    spec = hostile(load_stack("dev"))
    texts = list(bash_texts(spec))
    assert not any(SENTINEL in text for _, text in texts)  # quoted, never verbatim
    assert any(shquote(SENTINEL) in text for _, text in texts)  # and it does reach the steps
    assert bash_syntax_errors(iter(texts)) == []
    assert leaks(iter(texts)) == []


def test_the_leak_check_sees_an_unquoted_value():
    """The negative control: the same value pasted raw, or inside double quotes, is found."""
    assert leaks(iter([("raw", f"pgbackrest --stanza={SENTINEL} check\n")])) != []
    assert leaks(iter([("double", f'echo "{SENTINEL}"\n')])) != []
    assert leaks(iter([("quoted", f"pgbackrest --stanza={shquote(SENTINEL)} check\n")])) == []
    assert leaks(iter([("comment", f"# it's {shquote(SENTINEL)}\necho ok\n")])) == []
