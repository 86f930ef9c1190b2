"""
C{tunnelgw workers}: N gateway processes sharing a reuseport: listener,
supervised: ready once all are, a killed worker started again, SIGHUP and
SIGUSR1 sent to every worker, SIGTERM stops them all and then itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.harness import BIN, PUBLIC_REALM, free_port, json_lines, wait_for, ws_connect


def two_free_ports() -> int:
    """A port free on 127.0.0.1 whose next one is free too (worker 1's metrics)."""
    for _ in range(100):
        first = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise RuntimeError("no two consecutive free ports")


def children(pid: int) -> list[int]:
    """The processes C{pid} started (Linux: /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    """Running, not a zombie (Linux: /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_workers(tmp_path: Path) -> None:
    port, metrics = free_port(), two_free_ports()
    config = tmp_path / "tunnelgw.toml"
    config.write_text(
        f"""
[gateway]
listen = ["reuseport:{port}:interface=127.0.0.1"]
drain_timeout = 2
{PUBLIC_REALM}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
subprotocols = ["echo"]
allow_missing_origin = true
[metrics]
listen = "tcp:{metrics}:interface=127.0.0.1"
"""
    )
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(30)
    log_path = tmp_path / "workers.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            str(BIN / "tunnelgw"),
            "workers",
            "--count",
            "2",
            "--config",
            str(config),
            "--logger",
            "tunnelgw.logs.json_observer",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    log.close()

    def events(**fields: Any) -> list[dict[str, Any]]:
        return [e for e in json_lines(log_path) if all(e.get(k) == v for k, v in fields.items())]

    try:
        # ready once both workers are
        try:
            ready = manager.recv(4096).decode().splitlines()[0]
        except TimeoutError:
            raise AssertionError(f"not ready in 30 s:\n{log_path.read_text()[-4000:]}") from None
        assert ready == "READY=1"
        workers = children(proc.pid)
        assert len(workers) == 2
        for _ in range(10):
            ws = ws_connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["echo"])
            ws.send_binary(b"x")
            assert ws.recv() == b"x"
            ws.close()
        # worker i's metrics on the metrics port plus i
        assert http_status(f"http://127.0.0.1:{metrics}/metrics") == 200
        assert http_status(f"http://127.0.0.1:{metrics + 1}/metrics") == 200

        # a worker killed: started again, and the port still served
        killed = workers[1]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: len(events(event="worker", state="ready")) == 3, 20, "the killed worker ready again")
        assert len(events(event="worker", state="exited")) == 1
        wait_for(lambda: killed not in children(proc.pid), 10, "the old pid gone")

        # SIGHUP reloads every worker
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(events(event="reload", outcome="applied")) == 2, 20, "both workers reloaded")
        # SIGUSR1 drains every worker: the health endpoint says so on both
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(events(event="drain")) >= 2, 20, "both workers draining")
        statuses = {http_status(f"http://127.0.0.1:{port}/healthz") for _ in range(10)}
        assert statuses == {503}, statuses
        # SIGTERM: every worker stops, then the supervisor
        started = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not [pid for pid in started if alive(pid)]
        lines = []
        while True:
            try:
                lines.append(manager.recv(4096).decode().splitlines()[0])
            except TimeoutError:
                break
            if lines[-1] == "STOPPING=1":
                break
        assert "STOPPING=1" in lines
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()
