"""
A real HAProxy (Debian's haproxy) in front of gateway instances: HTTP
mode, round-robin, WebSockets passed through, a dead server taken out by
its health check and a connection that finds one dead sent to another.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integration.harness import free_port, port_open, wait_for


def config(port: int, servers: list[int]) -> str:
    lines = "\n".join(
        f"    server gw{i} 127.0.0.1:{p} check inter 500ms fall 1 rise 1" for i, p in enumerate(servers)
    )
    return f"""
global
    log stderr format raw local0 info
    maxconn 4000
defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:{port}
    maxconn 4000
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /healthz
{lines}
"""


class HAProxy:
    def __init__(self, state: Path, servers: list[int]) -> None:
        if shutil.which("haproxy") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError("haproxy is not installed: run tests/peers/install.sh (make test does)")
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = state / "haproxy.cfg"
        self.config.write_text(config(self.port, servers))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        check = subprocess.run(
            ["haproxy", "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        log = open(self.state / "haproxy.log", "wb")
        self.proc = subprocess.Popen(
            ["haproxy", "-W", "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(lambda: port_open(self.port), 20, "haproxy to listen")
        return self

    def log(self) -> str:
        return (self.state / "haproxy.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
