"""
The metrics listener, scraped by a real Prometheus: the target is up, and
the counters move as traffic passes; the gateway's own listener has no
/metrics.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import PUBLIC_REALM, Gateway, free_port, handshake_status, wait_for, ws_connect
from tests.integration.prometheus import Prometheus


class Setup:
    def __init__(self, gateway: Gateway, prometheus: Prometheus, metrics_port: int) -> None:
        self.gateway = gateway
        self.prometheus = prometheus
        self.metrics_port = metrics_port


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work: Path = tmp_path_factory.mktemp("metrics")
    port, metrics_port = free_port(), free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
{PUBLIC_REALM}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
subprotocols = ["echo"]
origins = ["http://127.0.0.1:{port}"]

[metrics]
listen = "tcp:{metrics_port}:interface=127.0.0.1"
"""
    gateway = Gateway(work, config, port)
    prometheus = Prometheus(work / "prometheus", f"127.0.0.1:{metrics_port}")
    try:
        gateway.start()
        prometheus.start()
        yield Setup(gateway, prometheus, metrics_port)
    finally:
        prometheus.stop()
        gateway.stop()


def test_prometheus_scrapes_and_counters_move(setup: Setup) -> None:
    p = setup.prometheus
    # the first scrape comes seconds after Prometheus starts
    wait_for(lambda: p.value('up{job="tunnelgw"}') == 1.0, 30, f"the target up:\n{p.output()}")
    [target] = p.api("targets")["activeTargets"]
    assert (target["health"], target["lastError"]) == ("up", "")

    origin = f"http://127.0.0.1:{setup.gateway.port}"
    for _ in range(5):
        ws = ws_connect(setup.gateway.url("/echo"), subprotocols=["echo"], origin=origin)
        ws.send_binary(b"x" * 1000)
        assert ws.recv() == b"x" * 1000
        ws.close()
    assert (
        handshake_status(setup.gateway.url("/echo"), origin="http://evil.example", subprotocols=["echo"])[0]
        == 403
    )
    setup.gateway.wait_event(event="tunnel_close")

    def moved() -> bool:
        accepted = p.value('sum(tunnelgw_handshakes_total{decision="accept", service="echo"})')
        refused = p.value('tunnelgw_handshakes_total{decision="refuse", status="403"}')
        sent = p.value('sum(tunnelgw_tunnel_bytes_total{service="echo", direction="up"})')
        latency = p.value("tunnelgw_handshake_seconds_count")
        return accepted == 5 and refused == 1 and sent == 5000 and latency == 5

    wait_for(moved, 20, "the counters to move in Prometheus")
    assert p.value('tunnelgw_tunnel_closes_total{service="echo", code="1000"}') == 5
    assert p.value("tunnelgw_connections_total") is not None


def test_metrics_are_not_on_the_gateway_listener(setup: Setup) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(setup.gateway.url("/metrics", scheme="http"), timeout=5)
    assert e.value.code == 404
    with urllib.request.urlopen(f"http://127.0.0.1:{setup.metrics_port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert b"tunnelgw_tunnels_open" in response.read()
