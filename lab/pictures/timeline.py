"""docs/pictures/failover-timeline.svg: where a failover's seconds go, phase by phase.

Drawn from the failover bench's per-run timelines (``python -m lab bench
failover``), a JSON list of runs, each ``{"fault": KEY, "timeline": {PHASE:
seconds since the fault, or null when the phase did not happen}}``. Each
fault gets one bar per phase, from the fault to the phase's median over that
fault's runs, so the gaps between bar ends are what each phase costs.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from .svg import Svg, text_width

DATA_DIR = Path(__file__).resolve().parents[2] / "docs" / "measurements" / "data"
DATA = DATA_DIR / "failover-timeline.json"
SAMPLE = DATA_DIR / "failover-timeline.sample.json"

# (key in the bench's timeline, what the row says), in the order a failover goes.
PHASES = (
    ("fault", "fault"),
    ("last_renewal", "last leader-key renewal"),
    ("key_expired", "leader key expires"),
    ("new_leader_lock", "new leader takes the lock"),
    ("promote_begin", "promote begins"),
    ("promote_end", "promote ends"),
    ("vip_switch", "VIP / fast path switches"),
    ("haproxy_up", "HAProxy marks new primary up"),
    ("first_write", "first acknowledged write"),
)
SIZE = 12
ROW = 20
BAR = 12
LABEL_WIDTH = text_width("HAProxy marks new primary up", SIZE) + 20
PLOT_WIDTH = 520.0
MARGIN = 20
NICE_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60)
BAR_COLOURS = {"fault": "#c04040", "last_renewal": "#999999", "first_write": "#2a8a2a"}
BAR_COLOUR = "#4a7bd0"


def default_data() -> Path:
    """The bench's committed timelines; the labelled sample until they exist."""
    return DATA if DATA.exists() else SAMPLE


def load(path: Path) -> list[dict[str, Any]]:
    runs = json.loads(path.read_text())
    if not isinstance(runs, list) or not all("fault" in r and "timeline" in r for r in runs):
        raise ValueError(f"{path}: not a list of {{'fault': ..., 'timeline': {{...}}}} runs")
    return runs


def fault_title(key: str) -> str:
    """The lab scenario's own one-line description, without its number."""
    from lab.scenarios.bench import SCENARIOS

    scenario = SCENARIOS.get(key)
    doc = (
        (scenario.__doc__ or "").strip().splitlines()[0] if scenario is not None and scenario.__doc__ else ""
    )
    doc = re.sub(r"^\([^)]*\)\s*", "", doc)
    return re.split(r"[:;(]", doc)[0].strip().rstrip(".") or "no description"


def medians(runs: list[dict[str, Any]]) -> dict[str, tuple[float | None, int]]:
    """Each phase's median over the runs where it happened, and in how many runs it did."""
    found = {}
    for key, _ in PHASES:
        values = [r["timeline"].get(key) for r in runs]
        present = [float(v) for v in values if v is not None]
        found[key] = (round(statistics.median(present), 2) if present else None, len(present))
    return found


def _step(span: float) -> float:
    return next((s for s in NICE_STEPS if span / s <= 8), NICE_STEPS[-1])


def draw(runs: list[dict[str, Any]], source: str, sample: bool) -> str:
    svg = Svg("failover timeline: median seconds from the fault to each phase")
    svg.text(
        MARGIN, MARGIN + 14, "Failover timeline: seconds from the fault to each phase (median)", 15, bold=True
    )
    caption = f"drawn from {source} by `python -m lab pictures timeline`"
    svg.text(MARGIN, MARGIN + 32, caption, 11)
    if sample:
        svg.text(
            MARGIN,
            MARGIN + 48,
            "SAMPLE DATA, NOT A MEASUREMENT: re-draw from the failover bench's file once it is committed",
            11,
            bold=True,
            fill="#c04040",
        )
    y = MARGIN + 70
    faults = list(dict.fromkeys(r["fault"] for r in runs))
    for fault in faults:
        of_fault = [r for r in runs if r["fault"] == fault]
        phases = medians(of_fault)
        times = [t for t, _ in phases.values() if t is not None]
        low, high = min(0.0, *times), max(0.0, *times)
        step = _step(high - low or 1.0)
        low = step * (low // step)
        high = step * -(-high // step)
        scale = PLOT_WIDTH / ((high - low) or 1.0)
        left = MARGIN + LABEL_WIDTH

        def x_of(seconds: float, left: float = left, low: float = low, scale: float = scale) -> float:
            return left + (seconds - low) * scale

        runs_text = f"{len(of_fault)} run{'s' if len(of_fault) != 1 else ''}"
        svg.text(MARGIN, y + 14, f"fault {fault}: {fault_title(fault)} ({runs_text})", 13, bold=True)
        y += 26
        top = y
        for key, label in PHASES:
            seconds, count = phases[key]
            svg.text(left - 10, y + BAR, label, SIZE, anchor="end")
            if seconds is None:
                svg.text(x_of(0) + 6, y + BAR, "did not happen", 11, fill="#888")
            else:
                start, end = sorted((x_of(0), x_of(seconds)))
                colour = BAR_COLOURS.get(key, BAR_COLOUR)
                svg.rect(start, y + 2, max(end - start, 2), BAR, colour)
                partial = f" ({count} of {len(of_fault)} runs)" if count != len(of_fault) else ""
                svg.text(max(end, x_of(0)) + 6, y + BAR, f"{seconds:+.2f} s{partial}", 11)
            y += ROW
        # The axis: seconds since the fault.
        svg.line(x_of(0), top - 4, x_of(0), y, "#c04040")
        svg.line(x_of(low), y + 2, x_of(high), y + 2, "#666")
        tick = low
        while tick <= high + step / 2:
            svg.line(x_of(tick), y + 2, x_of(tick), y + 6, "#666")
            svg.text(x_of(tick), y + 18, f"{tick:g} s", 10, anchor="middle", fill="#555")
            tick = round(tick + step, 6)
        y += 40
    return svg.render(MARGIN)
