"""The docs' SVG pictures stay current: each is re-drawn from its committed data and compared.

They are re-drawn here exactly as ``python -m lab pictures architecture`` and
``... timeline`` write them (the screenshots: test_prometheus_pictures.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lab import pictures
from lab.pictures import architecture, timeline
from pgha.stackfile import load_stack

REDRAW = "re-draw it: venv/bin/python -m lab pictures {} (and commit the picture)"


def test_the_architecture_picture_is_drawn_from_the_dev_stack() -> None:
    assert pictures.draw_architecture("dev") == pictures.ARCHITECTURE_SVG.read_text(), REDRAW.format(
        "architecture"
    )


def test_the_architecture_picture_follows_the_spec() -> None:
    """A moved port or VM changes the drawing (so the comparison above can fail)."""
    spec = load_stack("dev")
    drawn = architecture.draw(spec, "Pulumi.dev.yaml")
    for node in spec.nodes:
        assert f"{node.name} {node.ip}" in drawn
    assert f"VIP {spec.vip}" in drawn
    moved = dataclasses.replace(spec, haproxy=dataclasses.replace(spec.haproxy, stats_port=7001))
    changed = architecture.draw(moved, "Pulumi.dev.yaml")
    assert changed != drawn and ":7001 stats" in changed


def test_the_failover_timeline_is_drawn_from_the_committed_data() -> None:
    assert pictures.draw_timeline() == pictures.TIMELINE_SVG.read_text(), REDRAW.format("timeline")


def test_the_timeline_says_when_it_shows_sample_data() -> None:
    drawn = pictures.draw_timeline(timeline.SAMPLE)
    assert "SAMPLE DATA, NOT A MEASUREMENT" in drawn
    assert all(run.get("sample") for run in timeline.load(timeline.SAMPLE))


def test_the_timeline_shows_each_phase_median_and_what_did_not_happen(tmp_path: Path) -> None:
    runs = [
        {"fault": "1", "timeline": {"fault": 0.0, "key_expired": e, "vip_switch": None, "first_write": w}}
        for e, w in ((19.0, 22.0), (20.0, 23.5), (25.0, 21.0))
    ]
    assert timeline.medians(runs)["key_expired"] == (20.0, 3)
    assert timeline.medians(runs)["vip_switch"] == (None, 0)
    data = tmp_path / "failover-timeline.json"
    data.write_text(json.dumps(runs))
    drawn = pictures.draw_timeline(data)
    assert "+20.00 s" in drawn and "+22.00 s" in drawn and "did not happen" in drawn
    assert "SAMPLE" not in drawn
    assert "Pull the primary" in drawn  # the lab scenario's own description of fault 1
