"""
Graceful stop: on SIGTERM the gateway stops listening, closes open tunnels
with 1001 after what they were sent, and exits within the drain timeout.
SIGUSR1 drains without stopping; SIGHUP reloads.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

from tests.integration.harness import (
    EchoServer,
    expect_close,
    handshake_status,
    port_open,
    raw_gateway_config,
    ws_connect,
)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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


def test_sighup_reloads_and_open_tunnels_carry_on(start_gateway, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """
    SIGHUP (an operator's reload) killed the gateway at once, with no close
    frames.  It reloads the configuration file: open tunnels and new
    connections carry on.
    """
    gateway = start_gateway(config(echo_server.port))
    ws = ws_connect(gateway.url("/raw"))
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)
    gateway.wait_event(event="reload", outcome="applied")
    assert gateway.proc.poll() is None
    ws.send_binary(b"after the hangup")
    assert ws.recv_data()[1] == b"after the hangup"
    other = ws_connect(gateway.url("/raw"))
    other.send_binary(b"new")
    assert other.recv_data()[1] == b"new"
    other.close()
    ws.close()


def test_sigusr1_drains_without_stopping(start_gateway, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """
    SIGUSR1: health says 503 draining (a load balancer takes the instance
    out), new upgrades get 503, open tunnels go on until drain_timeout,
    then 1001; the process stays up.
    """
    gateway = start_gateway(
        raw_gateway_config(
            "tcp:{port}:interface=127.0.0.1",
            echo_server.port,
            "allow_no_subprotocol = true",
            gateway="drain_timeout = 2",
        )
    )
    ws = ws_connect(gateway.url("/raw"))
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGUSR1)
    started = time.monotonic()
    gateway.wait_event(event="drain", count=1)
    status, body = http_get(gateway.url("/healthz", scheme="http"))
    assert status == 503 and json.loads(body)["status"] == "draining"
    assert handshake_status(gateway.url("/raw"))[0] == 503
    ws.send_binary(b"while draining")
    assert ws.recv_data()[1] == b"while draining"
    code, reason = expect_close(ws, 10)
    assert (code, reason) == (1001, "gateway draining")
    assert 1.5 < time.monotonic() - started < 5
    assert gateway.proc.poll() is None
