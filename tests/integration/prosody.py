"""
A real prosody (Debian's) for the XMPP integration tests, on free loopback
ports with its own state directory: plaintext c2s, or c2s that requires
STARTTLS with a certificate from the tests' CA.  Users are registered with
prosodyctl before the start.  mod_websocket runs too (the reference
endpoint at /xmpp-websocket).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.integration.harness import free_port, port_open, wait_for

USERS = {"alice": "alice-xmpp-pw", "bob": "bob-xmpp-pw", "carol": "carol-xmpp-pw"}
DOMAIN = "localhost"


class Prosody:
    def __init__(self, state: Path, tls: tuple[Path, Path] | None = None) -> None:
        if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError("prosody is not installed: run tests/peers/install.sh (make test does)")
        self.state = state
        self.tls = tls
        self.c2s_port = free_port()
        self.http_port = free_port()
        self.config_path = state / "prosody.cfg.lua"
        self.log_path = state / "prosody.out"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        s = self.state
        for sub in ("data", "certs"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        if self.tls is None:
            security = "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n"
            vhost_ssl = ""
        else:
            cert, key = self.tls
            security = "c2s_require_encryption = true\nallow_unencrypted_plain_auth = false\n"
            vhost_ssl = f'    ssl = {{ certificate = "{cert}"; key = "{key}" }}\n'
        self.config_path.write_text(
            f"""
run_as_root = true
pidfile = "{s}/prosody.pid"
data_path = "{s}/data"
certificates = "{s}/certs"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ {self.http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "websocket" }}
modules_disabled = {{ "s2s"; "offline" }}
authentication = "internal_plain"
{security}consider_websocket_secure = true
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
VirtualHost "{DOMAIN}"
{vhost_ssl}"""
        )

    def start(self) -> Prosody:
        self._write_config()
        for user, password in USERS.items():
            subprocess.run(
                ["prosodyctl", "--config", str(self.config_path), "register", user, DOMAIN, password],
                check=True,
                capture_output=True,
                timeout=30,
            )
        log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            ["prosody", "-F", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(self._ready, 30, "prosody to listen")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"prosody exited with {self._proc.returncode}:\n{self.output()}")
        if not (port_open(self.c2s_port) and port_open(self.http_port)):
            return False
        with socket.create_connection(("127.0.0.1", self.c2s_port), timeout=5) as s:
            s.sendall(
                f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' xmlns='jabber:client'"
                " xmlns:stream='http://etherx.jabber.org/streams'>".encode()
            )
            data = b""
            while b"</stream:features>" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return True

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
