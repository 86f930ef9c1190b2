"""
The CPU one gateway process spends per WebSocket handshake and per relayed
message, and the memory of an idle tunnel, measured in memory: a site on a memory reactor, clients and
backends over string transports, no sockets and no other process.  Far
steadier than a load test (a few percent between runs instead of ten), so
bench/compare.py uses it to measure what each shortcut of
tunnelgw._compat saves on the handshake and per message.  Prints one JSON
line: the best of several rounds, in microseconds of process CPU time.

    .venv/bin/python bench/lifecycle.py [--handshakes 2000] [--messages 20000] [--rounds 5]
                                        [--evict-mib 4] [--pause-us 100]

With C{--evict-mib} or C{--pause-us}, also C{cold_handshake_us}: a
handshake whose steps each find the core's caches filled by other work,
or come after the process slept, as under load.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from tunnelgw.service import build_site
from tunnelgw.testing import HalfCloseStringTransport

try:
    from tunnelgw.config.loader import loads
except ImportError:  # a tree from before config/ was a package
    from tunnelgw.config import loads  # type: ignore[attr-defined,no-redef]

CONFIG = """
[gateway]
listen = ["tcp:8080"]
handshake_rate_per_address = 1000000
handshake_burst_per_address = 1000000
max_connections_per_address = 1000000
[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"
[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:9999"
subprotocols = ["binary"]
allow_missing_origin = true
"""
HEAD = (
    b"GET /raw HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: binary\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\r\n"
)
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
BACKEND = IPv4Address("TCP", "127.0.0.1", 9999)
MASK = b"\x11\x22\x33\x44"
PAYLOAD = bytes(range(32))
CLIENT_MESSAGE = (
    bytes([0x82, 0x80 | len(PAYLOAD)]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
)


class Gateway:
    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        # autobahn's timers on the memory clock
        txaio.config.loop = self.reactor  # type: ignore[attr-defined]
        self.site = build_site(loads(CONFIG), self.reactor)

    def open(self) -> tuple[Any, HalfCloseStringTransport, Any, HalfCloseStringTransport]:
        channel = self.site.buildProtocol(PEER)
        client = HalfCloseStringTransport(peerAddress=PEER)
        client.protocol = channel
        channel.makeConnection(client)
        channel.dataReceived(HEAD)
        factory = self.reactor.tcpClients.pop()[2]
        backend_protocol = factory.buildProtocol(BACKEND)
        assert backend_protocol is not None
        backend = HalfCloseStringTransport()
        backend_protocol.makeConnection(backend)
        self.reactor.advance(0)
        if not client.value().startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"no 101: {client.value()[:200]!r}")
        return client.protocol, client, backend_protocol, backend

    def close(self, ws: Any, backend_protocol: Any) -> None:
        ws.connectionLost(Failure(ConnectionDone()))
        backend_protocol.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(5)


def handshakes(gateway: Gateway, count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        ws, _, backend_protocol, _ = gateway.open()
        gateway.close(ws, backend_protocol)
    return (time.process_time() - start) / count * 1e6


def cold_handshakes(gateway: Gateway, count: int, evict: int, pause: float) -> float:
    """
    As L{handshakes}, each step (the upgrade, the close) after writing to
    C{evict} bytes of other memory, one byte a cache line, and sleeping
    C{pause} seconds (neither timed): the core's caches as other work, or
    an idle core, leaves them.
    """
    other = bytearray(evict)
    lines = bytes(len(other[::64]))

    def away() -> None:
        other[::64] = lines
        if pause:
            time.sleep(pause)

    spent = 0.0
    for _ in range(count):
        away()
        start = time.process_time()
        ws, _, backend_protocol, _ = gateway.open()
        spent += time.process_time() - start
        away()
        start = time.process_time()
        gateway.close(ws, backend_protocol)
        spent += time.process_time() - start
    return spent / count * 1e6


def messages(gateway: Gateway, count: int) -> float:
    """A 32-byte message each way, CPU per pair."""
    ws, client, backend_protocol, backend = gateway.open()
    start = time.process_time()
    for i in range(count):
        ws.dataReceived(CLIENT_MESSAGE)
        backend_protocol.dataReceived(PAYLOAD)
        if i % 256 == 0:
            client.clear()
            backend.clear()
    elapsed = (time.process_time() - start) / count * 1e6
    gateway.close(ws, backend_protocol)
    return elapsed


def memory(gateway: Gateway, count: int) -> float:
    """Python heap bytes an open, idle tunnel holds (tracemalloc), per tunnel."""
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    opened = [gateway.open() for _ in range(count)]
    for _, client, _, backend in opened:
        client.clear()
        backend.clear()
    gc.collect()
    held = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    for ws, _, backend_protocol, _ in opened:
        gateway.close(ws, backend_protocol)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tunnels", type=int, default=500, help="held open for the memory measure")
    parser.add_argument(
        "--evict-mib",
        type=float,
        default=0,
        help="also cold_handshake_us: each step after writing to this much other memory",
    )
    parser.add_argument(
        "--pause-us", type=float, default=0, help="also cold_handshake_us: each step after this sleep"
    )
    options = parser.parse_args()
    gateway = Gateway()
    handshakes(gateway, 200)  # warm-up
    messages(gateway, 2000)
    per_handshake, per_message = [], []
    for _ in range(options.rounds):
        gc.collect()
        per_handshake.append(handshakes(gateway, options.handshakes))
        gc.collect()
        per_message.append(messages(gateway, options.messages))
    results = {
        "handshake_us": min(per_handshake),
        "message_pair_us": min(per_message),
        "idle_tunnel_bytes": memory(gateway, options.tunnels),
    }
    if options.evict_mib or options.pause_us:
        evict, pause = int(options.evict_mib * 2**20), options.pause_us / 1e6
        results["cold_handshake_us"] = min(
            cold_handshakes(gateway, options.handshakes // 4, evict, pause) for _ in range(options.rounds)
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
