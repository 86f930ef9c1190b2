"""
Under systemd: the unit files pass systemd-analyze; the service manager
hears READY, RELOADING and STOPPING (sd_notify, on a socket the test
binds); and socket activation (systemd-socket-activate, systemd's own
tool) hands the gateway its listening socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.integration.harness import BIN, PUBLIC_REALM, REPO, Gateway, free_port, wait_for, ws_connect

CONFIG = """
[gateway]
listen = ["{listen}"]
{realm}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
subprotocols = ["echo"]
allow_missing_origin = true
"""


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        # A missing peer fails the test run; it never skips it.
        raise RuntimeError(f"{program} is not installed: run tests/peers/install.sh (make test does)")
    return path


def test_the_unit_files_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    config = tmp_path / "tunnelgw.toml"
    config.write_text(CONFIG.format(listen="systemd:domain=INET:name=web", realm=PUBLIC_REALM))
    for name in ("tunnelgw.service", "tunnelgw.socket", "tunnelgw-workers.service"):
        text = (REPO / "etc" / "systemd" / name).read_text()
        text = text.replace("/opt/tunnelgw/bin/", f"{BIN}/").replace(
            "/etc/tunnelgw/tunnelgw.toml", str(config)
        )
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            analyze,
            "verify",
            *(str(tmp_path / n) for n in ("tunnelgw.socket", "tunnelgw.service", "tunnelgw-workers.service")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in result.stderr.splitlines() if "tunnelgw." in line]
    assert (result.returncode, ours) == (0, []), result.stderr
    # what ExecStartPre runs, where no socket is passed
    check = subprocess.run(
        [BIN / "tunnelgw", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr


def test_the_service_manager_hears_ready_reloading_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(address)
    manager.settimeout(20)
    port = free_port()
    gateway = Gateway(
        tmp_path,
        CONFIG.format(listen=f"tcp:{port}:interface=127.0.0.1", realm=PUBLIC_REALM),
        port,
        env={"NOTIFY_SOCKET": address},
    )
    try:
        gateway.start()
        heard = manager.recv(4096).decode().splitlines()
        assert heard[0] == "READY=1" and heard[1].startswith("STATUS=serving 1 services")
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGHUP)
        reloading = manager.recv(4096).decode().splitlines()
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert manager.recv(4096).decode().splitlines()[0] == "READY=1"
        gateway.proc.send_signal(signal.SIGTERM)
        assert manager.recv(4096).decode().splitlines()[0] == "STOPPING=1"
        gateway.proc.wait(10)
    finally:
        gateway.stop()
        manager.close()


def test_socket_activation(tmp_path: Path) -> None:
    activate = need("systemd-socket-activate")
    port = free_port()
    config = tmp_path / "tunnelgw.toml"
    config.write_text(CONFIG.format(listen="systemd:domain=INET:name=web", realm=PUBLIC_REALM))
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen(
        [
            activate,
            "-l",
            f"127.0.0.1:{port}",
            "--fdname=web",
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "tunnelgw",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    log.close()
    try:
        # systemd-socket-activate listens first, and starts the gateway on
        # the first connection, which waits in the backlog meanwhile
        wait_for(lambda: b"Listening on" in (tmp_path / "gateway.log").read_bytes(), 20, "the socket")
        ws = ws_connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["echo"], timeout=30)
        ws.send_binary(b"activated")
        assert ws.recv() == b"activated"
        ws.close()
    finally:
        proc.terminate()
        proc.wait(10)
