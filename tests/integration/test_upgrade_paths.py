"""
Both HTTP paths to an upgrade, with real sockets and a real TCP echo
backend: the fast path (a plain head in one read) and twisted.web (any
other head, here one with a non-ASCII header value, which the fast path
leaves to it).  On both, frames the client sends before its 101 arrive.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from tests.integration.harness import EchoServer, Gateway, raw_gateway_config
from tunnelgw.testing import client_frame

HEADS = {
    "plain": b"",  # the fast path when the head comes alone in a read
    "twisted.web": b"X-Name: caf\xe9\r\n",  # obs-text: twisted.web's to parse
}


def masked(opcode: int, payload: bytes) -> bytes:
    return client_frame(opcode, payload, mask=os.urandom(4))


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = read_exactly(sock, 2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exactly(sock, 2))[0]
    return first & 0x0F, read_exactly(sock, n)


@pytest.mark.parametrize("path", list(HEADS))
def test_frames_before_the_101_arrive(start_gateway, echo_server: EchoServer, path: str) -> None:  # type: ignore[no-untyped-def]
    gw: Gateway = start_gateway(raw_gateway_config("tcp:{port}:interface=127.0.0.1", echo_server.port))
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    head = (
        b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: binary\r\n" + HEADS[path] + b"\r\n"
    )
    sock.sendall(head)
    # not waiting for the 101 (which RFC 6455 asks clients to do)
    sock.sendall(masked(0x2, b"sent early") + masked(0x2, b", and more"))
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101 "), response
    assert b"Sec-WebSocket-Protocol: binary" in response
    echoed = b""
    while len(echoed) < len(b"sent early, and more"):
        opcode, payload = read_frame(sock)
        assert opcode == 0x2
        echoed += payload
    assert echoed == b"sent early, and more"
    sock.sendall(masked(0x8, struct.pack("!H", 1000)))
    assert read_frame(sock) == (0x8, struct.pack("!H", 1000))
    sock.close()
    event = gw.wait_event(event="tunnel_close")
    assert event["bytes_up"] == event["bytes_down"] == len(echoed)
