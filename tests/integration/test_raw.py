"""
The raw tunnel over real sockets: every byte arrives, in order, both ways,
while one side stalls; the gateway's buffers stay bounded meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import websocket

from tests.integration.harness import EchoServer, expect_close, pump, raw_gateway_config, ws_connect

SIZE = 64 * 1024 * 1024
MESSAGE = 64 * 1024
HIGH_WATER = 64 * 1024


def config(backend_port: int) -> str:
    return raw_gateway_config(
        "tcp:{port}:interface=127.0.0.1",
        backend_port,
        f"allow_no_subprotocol = true\n\n[services.raw.limits]\nhigh_water = {HIGH_WATER}",
    )


def check_close_event(gateway, stalled: str, conn_subprotocol: str = "binary") -> dict:  # type: ignore[no-untyped-def]
    event = gateway.wait_event(event="tunnel_close", service="raw")
    assert event["bytes_up"] == SIZE and event["bytes_down"] == SIZE
    assert event["subprotocol"] == conn_subprotocol
    # Towards the client: the high-water mark (+14, the client's mark: see
    # docs/architecture.md, "Flow control") plus one message, the backend
    # read that crossed it (at most high_water bytes), with its header.
    assert 0 <= event["peak_down"] <= HIGH_WATER + 14 + MESSAGE + 14, event
    # Towards the backend: the mark plus one client read (high_water + 14
    # bytes, every message in it is relayed before the pause takes effect)
    # plus the message autobahn holds half-parsed across reads.
    assert 0 <= event["peak_up"] <= HIGH_WATER + (HIGH_WATER + 14) + MESSAGE, event
    # The stalled side was held for; the other may never have been (a full
    # client buffer stops reading the client too, and that may come before
    # the backend's socket fills)
    assert event["peak_down" if stalled == "client" else "peak_up"] > 0, event
    return event


@pytest.mark.parametrize("stalled", ["client", "backend"])
def test_64mib_each_way_with_a_stalled_side(start_gateway, stalled: str) -> None:  # type: ignore[no-untyped-def]
    if stalled == "backend":
        backend = EchoServer(stall_after=8 * 1024 * 1024, stall=2.0)
    else:
        backend = EchoServer()
    try:
        gateway = start_gateway(config(backend.port))
        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        assert ws.subprotocol == "binary"
        data = os.urandom(SIZE)
        if stalled == "client":
            received = pump(ws, data, MESSAGE, stall_after=8 * 1024 * 1024, stall=2.0)
        else:
            received = pump(ws, data, MESSAGE)
        assert len(received) == SIZE
        assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
        ws.close()
        check_close_event(gateway, stalled)
    finally:
        backend.close()


def test_stock_novnc_style_client_offering_no_subprotocol(start_gateway, echo_server) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(config(echo_server.port))
    ws = ws_connect(gateway.url("/raw"))
    assert ws.subprotocol is None
    ws.send_binary(b"RFB 003.008\n")
    assert ws.recv_data()[1] == b"RFB 003.008\n"
    ws.close()


@contextlib.contextmanager
def one_connection_backend(serve: Callable[[socket.socket], None]) -> Iterator[int]:
    """
    A backend on 127.0.0.1 that hands its first connection to C{serve} (in a
    thread); yields its port.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def accept() -> None:
        conn, _ = server.accept()
        serve(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def read_until_close(ws, timeout: float) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    """
    Every data frame until the server's close frame, and its close code.
    """
    received = bytearray()
    ws.settimeout(timeout)
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return bytes(received), int.from_bytes(frame.data[:2], "big")
        received.extend(frame.data)


def send_then_close(payload: bytes) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.close()

    return serve


def test_backend_eof_flushes_then_closes_1000(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    A server-speaks-first backend that sends a banner and 2 MiB, then closes:
    the client gets all of it, then 1000.
    """
    payload = b"BANNER\n" + os.urandom(2 * 1024 * 1024)
    with one_connection_backend(send_then_close(payload)) as port:
        gateway = start_gateway(config(port))
        ws = ws_connect(gateway.url("/raw"))
        time.sleep(0.5)  # let the backend finish first: the tunnel must flush anyway
        received, code = read_until_close(ws, 10)
        assert received == payload
        assert code == 1000


def test_client_close_delivers_everything_then_half_closes_backend(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    The client sends 4 MiB and closes at once: the backend reads all of it,
    then sees EOF (our write side shut down), and may still answer.
    """
    got = bytearray()
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            got.extend(data)
        done.set()
        conn.close()

    with one_connection_backend(serve) as port:
        gateway = start_gateway(config(port))
        ws = ws_connect(gateway.url("/raw"))
        data = os.urandom(4 * 1024 * 1024)
        for offset in range(0, len(data), MESSAGE):
            ws.send_binary(data[offset : offset + MESSAGE])
        ws.send_close(1000, b"")
        assert expect_close(ws)[0] == 1000
        assert done.wait(10), "backend never saw EOF"
        assert bytes(got) == data


def test_slow_client_gets_everything_then_1000_after_backend_eof(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    The backend sends 32 MiB (more than the kernel buffers hold) and closes
    at once, while the client is not reading yet: the gateway must keep the
    client connection until it has drained, then send 1000.
    """
    payload = os.urandom(32 * 1024 * 1024)
    with one_connection_backend(send_then_close(payload)) as port:
        gateway = start_gateway(config(port))
        ws = ws_connect(gateway.url("/raw"))
        time.sleep(1.5)  # a deliberately slow reader: the backend is long done
        received, code = read_until_close(ws, 20)
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
        assert code == 1000


def test_backend_may_still_answer_after_the_client_closed(start_gateway) -> None:  # type: ignore[no-untyped-def]
    """
    After the client's close the gateway shuts down only its write side
    towards the backend (half-close): a backend that answers late is not
    reset (which could make its kernel drop data it had not read yet).
    """
    outcome: list[str] = []
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass  # until the gateway's EOF
            conn.sendall(b"late answer")
            time.sleep(0.3)
            conn.sendall(b"and another")  # a reset by then would fail this
            outcome.append("ok")
        except OSError as e:
            outcome.append(f"reset: {e}")
        finally:
            conn.close()
            done.set()

    with one_connection_backend(serve) as port:
        gateway = start_gateway(config(port))
        ws = ws_connect(gateway.url("/raw"))
        ws.send_binary(b"request")
        ws.send_close(1000, b"")
        assert expect_close(ws)[0] == 1000
        assert done.wait(10)
        assert outcome == ["ok"]
