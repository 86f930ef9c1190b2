"""
Every refusal gets its answer: an HTTP status before the upgrade, a close
code after it, and an admission log line saying who, what and why.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest
import websocket

from tests.integration.harness import (
    PUBLIC_REALM,
    EchoServer,
    Gateway,
    free_port,
    handshake_status,
    raw_gateway_config,
    raw_upgrade,
    read_close_frame,
    ws_connect,
)

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def silent_backend() -> Iterator[int]:
    """
    A port whose accept queue is full: SYNs are dropped, connects hang.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    yield port
    filler.close()
    listener.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, silent_backend: int) -> Iterator[Gateway]:
    echo = EchoServer()
    closed_port = free_port()
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
handshake_timeout = 1.5

{PUBLIC_REALM}
[services.strict]
path = "/strict"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{echo.port}"
subprotocols = ["binary"]
origins = ["{ORIGIN}"]

[services.strict.limits]
max_frame_size = 1024
max_message_size = 4096

[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
origins = ["{ORIGIN}"]

[services.refused]
path = "/refused"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{closed_port}"
allow_no_subprotocol = true
allow_missing_origin = true

[services.slow]
path = "/slow"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{silent_backend}"
allow_no_subprotocol = true
allow_missing_origin = true

[services.slow.limits]
connect_timeout = 1
"""
    gw = Gateway(tmp_path_factory.mktemp("refusals"), config, port).start()
    yield gw
    gw.stop()
    echo.close()


def strict(gateway: Gateway, **options):  # type: ignore[no-untyped-def]
    options.setdefault("origin", ORIGIN)
    options.setdefault("subprotocols", ["binary"])
    return ws_connect(gateway.url("/strict"), **options)


def test_accepted_baseline(gateway: Gateway) -> None:
    ws = strict(gateway)
    assert ws.subprotocol == "binary"
    ws.send_binary(b"ping")
    assert ws.recv_data()[1] == b"ping"
    ws.close()


def test_bad_origin_403(gateway: Gateway) -> None:
    status, body = handshake_status(
        gateway.url("/strict"), origin="https://evil.example.com", subprotocols=["binary"]
    )
    assert status == 403 and "not allowed" in body
    event = gateway.wait_event(event="admission", status=403, path="/strict")
    assert event["decision"] == "refuse" and event["peer"] == "127.0.0.1" and "evil" in event["reason"]


def test_origin_is_normalized(gateway: Gateway) -> None:
    """
    The Origin is compared after normalization (scheme and host lower
    case, the default port dropped): the same origin spelled otherwise is
    admitted, and so logged; another port is another origin.
    """
    ws = strict(gateway, origin="HTTPS://App.Example.com:443")
    assert ws.subprotocol == "binary"
    ws.send_binary(b"normalized")
    assert ws.recv_data()[1] == b"normalized"
    ws.close()
    status, body = handshake_status(
        gateway.url("/strict"), origin="https://app.example.com:8443", subprotocols=["binary"]
    )
    assert status == 403 and "is not allowed" in body


def test_missing_origin_403(gateway: Gateway) -> None:
    status, body = handshake_status(gateway.url("/strict"), subprotocols=["binary"])
    assert status == 403 and "Origin header is required" in body


def test_unknown_subprotocol_400(gateway: Gateway) -> None:
    status, body = handshake_status(gateway.url("/strict"), origin=ORIGIN, subprotocols=["mqtt", "foo"])
    assert status == 400 and "mqtt, foo" in body and "binary" in body


def test_no_subprotocol_where_required_400(gateway: Gateway) -> None:
    status, body = handshake_status(gateway.url("/strict"), origin=ORIGIN)
    assert status == 400 and "subprotocol is required" in body


def test_backend_refused_502(gateway: Gateway) -> None:
    status, body = handshake_status(gateway.url("/refused"))
    assert status == 502 and "refused" in body


def test_backend_timeout_504(gateway: Gateway) -> None:
    started = time.monotonic()
    status, _ = handshake_status(gateway.url("/slow"))
    assert status == 504
    assert 0.9 < time.monotonic() - started < 5


def test_declared_2gb_frame_1009(gateway: Gateway) -> None:
    sock = raw_upgrade(gateway.port, "/strict", f"Origin: {ORIGIN}\r\nSec-WebSocket-Protocol: binary\r\n")
    # FIN + binary, masked, 64-bit length 2**31: only the header is sent.
    sock.sendall(bytes([0x82, 0xFF]) + struct.pack("!Q", 2**31) + b"\x01\x02\x03\x04")
    assert read_close_frame(sock) == 1009
    sock.close()


def test_oversize_message_1009(gateway: Gateway) -> None:
    ws = strict(gateway)
    ABNF = websocket.ABNF
    for i in range(5):  # 5 frames of 1000 bytes: each frame fits, the message does not
        opcode = ABNF.OPCODE_BINARY if i == 0 else ABNF.OPCODE_CONT
        ws.send_frame(ABNF.create_frame(b"x" * 1000, opcode, fin=0))
    from tests.integration.harness import expect_close

    assert expect_close(ws)[0] == 1009


def test_invalid_utf8_1007(gateway: Gateway) -> None:
    ws = ws_connect(gateway.url("/echo"), origin=ORIGIN)
    ws.send(b"\xc3\x28 not utf-8", websocket.ABNF.OPCODE_TEXT)
    from tests.integration.harness import expect_close

    assert expect_close(ws)[0] == 1007


def test_text_on_raw_1003(gateway: Gateway) -> None:
    ws = strict(gateway)
    ws.send("text")
    from tests.integration.harness import expect_close

    code, reason = expect_close(ws)
    assert code == 1003 and "text" in reason


def test_unmasked_frame_1002(gateway: Gateway) -> None:
    sock = raw_upgrade(gateway.port, "/echo", f"Origin: {ORIGIN}\r\n")
    sock.sendall(bytes([0x82, 0x02]) + b"hi")  # no mask bit
    assert read_close_frame(sock) == 1002
    sock.close()


def test_handshake_timeout_slowloris(gateway: Gateway) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    started = time.monotonic()
    sock.sendall(b"GET /echo HTTP/1.1\r\n")
    answer = b""
    try:
        for _ in range(20):  # one header line every 0.1s keeps an idle timer alive, not a deadline
            sock.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.1)
    except OSError:
        pass
    while True:
        try:
            chunk = sock.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 4
    gateway.wait_event(event="handshake_timeout")


def test_not_an_upgrade_426_unknown_path_404(gateway: Gateway) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/echo", timeout=5)
    assert e.value.code == 426 and e.value.headers["Upgrade"] == "websocket"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/nothing", timeout=5)
    assert e.value.code == 404


@pytest.mark.parametrize("cap", ["per_address", "global"])
def test_connection_caps(start_gateway, echo_server: EchoServer, cap: str) -> None:  # type: ignore[no-untyped-def]
    key = "max_connections_per_address" if cap == "per_address" else "max_connections"
    gw = start_gateway(
        raw_gateway_config(
            "tcp:{port}:interface=127.0.0.1",
            echo_server.port,
            "allow_no_subprotocol = true",
            gateway=f"{key} = 2",
        )
    )
    held = [ws_connect(gw.url("/raw")) for _ in range(2)]
    status, _ = handshake_status(gw.url("/raw"))
    assert status == (429 if cap == "per_address" else 503)
    held.pop().close()
    gw.wait_event(event="tunnel_close")
    ws = ws_connect(gw.url("/raw"))  # a place is free again
    ws.close()
    for ws in held:
        ws.close()
