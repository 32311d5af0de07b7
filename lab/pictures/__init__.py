"""The docs' pictures, each drawn by ``python -m lab pictures WHAT`` from real data.

- ``architecture``: docs/pictures/architecture.svg, from a stack's spec
  (Pulumi.<stack>.yaml through the project's own loader);
- ``timeline``: docs/pictures/failover-timeline.svg, from the failover bench's
  per-run timelines (docs/measurements/data/);
- ``prometheus``: docs/pictures/prometheus-*.png, screenshots of a real
  Prometheus scraping a running lab (root, the lab up).

The SVGs are text written here (:mod:`lab.pictures.svg`), so the fast tests
re-draw them from the committed data and compare; the screenshots need the
lab, so their test compares only the manifest with the current rules.
"""

from __future__ import annotations

from pathlib import Path

from pgha.files import REPO_DIR
from pgha.stackfile import load_stack, stack_file

from . import architecture, timeline

PICTURES_DIR = REPO_DIR / "docs" / "pictures"
ARCHITECTURE_SVG = PICTURES_DIR / "architecture.svg"
TIMELINE_SVG = PICTURES_DIR / "failover-timeline.svg"


def _shown(path: Path) -> str:
    """A path as the caption names it: relative to the repository when inside it."""
    return (
        path.resolve().relative_to(REPO_DIR).as_posix()
        if path.resolve().is_relative_to(REPO_DIR)
        else str(path)
    )


def draw_architecture(stack: str = "dev") -> str:
    return architecture.draw(load_stack(stack), _shown(stack_file(stack)))


def draw_timeline(data: Path | None = None) -> str:
    path = data or timeline.default_data()
    return timeline.draw(timeline.load(path), _shown(path), sample=path.name.endswith(".sample.json"))


__all__ = [
    "ARCHITECTURE_SVG",
    "PICTURES_DIR",
    "TIMELINE_SVG",
    "draw_architecture",
    "draw_timeline",
]
