"""
Graceful stop: on SIGTERM the gateway stops listening, closes open tunnels
with 1001 after what they were sent, and exits within the drain timeout.
"""

from __future__ import annotations

import signal
import time

from tests.integration.harness import EchoServer, expect_close, port_open, raw_gateway_config, ws_connect


def config(backend_port: int) -> str:
    return raw_gateway_config(
        "tcp:{port}:interface=127.0.0.1",
        backend_port,
        "allow_no_subprotocol = true",
        gateway="drain_timeout = 5",
    )


def test_sigterm_drains_open_tunnels(start_gateway, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    gateway = start_gateway(config(echo_server.port))
    ws = ws_connect(gateway.url("/raw"))
    ws.send_binary(b"before the stop")
    assert ws.recv_data()[1] == b"before the stop"
    started = time.monotonic()
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    code, reason = expect_close(ws, 10)
    assert code == 1001 and "shutting down" in reason
    # after a clean shutdown twistd re-raises the signal on itself, so the
    # exit status reports it
    assert gateway.proc.wait(10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 6
    assert not port_open(gateway.port)
    event = gateway.wait_event(event="drain")
    assert event["count"] == 1


def test_sighup_is_logged_and_changes_nothing(start_gateway, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """
    SIGHUP (an operator's reload) killed the gateway at once, with no close
    frames.  Until reload exists it is logged and ignored: open tunnels
    and new connections carry on.
    """
    gateway = start_gateway(config(echo_server.port))
    ws = ws_connect(gateway.url("/raw"))
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)
    gateway.wait_event(event="sighup")
    assert gateway.proc.poll() is None
    ws.send_binary(b"after the hangup")
    assert ws.recv_data()[1] == b"after the hangup"
    other = ws_connect(gateway.url("/raw"))
    other.send_binary(b"new")
    assert other.recv_data()[1] == b"new"
    other.close()
    ws.close()
