"""The operator's manual stays readable in an evening: at most 25,000 words.

The manual is README.md and every page under docs/, except the dated lab runs
in docs/measurements/ (kept for the record, not for reading). Words are counted
as a whitespace split, the way ``wc -w`` counts them.
"""

from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
BUDGET = 25_000
MEASUREMENTS = "measurements"


def manual_pages(root: Path) -> list[Path]:
    """README.md and docs/**/*.md, without docs/measurements/."""
    docs = root / "docs"
    pages = [p for p in sorted(docs.rglob("*.md")) if MEASUREMENTS not in p.relative_to(docs).parts[:-1]]
    return [root / "README.md", *pages]


def word_counts(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): len(p.read_text().split()) for p in manual_pages(root)}


def over_budget(counts: dict[str, int]) -> str | None:
    """None within the budget, else the total and the pages, largest first."""
    total = sum(counts.values())
    if total <= BUDGET:
        return None
    pages = ", ".join(f"{page} {words}" for page, words in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"the manual has {total} words, over {BUDGET}: {pages}"


def test_the_manual_fits_the_budget():
    problem = over_budget(word_counts(REPO_DIR))
    assert problem is None, problem


def test_measurements_are_left_out_and_every_other_page_counts(tmp_path):
    """The negative control: a page over the budget is caught, a measurement log is not counted."""
    (tmp_path / "docs" / "measurements").mkdir(parents=True)
    (tmp_path / "README.md").write_text("word " * 10)
    (tmp_path / "docs" / "measurements" / "runs.md").write_text("word " * (BUDGET + 1))
    assert over_budget(word_counts(tmp_path)) is None
    (tmp_path / "docs" / "deep").mkdir()
    (tmp_path / "docs" / "deep" / "page.md").write_text("word " * (BUDGET - 9))
    assert "25001 words" in (over_budget(word_counts(tmp_path)) or "")
