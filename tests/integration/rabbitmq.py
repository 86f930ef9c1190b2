"""
A real RabbitMQ broker (Debian's rabbitmq-server with rabbitmq_stomp) for
the STOMP integration tests: started once per test session on free
loopback ports, with its own epmd, state directory and users, and stopped
by the PIDs it printed.

Users (from a definitions file loaded at boot):
  - C{guest}/C{guest}: RabbitMQ's loopback-only default;
  - C{injected}/C{injected-secret}: the account the gateway injects, which
    no client is told.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.harness import free_port, port_open, wait_for

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
READY_TIMEOUT = 90.0

INJECTED_LOGIN = "injected"
INJECTED_PASSCODE = "injected-secret"


class RabbitMQ:
    def __init__(self, state: Path) -> None:
        missing = [p for p in (RABBITMQ_SERVER, RABBITMQCTL) if not os.path.exists(p)]
        if missing or shutil.which("epmd") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError(
                f"RabbitMQ is not installed ({', '.join(missing) or 'epmd'} missing):"
                " run tests/peers/install.sh (make test does)"
            )
        self.state = state
        self.amqp_port = free_port()
        self.stomp_port = free_port()
        self.web_stomp_port = free_port()
        """RabbitMQ's own STOMP over WebSocket (rabbitmq_web_stomp, at C{/ws}): what bench/adapters.py compares with."""
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"rabbit-tgw{self.stomp_port}@localhost"
        self.log_path = state / "rabbitmq.out"
        self._epmd: subprocess.Popen[bytes] | None = None
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        s = self.state
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(s / "home"),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONFIG_FILE": str(s / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(s / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(s / "mnesia"),
            "RABBITMQ_LOG_BASE": str(s / "log"),
            "RABBITMQ_CONF_ENV_FILE": str(s / "rabbitmq-env.conf"),  # absent on purpose
        }

    def _write_config(self) -> None:
        s = self.state
        (s / "home").mkdir(parents=True, exist_ok=True)
        definitions = {
            "users": [
                {"name": "guest", "password": "guest", "tags": "administrator"},
                {"name": INJECTED_LOGIN, "password": INJECTED_PASSCODE, "tags": ""},
            ],
            "vhosts": [{"name": "/"}],
            "permissions": [
                {"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                for user in ("guest", INJECTED_LOGIN)
            ],
        }
        (s / "definitions.json").write_text(json.dumps(definitions))
        (s / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"stomp.listeners.tcp.1 = 127.0.0.1:{self.stomp_port}\n"
            f"web_stomp.tcp.ip = 127.0.0.1\nweb_stomp.tcp.port = {self.web_stomp_port}\n"
            f"load_definitions = {s / 'definitions.json'}\n"
            "log.console = true\nlog.console.level = info\nlog.file = false\n"
        )
        (s / "enabled_plugins").write_text("[rabbitmq_stomp,rabbitmq_web_stomp].\n")

    def start(self) -> RabbitMQ:
        self._write_config()
        log = open(self.log_path, "wb")
        self._epmd = subprocess.Popen(
            ["epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        wait_for(lambda: port_open(self.epmd_port), 10, "epmd to listen")
        self._server = subprocess.Popen(
            [RABBITMQ_SERVER],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(self._ready, READY_TIMEOUT, "RabbitMQ to answer a STOMP CONNECT")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._server is not None
        if self._server.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited with {self._server.returncode}:\n{self.output()}")
        if not port_open(self.stomp_port):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.stomp_port), timeout=5) as s:
                s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
                return s.recv(9) == b"CONNECTED"
        except OSError:
            return False

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """
        C{rabbitmqctl} against this broker; its standard output.
        """
        result = subprocess.run(
            [RABBITMQCTL, "-n", self.nodename, "-q", *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return result.stdout.decode("utf-8", "replace")

    def stomp_logins(self) -> set[str]:
        """
        The users the broker's open STOMP sessions logged in as (a STOMP
        session is a direct connection, listed by its channel, not by
        C{list_connections}).
        """
        out = self.ctl("list_channels", "user", "--no-table-headers")
        return {line.strip() for line in out.splitlines() if line.strip()}

    def queues(self) -> set[str]:
        out = self.ctl("list_queues", "name", "--no-table-headers")
        return {line.strip() for line in out.splitlines() if line.strip()}

    def stop(self) -> None:
        for proc, timeout in ((self._server, 30.0), (self._epmd, 5.0)):
            if proc is None or proc.poll() is not None:
                continue
            # the server script traps SIGTERM and stops the VM cleanly
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def main() -> None:
    """
    Start a broker by hand (C{python -m tests.integration.rabbitmq DIR}).
    """
    import sys
    import tempfile

    state = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    t0 = time.monotonic()
    broker = RabbitMQ(state).start()
    print(f"ready in {time.monotonic() - t0:.1f}s: stomp {broker.stomp_port} state {state}", flush=True)
    try:
        signal.pause()
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
