"""
What OpenSSL holds for one server connection of a TLS listener, in
process: the gateway's own TLS context (C{tunnelgw.tls.context_factory},
a P-256 certificate), server connections on memory BIOs as Twisted's TLS
layer makes them, and a client for each key-exchange group users meet:

  - C{x25519}: the standard library's C{ssl} on the system's OpenSSL,
    which offers X25519 first, as Node's does (the bench's load client);
  - C{x25519mlkem768}: pyOpenSSL on the OpenSSL that cryptography
    bundles, which offers the post-quantum hybrid X25519MLKEM768 first,
    as current browsers do.

For each: the heap a server connection holds before its first byte, and
once its handshake (TLS 1.3) and one message each way are done, with the
clients freed (glibc's C{mallinfo2}, so OpenSSL's allocations count).
Also C{ssl_new}: what a connection allocates before its first byte on a
context with no settings at all (no certificate, none of Twisted's
options or the gateway's): OpenSSL's C{SSL_new} and the two memory BIOs
that Twisted's TLS layer writes and reads, the floor under any TLS
connection on this OpenSSL.

    .venv/bin/python bench/tls_memory.py [--connections 2000]

Prints one JSON line, in KiB per server connection.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from tunnelgw.config.model import TLSListener
from tunnelgw.tls import context_factory

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from users import certificate  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def heap() -> int:
    """Bytes allocated by malloc, small and mapped."""
    gc.collect()
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class StdlibClient:
    """The standard library's TLS on the system's OpenSSL, on memory BIOs."""

    def __init__(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)

    def step(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass

    def take(self) -> bytes:
        return self.outgoing.read()

    def give(self, data: bytes) -> None:
        self.incoming.write(data)

    def send(self, data: bytes) -> None:
        self.tls.write(data)

    def receive(self) -> bytes:
        return self.tls.read(65536)


class BundledClient:
    """pyOpenSSL on the OpenSSL that cryptography bundles, its default groups."""

    context = SSL.Context(SSL.TLS_METHOD)

    def __init__(self) -> None:
        self.tls = SSL.Connection(self.context, None)
        self.tls.set_connect_state()

    def step(self) -> None:
        try:
            self.tls.do_handshake()
        except SSL.WantReadError:
            pass

    def take(self) -> bytes:
        try:
            return self.tls.bio_read(65536)
        except SSL.WantReadError:
            return b""

    def give(self, data: bytes) -> None:
        self.tls.bio_write(data)

    def send(self, data: bytes) -> None:
        self.tls.send(data)

    def receive(self) -> bytes:
        return self.tls.recv(65536)


def _server_take(server: SSL.Connection) -> bytes:
    try:
        return server.bio_read(65536)
    except SSL.WantReadError:
        return b""


def _server_step(server: SSL.Connection) -> None:
    try:
        server.do_handshake()
    except SSL.WantReadError:
        pass


def converse(server: SSL.Connection, client: Any) -> None:
    """A whole handshake, then one message each way."""
    for _ in range(4):
        client.step()
        if data := client.take():
            server.bio_write(data)
        _server_step(server)
        if data := _server_take(server):
            client.give(data)
    client.send(b"ping")
    server.bio_write(client.take())
    assert server.recv(100) == b"ping"
    server.send(b"pong")
    client.give(_server_take(server))
    assert client.receive() == b"pong"


def measure(context: SSL.Context, kind: type, count: int) -> dict[str, Any]:
    start = heap()
    servers = [SSL.Connection(context, None) for _ in range(count)]
    for server in servers:
        server.set_accept_state()
    before_first_byte = heap()
    for server in servers:
        converse(server, kind())
    held = heap()
    group = servers[0].get_group_name()
    assert all(server.get_group_name() == group for server in servers)
    assert servers[0].get_protocol_version_name() == "TLSv1.3"
    return {
        "group": group,
        "kib_before_first_byte": round((before_first_byte - start) / count / 1024, 1),
        "kib_after_handshake": round((held - start) / count / 1024, 1),
    }


def bare_connection(count: int) -> float:
    """KiB a connection allocates on a context with no settings."""
    context = SSL.Context(SSL.TLS_METHOD)
    start = heap()
    connections = [SSL.Connection(context, None) for _ in range(count)]
    held = heap()
    assert len(connections) == count
    return round((held - start) / count / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        cert, key = certificate(Path(work))
        listener = TLSListener(endpoint="tcp:0", certificate=str(cert), private_key=str(key))
        context = context_factory(listener, "tls")
        measure(context, StdlibClient, 50)  # warm-up: the context's own first allocations
        measure(context, BundledClient, 50)
        bare_connection(50)
        results = {
            "ssl_new": bare_connection(options.connections),
            "x25519": measure(context, StdlibClient, options.connections),
            "x25519mlkem768": measure(context, BundledClient, options.connections),
        }
    print(json.dumps({"openssl": SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode(), **results}))


if __name__ == "__main__":
    main()
