"""
The gateway with its shortcuts switched off (TUNNELGW_PUBLIC_API, see
tunnelgw._compat): only the public APIs of Twisted, autobahn and txaio,
and the same behaviour on the wire: the 101 with its session header, every
byte both ways, the close codes, the size limit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import BIN, EchoServer, expect_close, raw_gateway_config, ws_connect
from tunnelgw._compat import ENVIRONMENT, SHORTCUTS


@pytest.mark.parametrize("switched_off", ["all", *SHORTCUTS])
def test_the_public_fallbacks_behave_alike(start_gateway, switched_off: str) -> None:  # type: ignore[no-untyped-def]
    echo = EchoServer()
    try:
        gateway = start_gateway(
            raw_gateway_config(
                "tcp:{port}:interface=127.0.0.1",
                echo.port,
                "[services.raw.limits]\nmax_message_size = 65536\nmax_frame_size = 65536",
            ),
            env={ENVIRONMENT: switched_off},
        )
        reactor = gateway.wait_event(reactor=lambda value: value is not None)["reactor"]
        quiet = switched_off not in ("all", "reactor")
        assert reactor == (
            "tunnelgw.reactor.GatewayReactor" if quiet else "twisted.internet.epollreactor.EPollReactor"
        )

        ws = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        assert ws.subprotocol == "binary"
        headers = ws.getheaders()
        assert headers is not None and headers["x-tunnel-session"]
        payload = os.urandom(60_000)
        for _ in range(20):
            ws.send_binary(payload)
        received = b""
        while len(received) < 20 * len(payload):
            chunk = ws.recv()
            assert isinstance(chunk, bytes)
            received += chunk
        assert received == payload * 20
        ws.send_close(1000)
        assert expect_close(ws)[0] == 1000
        event = gateway.wait_event(event="tunnel_close", service="raw")
        assert event["bytes_up"] == event["bytes_down"] == 20 * len(payload)

        big = ws_connect(gateway.url("/raw"), subprotocols=["binary"])
        big.send_binary(b"x" * 70_000)
        assert expect_close(big)[0] == 1009
    finally:
        echo.close()


def test_an_unknown_shortcut_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "tunnelgw"],
        env={**os.environ, ENVIRONMENT: "reactor,nosuch"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no shortcut named nosuch" in result.stdout + result.stderr
