"""
Behind a balancer that speaks the PROXY protocol (a C{haproxy:tcp:...}
listener): the gateway knows each client's own address, logs it, and
counts its per-address caps against it rather than the balancer's.  With
a real HAProxy sending PROXY v2.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.integration.haproxy import HAProxy
from tests.integration.harness import PUBLIC_REALM, Gateway, free_port, ws_connect

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(port: int, client: str, opened: list[socket.socket]) -> bytes:
    """An upgrade with a PROXY v1 header naming C{client}: the status line (an open one kept in C{opened})."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode()
        + b"GET /echo HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = sock.recv(4096)
    opened.append(sock)
    return head.split(b"\r\n", 1)[0]


def test_the_clients_own_address(tmp_path: Path) -> None:
    port = free_port()
    gateway = Gateway(
        tmp_path,
        f"""
[gateway]
listen = ["haproxy:tcp:{port}:interface=127.0.0.1"]
max_connections_per_address = 1
{PUBLIC_REALM}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true
""",
        port,
    ).start()
    opened: list[socket.socket] = []
    try:
        assert upgrade(port, "192.0.2.7", opened) == b"HTTP/1.1 101 Switching Protocols"
        # that address has its one connection: a second is refused, another address is not
        assert upgrade(port, "192.0.2.7", opened).startswith(b"HTTP/1.1 429")
        assert upgrade(port, "192.0.2.8", opened) == b"HTTP/1.1 101 Switching Protocols"
        peers = [e["peer"] for e in gateway.events() if e.get("event") == "admission"]
        assert peers == ["192.0.2.7", "192.0.2.7", "192.0.2.8"]

        # a real HAProxy sending PROXY v2
        haproxy = HAProxy(tmp_path / "haproxy", [port])
        haproxy.config.write_text(
            haproxy.config.read_text()
            .replace(" check inter 500ms fall 1 rise 1", " send-proxy-v2")
            .replace("    option httpchk GET /healthz\\n", "")
        )
        haproxy.start()
        try:
            ws = ws_connect(f"ws://127.0.0.1:{haproxy.port}/echo")
            ws.send_binary(b"through haproxy")
            assert ws.recv() == b"through haproxy"
            ws.close()
        finally:
            haproxy.stop()
        assert [e["peer"] for e in gateway.events() if e.get("event") == "admission"][-1] == "127.0.0.1"
    finally:
        for sock in opened:
            sock.close()
        gateway.stop()
