"""
Two gateway processes on one reuseport: listener: the kernel hands new
connections to both, and each relays its own tunnels.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.harness import EchoServer, Gateway, free_port, raw_gateway_config, wait_for, ws_connect


def accepted(gateway: Gateway) -> int:
    return sum(1 for e in gateway.events() if e.get("event") == "admission" and e.get("status") == 101)


def test_two_processes_share_one_port(tmp_path: Path, echo_server: EchoServer) -> None:
    port = free_port()
    config = raw_gateway_config(f"reuseport:{port}:interface=127.0.0.1", echo_server.port)
    gateways: list[Gateway] = []
    try:
        for i in range(2):
            workdir = tmp_path / f"gw{i}"
            workdir.mkdir()
            gateways.append(Gateway(workdir, config, port).start())
        # the second is up once its log says its port listens; until then
        # the first takes every connection
        wait_for(lambda: "starting on" in gateways[1].output(), 20, "the second gateway to listen")
        deadline = time.monotonic() + 30
        sent = 0
        while not all(accepted(g) for g in gateways):
            assert time.monotonic() < deadline, f"after {sent} tunnels, one process had none"
            ws = ws_connect(f"ws://127.0.0.1:{port}/raw", subprotocols=["binary"])
            payload = f"tunnel {sent}".encode()
            ws.send_binary(payload)
            assert ws.recv() == payload
            ws.close()
            sent += 1
        assert sum(accepted(g) for g in gateways) == sent
    finally:
        for gateway in gateways:
            gateway.stop()
