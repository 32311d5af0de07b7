"""A real Prometheus (Debian's package, the host's) scraping a lab stack from its namespace.

It consumes the stack's ``prometheus`` output exactly as an operator would:
the CA and the file_sd target files written under one directory, the scrape
configs and the repository's rules.yml in prometheus.yml. It runs inside the
lab's network namespace, where it connects from the bridge address (the
gateway, which the dev stack's ``monitoring.allowFrom`` admits), and listens
on the namespace's own loopback. Scrapes and rule evaluations run every 5 s
so that the lab test's bounds stay short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pgha import monitoring

from ..machines import LabAccess, inside
from ..wait import wait_until

LISTEN = "127.0.0.1:9090"
INTERVAL = "5s"


class LabPrometheus:
    """Start, query and stop one Prometheus for ``lab``; only the process it started is stopped."""

    def __init__(self, lab: LabAccess) -> None:
        self.lab = lab
        self.root = lab.state_dir / "prometheus"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "prometheus.yml"

    def write_config(self) -> Path:
        """The stack output laid out under ``root`` (its paths re-rooted), plus prometheus.yml."""
        spec = self.lab.spec
        output = monitoring.prometheus_output(spec, self.lab.tls().ca_certificate)
        for path, content in output["files"].items():
            target = self.root / "etc" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
        directory = str(self.root / "etc" / output["directory"].lstrip("/"))
        rules = self.root / "rules.yml"
        shutil.copy(monitoring.RULES_PATH, rules)
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL, "scrape_timeout": "4s"},
            "rule_files": [str(rules)],
            "scrape_configs": monitoring.scrape_configs(spec, directory=directory),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def start(self, timeout: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus missing: run ./setup.sh (Debian's prometheus package)")
        self.stop()
        data = self.root / "data"
        if data.exists():
            shutil.rmtree(data)
        self.write_config()
        log = (self.root / "prometheus.log").open("wb")
        argv = [
            "nsenter",
            f"--net={self.lab.network.path}",
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={LISTEN}",
            "--web.enable-lifecycle",
        ]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: see {self.root / 'prometheus.log'}")
            try:
                self._get("/-/ready")
            except OSError:
                return False
            return True

        wait_until(ready, timeout, error="prometheus not ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"http://{LISTEN}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with inside(self.lab.network.path), urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        answer = self._get("/api/v1/query", {"query": expr})
        if answer.get("status") != "success":
            raise RuntimeError(f"query {expr!r}: {answer}")
        return answer["data"]["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", {"state": "active"})["data"]["activeTargets"]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return self.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')

    def wait_for(self, expr: str, timeout: float, interval: float = 1.0) -> float | None:
        """Seconds until ``expr`` returns a non-empty vector, or None after ``timeout`` (scaled)."""
        start = time.monotonic()

        def answered() -> bool:
            try:
                return bool(self.query(expr))
            except OSError:
                return False

        return (
            round(time.monotonic() - start, 1) if wait_until(answered, timeout, interval=interval) else None
        )
