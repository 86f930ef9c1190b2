"""
TLS to backends (C{tls:} upstreams): the certificate and host name are
verified before the 101, so a wrong CA or name is a 502 the client can
read, never an open-then-closed WebSocket; a verified backend carries the
session (raw to an echo server, stomp to RabbitMQ, rfb to x11vnc, each
behind a real TLS server); and a clean close logs no error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.certs import CA
from tests.integration.harness import (
    PUBLIC_REALM,
    EchoServer,
    Gateway,
    TlsFront,
    free_port,
    handshake_status,
    ws_connect,
)
from tests.integration.rabbitmq import RabbitMQ
from tests.integration.vnc import Desktop

KINDS = ("raw", "stomp", "rfb")


def trust_dir(ca: CA, work: Path, name: str) -> Path:
    directory = work / name
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca.cert_path.read_bytes())
    return directory


class Backends:
    def __init__(self, work: Path, ports: dict[str, int]) -> None:
        ca = CA(work)
        (work / "other").mkdir()
        other_ca = CA(work / "other", "another CA")
        # for its address and a name; never for "localhost"
        cert, key = ca.issue("backend", ["127.0.0.1", "backend.example"])
        self.fronts = {kind: TlsFront(port, cert, key) for kind, port in ports.items()}
        self.trusted = trust_dir(ca, work, "trusted")
        self.untrusted = trust_dir(other_ca, work, "untrusted")

    def upstream(self, kind: str, trust: Path, host: str = "127.0.0.1") -> str:
        port = self.fronts[kind].port
        return f"tls:host={host}:port={port}:trustRoots={trust}:endpoint=tcp\\:127.0.0.1\\:{port}"

    def close(self) -> None:
        for front in self.fronts.values():
            front.close()


def service(name: str, kind: str, upstream: str) -> str:
    extra = {
        "raw": "",
        "stomp": 'policy = "broker"\n',
        "rfb": 'policy = "desktop"\n[services.{name}.rfb]\nsecurity_types = ["none"]\n',
    }[kind].format(name=name)
    subprotocols = '["v12.stomp"]' if kind == "stomp" else '["binary"]'
    head = f"""
[services.{name}]
path = "/{name}"
adapter = "{kind}"
realm = "public"
upstream = '{upstream}'
subprotocols = {subprotocols}
allow_missing_origin = true
"""
    return head + extra


@pytest.fixture(scope="module")
def setup(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Backends]]:
    work = tmp_path_factory.mktemp("backend-tls")
    echo = EchoServer()
    desktop = Desktop(work / "desktop")
    try:
        desktop.start()
    except BaseException:
        desktop.stop()
        echo.close()
        raise
    backends = Backends(work, {"raw": echo.port, "stomp": rabbitmq.stomp_port, "rfb": desktop.port})
    services = ""
    for kind in KINDS:
        services += service(kind, kind, backends.upstream(kind, backends.trusted))
        services += service(f"{kind}-wrong-ca", kind, backends.upstream(kind, backends.untrusted))
        services += service(
            f"{kind}-wrong-name", kind, backends.upstream(kind, backends.trusted, "localhost")
        )
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]
{PUBLIC_REALM}
[policies.broker]
[[policies.broker.rules]]
roles = ["*"]
actions = ["connect", "send", "subscribe"]
resources = ["*"]

[policies.desktop]
[[policies.desktop.rules]]
roles = ["*"]
actions = ["input"]
resources = ["*"]
{services}"""
    (work / "gw").mkdir()
    gateway = Gateway(work / "gw", config, port)
    try:
        gateway.start()
        yield gateway, backends
    finally:
        gateway.stop()
        backends.close()
        desktop.stop()
        echo.close()


def talk(kind: str, ws: Any) -> None:
    """
    One exchange with the real server behind the TLS front.
    """
    if kind == "raw":
        data = os.urandom(100_000)
        ws.send_binary(data)
        got = b""
        while len(got) < len(data):
            got += ws.recv_data()[1]
        assert got == data
    elif kind == "stomp":
        ws.send("CONNECT\nlogin:guest\npasscode:guest\naccept-version:1.2\nhost:/\n\n\x00")
        assert ws.recv().startswith("CONNECTED\n")
        ws.send("DISCONNECT\nreceipt:bye\n\n\x00")
        assert ws.recv().startswith("RECEIPT\n")
    else:
        assert ws.recv_data()[1] == b"RFB 003.008\n"
        ws.send_binary(b"RFB 003.008\n")
        types = ws.recv_data()[1]
        assert types[0] >= 1 and 1 in types[1:]  # security type None offered


@pytest.mark.parametrize("kind", KINDS)
def test_a_verified_backend_carries_the_session(setup: tuple[Gateway, Backends], kind: str) -> None:
    gateway, backends = setup
    before = backends.fronts[kind].handshakes
    ws = ws_connect(gateway.url(f"/{kind}"), subprotocols=["v12.stomp" if kind == "stomp" else "binary"])
    talk(kind, ws)
    ws.close()
    assert backends.fronts[kind].handshakes == before + 1
    gateway.wait_event(event="tunnel_close", service=kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("wrong", ["wrong-ca", "wrong-name"])
def test_a_backend_that_fails_verification_is_a_502_before_the_upgrade(
    setup: tuple[Gateway, Backends], kind: str, wrong: str
) -> None:
    gateway, _ = setup
    offered = ["v12.stomp" if kind == "stomp" else "binary"]
    status, body = handshake_status(gateway.url(f"/{kind}-{wrong}"), subprotocols=offered)
    assert status == 502, (status, body)
    assert "TLS" in body
    refused = gateway.wait_event(event="admission", decision="refuse", service=f"{kind}-{wrong}")
    assert refused["status"] == 502
    failed = gateway.wait_event(event="backend_tls_failed", service=f"{kind}-{wrong}")
    assert failed["reason"]


def test_clean_closes_of_tls_backends_log_no_error(setup: tuple[Gateway, Backends]) -> None:
    """
    Every clean close of a TLS backend logged "Unhandled Error ...
    'NoneType' object has no attribute 'bio_read'".
    """
    gateway, _ = setup
    for kind in KINDS:
        ws = ws_connect(gateway.url(f"/{kind}"), subprotocols=["v12.stomp" if kind == "stomp" else "binary"])
        talk(kind, ws)
        ws.close()
    for kind in KINDS:
        gateway.wait_event(event="tunnel_close", service=kind)
    errors = [
        e
        for e in gateway.events()
        if e.get("failure") is not None or e.get("isError") or e["level"] in ("error", "critical")
    ]
    assert errors == [], errors
