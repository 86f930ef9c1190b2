"""
A real Prometheus server (Debian's prometheus) scraping one target, and
its HTTP API's answers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.harness import free_port, port_open, wait_for


class Prometheus:
    def __init__(self, state: Path, target: str, interval: str = "1s") -> None:
        if shutil.which("prometheus") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError("prometheus is not installed: run tests/peers/install.sh (make test does)")
        self.state = state
        self.port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        self.config = state / "prometheus.yml"
        self.config.write_text(
            f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n"
            "scrape_configs:\n"
            "  - job_name: tunnelgw\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        log = open(self.state / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.state / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: port_open(self.port), 20, "prometheus to listen")
        wait_for(self.ready, 30, "prometheus to be ready")  # its API answers 503 until then
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def value(self, query: str) -> float | None:
        """The query's single value now, or C{None} if it has none."""
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def output(self) -> str:
        return (self.state / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
