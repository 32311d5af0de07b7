"""``python -m lab --help`` is a usable map: every verb says in one line what it does."""

from __future__ import annotations

import argparse
import re

import lab.__main__ as lab_main


def _verbs(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_every_verb_and_bench_has_a_one_line_help() -> None:
    parser = lab_main.build_parser()
    assert parser.description
    verbs = _verbs(parser)
    helps = {choice.dest: choice.help for choice in verbs._choices_actions}
    assert set(helps) == set(verbs.choices)
    benches = _verbs(verbs.choices["bench"])
    helps |= {f"bench {choice.dest}": choice.help for choice in benches._choices_actions}
    assert len(helps) == len(verbs.choices) + len(benches.choices)
    missing = [verb for verb, text in helps.items() if not text or "\n" in text]
    assert not missing, f"verbs without a one-line help=: {missing}"


def test_the_module_usage_text_names_every_verb() -> None:
    """The docstring at the top of lab/__main__.py is the usage summary: it must not lose a verb."""
    documented = set(
        re.findall(r"[a-z][a-z-]+", " ".join(line.split("  ")[0] for line in lab_main.__doc__.splitlines()))
    )
    verbs = _verbs(lab_main.build_parser())
    assert set(verbs.choices) <= documented, set(verbs.choices) - documented
    assert set(_verbs(verbs.choices["bench"]).choices) <= documented
