"""
Abuse a real gateway as an attacker would, and assert its bounds: memory
stays flat under a ping flood from a client that never reads; another
client's round trips stay fast while one client sends a message in a
million fragments.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from pathlib import Path

from tests.integration.harness import EchoServer, Gateway, raw_gateway_config, raw_upgrade, ws_connect

FLOOD_SECONDS = 20.0


def rss_kib(gateway: Gateway) -> int:
    assert gateway.proc is not None
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """
    One client frame (masked, as RFC 6455 requires of clients).
    """
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def send_for(sock: socket.socket, chunk: bytes, seconds: float) -> int:
    """
    Send C{chunk} over and over for C{seconds}, as fast as the gateway
    reads it, never reading; return the bytes sent.
    """
    sock.setblocking(False)
    sent = 0
    view = memoryview(b"")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not view:
            view = memoryview(chunk)
        _, writable, _ = select.select([], [sock], [], min(left, 0.1))
        if not writable:
            continue
        try:
            n = sock.send(view)
        except BlockingIOError:
            continue
        sent += n
        view = view[n:]
    return sent


def test_a_ping_flood_from_a_client_that_never_reads_stays_bounded(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    Finding: every ping was answered into the write buffer of a client
    that never read its pongs (60 -> 159 MiB in 20 s).  A client whose
    buffer is over the mark is not read any more, so the gateway's memory
    stays flat and the client's sending stalls.
    """
    backend = EchoServer()
    try:
        gateway = start_gateway(raw_gateway_config("tcp:{port}:interface=127.0.0.1", backend.port))
        # warm up: one tunnel relays, so that what a first tunnel allocates
        # once is not counted as growth
        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        ws.send_binary(b"warm")
        assert ws.recv_data()[1] == b"warm"
        ws.close()
        sock = raw_upgrade(gateway.port, "/raw", "Sec-WebSocket-Protocol: binary\r\n")
        before = rss_kib(gateway)
        ping = masked_frame(0x9, b"p" * 125)
        sent = send_for(sock, ping * 512, FLOOD_SECONDS)
        growth = rss_kib(gateway) - before
        assert growth < 4 * 1024, f"RSS grew by {growth} KiB under {sent} bytes of pings"
        # the gateway stopped reading: far less went in than a loopback
        # carries in 20 s (gigabytes)
        assert sent < 64 * 1024 * 1024, sent
        # and it still serves others
        other = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        other.send_binary(b"still here")
        assert other.recv_data()[1] == b"still here"
        other.close()
        sock.close()
    finally:
        backend.close()
