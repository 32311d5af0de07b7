"""docs/pictures/prometheus-*.png: the alert rules and a dashboard graph, in a real Prometheus.

The lab's Prometheus (Debian's package, :class:`lab.observation.LabPrometheus`)
scrapes a running lab with the stack output and the repository's rules.yml;
a planned switchover makes the graph show a change of roles; Debian's
headless Chromium, inside the lab's namespace, takes the screenshots. A small
manifest beside them records what they show (the alert names, the graph's
panel and query, the date), so a fast test notices when the rules or the
panel change and the screenshots are out of date; it cannot re-take them.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from pgha import monitoring

from ..cluster import Lab, switchover
from ..observation import LabPrometheus
from ..observation.prometheus import LISTEN
from ..wait import wait_until

ALERTS_PNG = "prometheus-alerts.png"
GRAPH_PNG = "prometheus-graph.png"
MANIFEST = "prometheus-pictures.json"
# The dashboard panel the graph shows: roles over time, where the switchover is seen.
GRAPH_PANEL = "Roles over time (1 = primary)"
GRAPH_RANGE = "5m"
# Debian's package ships Prometheus's classic web UI only (its React UI is not
# built): the alerts page is under /classic/, the graph page at /graph.
ALERTS_PATH = "/classic/alerts"
GRAPH_PATH = "/graph"
TARGETS_UP_TIMEOUT = 180.0
AFTER_SWITCHOVER_S = 60.0  # scrapes every 5 s: the change and a flat minute after it


def alert_names(rules_path: Path = monitoring.RULES_PATH) -> list[str]:
    """The alerts of rules.yml, in file order: what the alerts screenshot shows."""
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def graph_query(stack: str, panel: str = GRAPH_PANEL) -> str:
    """The panel's first query from dashboard.json, its ``$stack`` variable filled in."""
    dashboard = json.loads(monitoring.DASHBOARD_PATH.read_text())
    chosen = next(p for p in dashboard["panels"] if p.get("title") == panel)
    return chosen["targets"][0]["expr"].replace("$stack", stack)


def manifest(stack: str, taken: str) -> dict[str, Any]:
    return {
        "taken": taken,
        "stack": stack,
        "alerts": {"file": ALERTS_PNG, "rules": alert_names()},
        "graph": {"file": GRAPH_PNG, "panel": GRAPH_PANEL, "query": graph_query(stack), "range": GRAPH_RANGE},
    }


def _chromium() -> str:
    for name in ("chromium", "chromium-headless-shell"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium missing: apt-get install chromium (Debian's package)")


def screenshot(lab: Lab, url: str, out: Path, width: int, height: int) -> None:
    """Headless Chromium inside the lab's namespace, where Prometheus listens; root needs --no-sandbox."""
    with tempfile.TemporaryDirectory(prefix="pgha-chromium-") as profile:
        subprocess.run(
            [
                "nsenter",
                f"--net={lab.network.path}",
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--virtual-time-budget=15000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {out}")


def take(lab: Lab, out_dir: Path) -> dict[str, Any]:
    """Start Prometheus on the running lab, switch over once, take both screenshots, write the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    server = LabPrometheus(lab)
    server.start()
    try:
        expected = sum(len(entries) for entries in monitoring.targets(lab.spec).values())

        def all_up() -> bool:
            targets = server.targets()
            return len(targets) == expected and all(t["health"] == "up" for t in targets)

        wait_until(all_up, TARGETS_UP_TIMEOUT, interval=2.0, error="not every target is up")
        time.sleep(30)  # a little history before the switchover
        lab.wait_ready()
        try:
            switchover(lab)
        except RuntimeError as error:
            # Patroni may refuse one on a loaded machine; the graph then shows steady roles.
            print(f"switchover refused, the graph shows the roles as they are: {error}", file=sys.stderr)
        lab.wait_ready()
        time.sleep(AFTER_SWITCHOVER_S)
        base = f"http://{LISTEN}"
        screenshot(lab, base + ALERTS_PATH, out_dir / ALERTS_PNG, 1280, 1100)
        query = graph_query(lab.spec.stack)
        params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": GRAPH_RANGE, "g0.stacked": "0"}
        screenshot(
            lab, f"{base}{GRAPH_PATH}?{urllib.parse.urlencode(params)}", out_dir / GRAPH_PNG, 1280, 800
        )
    finally:
        server.stop()
    taken = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    written = manifest(lab.spec.stack, taken)
    (out_dir / MANIFEST).write_text(json.dumps(written, indent=1) + "\n")
    return written
