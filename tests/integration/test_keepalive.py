"""
Keepalive: the gateway pings; a peer that answers stays, one that does not
is dropped after ping_timeout, and the tunnel's close says why.
"""

from __future__ import annotations

import time

import websocket

from tests.integration.harness import PUBLIC_REALM, raw_upgrade, wait_for, ws_connect

CONFIG = f"""
[gateway]
listen = ["tcp:{{port}}:interface=127.0.0.1"]

{PUBLIC_REALM}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true

[services.echo.limits]
ping_interval = 0.5
ping_timeout = 0.5
"""


def test_silent_peer_is_dropped(start_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(CONFIG)
    sock = raw_upgrade(gateway.port, "/echo")
    started = time.monotonic()
    first = sock.recv(2)
    assert first[0] & 0x0F == 0x9, "expected a ping"

    def closed() -> bool:
        try:
            return sock.recv(65536) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    sock.settimeout(0.2)
    wait_for(closed, 5, "the gateway to drop a peer that never answers pings")
    assert time.monotonic() - started < 4
    event = gateway.wait_event(event="tunnel_close")
    assert "ping timeout" in event["reason"]
    sock.close()


def test_answering_peer_stays(start_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(CONFIG)
    ws = ws_connect(gateway.url("/echo"))
    ws.settimeout(0.5)
    pings = 0
    deadline = time.monotonic() + 5  # several ping intervals and timeouts
    while time.monotonic() < deadline:
        try:
            opcode, _ = ws.recv_data_frame(True)  # answers pings with pongs
        except websocket.WebSocketTimeoutException:
            continue
        assert opcode == websocket.ABNF.OPCODE_PING
        pings += 1
    assert pings >= 2
    ws.settimeout(5)
    ws.send("still here")
    assert ws.recv() == "still here"
    ws.close()
