"""
A fallback session across two gateway instances behind Debian's HAProxy
in round-robin, with no stickiness: its streams, polls and POSTs land on
either instance, and reach the one that holds it through the shared
engine (Redis); passed between instances over plain HTTP, or over
C{https://} to each one's TLS listener, its certificate from a private
CA (C{advertise_ca}).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.certs import CA
from tests.integration.haproxy import HAProxy
from tests.integration.harness import EchoServer, Gateway, free_port
from tests.integration.redis_server import Redis
from tests.integration.test_fallback import shim

ORIGIN = "http://app.test"


def config(port: int, echo: int, redis: Redis, instance: str, ca: CA | None) -> str:
    """An instance; with C{ca}, it is passed requests over TLS, on a port of its own."""
    advertise = f'"http://127.0.0.1:{port}"'
    tls = ""
    if ca is not None:
        tls_port = free_port()
        cert, key = ca.issue(instance, ["127.0.0.1"])
        tls = f"""
[[gateway.tls_listeners]]
endpoint = "tcp:{tls_port}:interface=127.0.0.1"
certificate = "{cert}"
private_key = "{key}"
"""
        advertise = f'"https://127.0.0.1:{tls_port}"\nadvertise_ca = "{ca.cert_path}"'
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
{tls}
[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"
options = {{ user = "fiona" }}

[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{echo}"
subprotocols = ["binary"]
origins = ["{ORIGIN}"]
fallback = true

{redis.cluster_table(instance=f'"{instance}"', advertise=advertise)}
"""


@pytest.fixture(params=["http", "https"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[list[Gateway], HAProxy]]:
    ca = CA(tmp_path) if request.param == "https" else None
    redis = Redis(tmp_path / "redis").start()
    echo = EchoServer()
    gateways: list[Gateway] = []
    haproxy: HAProxy | None = None
    try:
        for name in ("one", "two"):
            port = free_port()
            workdir = tmp_path / name
            workdir.mkdir()
            gateways.append(Gateway(workdir, config(port, echo.port, redis, name, ca), port).start())
        haproxy = HAProxy(tmp_path / "haproxy", [g.port for g in gateways]).start()
        yield gateways, haproxy
    finally:
        if haproxy is not None:
            haproxy.stop()
        for gateway in gateways:
            gateway.stop()
        echo.close()
        redis.stop()


def test_a_session_whose_requests_alternate_between_instances(
    cluster: tuple[list[Gateway], HAProxy],
) -> None:
    gateways, haproxy = cluster
    for gateway in gateways:  # each has told Redis where it is, once up
        gateway.wait_event(event="cluster", state="up")
    result = shim(
        {
            "url": f"ws://127.0.0.1:{haproxy.port}/raw",
            "protocols": ["binary"],
            "headers": {"Origin": ORIGIN},
            "bytes": 4 * 1024 * 1024,
            "chunk": 64 * 1024,
        },
        timeout=60,
    )
    assert result["transport"] == "fallback", result
    assert result["sent"] == result["received"], result
    assert result["close"] == {"code": 1000, "reason": "", "wasClean": True}
    # one instance held the tunnel; both served its requests
    closes = [g for g in gateways if any(e.get("event") == "tunnel_close" for e in g.events())]
    assert len(closes) == 1
    events = [e.get("event") for g in gateways for e in g.events()]
    assert "fallback_forward_failed" not in events
    served = re.findall(r"gateways/(gw\d) .*\"POST /raw HTTP/1.1\"", haproxy.log())
    assert {"gw0", "gw1"} <= set(served), haproxy.log()[-2000:]
    assert len(served) > 20
