"""
A real Redis (Debian's redis-server) for the cluster tests: a password,
optionally TLS, on a free loopback port; stopped and started again at
will (the tests of the failure policy).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integration.harness import free_port, port_open, wait_for

PASSWORD = "redis-Secret-pw-1"


class Redis:
    def __init__(self, state: Path, tls: tuple[Path, Path, Path] | None = None) -> None:
        if shutil.which("redis-server") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError("redis-server is not installed: run tests/peers/install.sh (make test does)")
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.password_file = state / "password"
        self.password_file.write_text(PASSWORD + "\n")
        lines = [
            "bind 127.0.0.1",
            f"dir {state}",
            "daemonize no",
            'save ""',
            "appendonly no",
            'logfile ""',
            f"requirepass {PASSWORD}",
        ]
        if tls is None:
            lines.append(f"port {self.port}")
        else:
            cert, key, ca = tls
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {cert}",
                f"tls-key-file {key}",
                f"tls-ca-cert-file {ca}",
                "tls-auth-clients no",
            ]
        self.config = state / "redis.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        log = open(self.state / "redis.log", "ab")
        self.proc = subprocess.Popen(["redis-server", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: port_open(self.port), 20, "redis-server to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def cluster_table(self, **extra: str) -> str:
        """The C{[cluster]} table of a gateway using this Redis."""
        lines = [f'redis = "{self.url}"', f'password_file = "{self.password_file}"']
        if self.tls is not None:
            lines.append(f'ca = "{self.tls[2]}"')
        lines += [f"{k} = {v}" for k, v in extra.items()]
        return "[cluster]\n" + "\n".join(lines) + "\n"
