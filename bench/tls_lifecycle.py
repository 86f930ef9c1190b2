"""
The CPU one gateway process spends on a WebSocket over TLS, in memory: the
site of bench/lifecycle.py behind the TLS layer a C{[[gateway.tls_listeners]]}
entry puts in front of it (Twisted's, with the gateway's own context, a
P-256 certificate), clients on memory BIOs (the standard library's TLS,
which offers X25519 first, as the bench's Node load client does), the
backend a string transport.  Only the gateway's calls are timed: a full
TLS 1.3 handshake, the upgrade (its backend connected), the client's
close frame and the end of both connections; the same without TLS for
comparison.  The shortcuts that act on Twisted's TCP connections only
(C{write_now}, C{tls_writes}) do not act on string transports: here the
101 and the close frame wait for the TLS layer's flush on the next turn.

    .venv/bin/python bench/tls_lifecycle.py [--handshakes 1000] [--rounds 5]

Prints one JSON line: the best of the rounds, in microseconds of process
CPU time per connection.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from tunnelgw.config.model import TLSListener
from tunnelgw.testing import HalfCloseStringTransport
from tunnelgw.tls import ReloadableServerTLS, context_factory

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lifecycle import BACKEND, HEAD, PEER, Gateway, handshakes  # noqa: E402
from tls_memory import StdlibClient  # noqa: E402
from users import certificate  # noqa: E402

CLOSE = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])  # 1000, masked with zeros


def _read(client: StdlibClient) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(client.receive())
        except OSError:  # ssl.SSLWantReadError: nothing more decrypted
            return b"".join(chunks)


def one(gateway: Gateway, factory: TLSMemoryBIOFactory) -> float:
    """One connection's life; the gateway's CPU seconds in it."""
    client = StdlibClient()
    client.step()
    hello = client.take()
    spent = 0.0

    start = time.process_time()
    protocol = factory.buildProtocol(PEER)
    transport = HalfCloseStringTransport(peerAddress=PEER, hostAddress=PEER)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    transport.protocol.dataReceived(hello)
    gateway.reactor.advance(0)
    spent += time.process_time() - start

    client.give(transport.value())
    transport.clear()
    client.step()
    client.send(HEAD)
    finished = client.take()

    start = time.process_time()
    transport.protocol.dataReceived(finished)
    backend_factory = gateway.reactor.tcpClients.pop()[2]
    backend: Any = backend_factory.buildProtocol(BACKEND)
    backend.makeConnection(HalfCloseStringTransport())
    gateway.reactor.advance(0)
    spent += time.process_time() - start

    client.give(transport.value())
    transport.clear()
    if not _read(client).startswith(b"HTTP/1.1 101 "):
        raise RuntimeError("no 101 over TLS")
    client.send(CLOSE)
    close = client.take()

    start = time.process_time()
    transport.protocol.dataReceived(close)
    transport.protocol.connectionLost(Failure(ConnectionDone()))
    backend.connectionLost(Failure(ConnectionDone()))
    gateway.reactor.advance(5)
    spent += time.process_time() - start
    return spent


def tls_handshakes(gateway: Gateway, factory: TLSMemoryBIOFactory, count: int) -> float:
    return sum(one(gateway, factory) for _ in range(count)) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cert, key = certificate(Path(work))
        listener = TLSListener(endpoint="tcp:0", certificate=str(cert), private_key=str(key))
        gateway = Gateway()
        factory: Any = TLSMemoryBIOFactory(
            ReloadableServerTLS(context_factory(listener, "tls")),
            False,
            gateway.site,
            clock=gateway.reactor,  # its writes' flush on the memory clock
        )
        tls_handshakes(gateway, factory, 100)  # warm-up
        handshakes(gateway, 100)
        tls, plain = [], []
        for _ in range(options.rounds):
            gc.collect()
            tls.append(tls_handshakes(gateway, factory, options.handshakes))
            gc.collect()
            plain.append(handshakes(gateway, options.handshakes))
    print(json.dumps({"tls_handshake_us": round(min(tls), 1), "plain_handshake_us": round(min(plain), 1)}))


if __name__ == "__main__":
    main()
