"""
The CPU one gateway process spends on a reload with many tunnels open, in
memory (as bench/lifecycle.py: a memory reactor, string transports, the
real site, handshakes, tunnels and adapters).

The reload is the costly kind: the realm of every tunnel changes (each is
judged again by the realm's new modules), the policy changes (each gets
the new one), one service in ten is removed (its tunnels are closed) and a
service is added.  Afterwards every tunnel that stays relays a message
each way, byte for byte, and every closed one got its 1001.  Prints one
JSON line.

    .venv/bin/python bench/reload.py [--tunnels 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from tunnelgw.config.loader import loads
from tunnelgw.service import GatewayService
from tunnelgw.testing import HalfCloseStringTransport, client_frame, server_frames

HEAD = (
    "GET /{path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: binary\r\n\r\n"
)
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
BACKEND = IPv4Address("TCP", "127.0.0.1", 9999)
PAYLOAD = bytes(range(32))


def config(new: bool) -> str:
    roles = '["staff", "ops"]' if new else '["staff"]'
    resources = '["/a", "/b"]' if new else '["/a"]'

    def raw(name: str) -> str:
        return f"""
[services.{name}]
path = "/{name}"
adapter = "raw"
realm = "staff"
policy = "p"
upstream = "tcp:127.0.0.1:9999"
subprotocols = ["binary"]
allow_missing_origin = true
require_roles = ["staff"]
"""

    return f"""
[gateway]
listen = ["tcp:8080"]
handshake_rate_per_address = 1000000
handshake_burst_per_address = 1000000
max_connections_per_address = 1000000
max_connections = 1000000
[realms.staff]
[[realms.staff.modules]]
module = "anonymous"
flag = "required"
options = {{ roles = {roles} }}
[policies.p]
[[policies.p.rules]]
roles = ["staff"]
actions = ["send"]
resources = {resources}
{"".join(raw(f"s{i}") for i in range(9))}
{raw("added") if new else raw("gone")}
"""


class Gateway:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        txaio.config.loop = self.reactor  # type: ignore[attr-defined]
        self.service = GatewayService(loads(config(False)), self.reactor)
        self.site = self.service.site

    def open(self, path: str) -> tuple[Any, HalfCloseStringTransport, Any, HalfCloseStringTransport]:
        channel = self.site.buildProtocol(PEER)
        client = HalfCloseStringTransport(peerAddress=PEER)
        client.protocol = channel
        channel.makeConnection(client)
        channel.dataReceived(HEAD.format(path=path).encode())
        factory = self.reactor.tcpClients.pop()[2]
        backend_protocol = factory.buildProtocol(BACKEND)
        assert backend_protocol is not None
        backend = HalfCloseStringTransport()
        backend_protocol.makeConnection(backend)
        self.reactor.advance(0)
        if not client.value().startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"no 101: {client.value()[:200]!r}")
        client.clear()
        return client.protocol, client, backend_protocol, backend


def round_(count: int) -> dict[str, float]:
    gateway = Gateway()
    tunnels = [(i % 10, *gateway.open("gone" if i % 10 == 9 else f"s{i % 9}")) for i in range(count)]
    gc.collect()
    new = loads(config(True))
    start = time.process_time()
    gateway.service.reload(new)
    cpu = time.process_time() - start
    gateway.reactor.advance(0)
    closed = lost = 0
    for kind, ws, client, backend_protocol, backend in tunnels:
        if kind == 9:
            [(opcode, data)] = server_frames(client.value())
            closed += opcode == 8 and data[:2] == b"\x03\xe9"
            continue
        ws.dataReceived(client_frame(2, PAYLOAD))
        backend_protocol.dataReceived(PAYLOAD)
        up = backend.value() == PAYLOAD
        down = server_frames(client.value()) == [(2, PAYLOAD)]
        lost += not (up and down)
    return {"cpu_s": cpu, "closed": closed, "stayed_with_a_lost_byte": lost}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tunnels", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    results = [round_(options.tunnels) for _ in range(options.rounds)]
    best = min(results, key=lambda r: r["cpu_s"])
    print(
        json.dumps(
            {
                "tunnels": options.tunnels,
                "reload_cpu_s": round(best["cpu_s"], 3),
                "reload_cpu_s_worst": round(max(r["cpu_s"] for r in results), 3),
                "closed_1001": best["closed"],
                "stayed_with_a_lost_byte": max(r["stayed_with_a_lost_byte"] for r in results),
            }
        )
    )


if __name__ == "__main__":
    main()
