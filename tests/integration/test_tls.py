"""
wss: TLS listeners (pyOpenSSL through a Twisted endpoint string), checked
by a real TLS client that verifies the chain and the host name.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from typing import Any

import pytest
import websocket

from tests.integration.certs import CA
from tests.integration.harness import PUBLIC_REALM, ws_connect


@pytest.fixture
def tls_gateway(start_gateway, echo_server, tmp_path):  # type: ignore[no-untyped-def]
    ca = CA(tmp_path)
    cert, key = ca.issue("gateway", ["127.0.0.1", "localhost"])
    gateway = start_gateway(
        f"""
[gateway]
listen = ["ssl:{{port}}:interface=127.0.0.1:privateKey={key}:certKey={cert}"]

{PUBLIC_REALM}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true

[services.raw]
path = "/raw"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:{echo_server.port}"
subprotocols = ["binary"]
allow_missing_origin = true
"""
    )
    return gateway, ca


def sslopt(ca: CA) -> dict:  # type: ignore[type-arg]
    return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca.cert_path), "check_hostname": True}


def test_wss_echo_verified(tls_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway, ca = tls_gateway
    ws = ws_connect(gateway.url("/echo", "wss"), sslopt=sslopt(ca))
    ws.send("over tls")
    assert ws.recv() == "over tls"
    assert ws.sock.version() in ("TLSv1.2", "TLSv1.3")
    ws.close()


def test_wss_raw_tunnel_8mib(tls_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway, ca = tls_gateway
    ws = ws_connect(gateway.url("/raw", "wss"), sslopt=sslopt(ca), subprotocols=["binary"])
    data = os.urandom(8 * 1024 * 1024)
    received = bytearray()
    # One thread: an SSL socket must not be read and written concurrently.
    for offset in range(0, len(data), 65536):
        ws.send_binary(data[offset : offset + 65536])
        while len(received) < offset + 65536:
            received.extend(ws.recv_data()[1])
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    ws.close()
    event = gateway.wait_event(event="tunnel_close", service="raw")
    assert event["bytes_up"] == len(data) == event["bytes_down"]


def test_untrusted_certificate_is_rejected_by_the_client(tls_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gateway, _ = tls_gateway
    other = CA(tmp_path / "..", name="another CA")
    with pytest.raises((ssl.SSLCertVerificationError, websocket.WebSocketException, ssl.SSLError)):
        ws_connect(gateway.url("/echo", "wss"), sslopt=sslopt(other))


@pytest.fixture
def mtls_gateway(start_gateway, tmp_path):  # type: ignore[no-untyped-def]
    ca = CA(tmp_path)
    cert, key = ca.issue("gateway", ["127.0.0.1", "localhost"])
    gateway = start_gateway(
        f"""
[gateway]
listen = []

[[gateway.tls_listeners]]
endpoint = "tcp:{{port}}:interface=127.0.0.1"
certificate = "{cert}"
private_key = "{key}"
client_ca = "{ca.cert_path}"

[realms.certs]
[[realms.certs.modules]]
module = "client_cert"
flag = "required"
[realms.certs.modules.options.roles]
alice = ["vnc"]

[services.echo]
path = "/echo"
adapter = "echo"
realm = "certs"
require_roles = ["vnc"]
allow_no_subprotocol = true
allow_missing_origin = true
"""
    )
    return gateway, ca


def client_sslopt(ca: CA, cert: Any = None) -> dict:  # type: ignore[type-arg]
    options = sslopt(ca)
    if cert is not None:
        options.update(certfile=str(cert[0]), keyfile=str(cert[1]))
    return options


def test_mtls_client_certificate_logs_in(mtls_gateway) -> None:  # type: ignore[no-untyped-def]
    gateway, ca = mtls_gateway
    alice = ca.issue("alice", [])
    ws = ws_connect(gateway.url("/echo", "wss"), sslopt=client_sslopt(ca, alice))
    ws.send("mutual")
    assert ws.recv() == "mutual"
    ws.close()
    event = gateway.wait_event(event="admission", decision="accept")
    assert event["principal"] == "alice"


def test_mtls_refusals(mtls_gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gateway, ca = mtls_gateway
    # no certificate: the request reaches the realm, which refuses it
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_connect(gateway.url("/echo", "wss"), sslopt=client_sslopt(ca))
    assert e.value.status_code == 401
    # a certificate from the right CA for a user without the role
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_connect(gateway.url("/echo", "wss"), sslopt=client_sslopt(ca, ca.issue("bob", [])))
    assert e.value.status_code == 403
    # a certificate from another CA fails the TLS handshake itself
    other = CA(tmp_path / "..", name="rogue CA")
    with pytest.raises((ssl.SSLError, ConnectionError, websocket.WebSocketException)):
        ws = ws_connect(gateway.url("/echo", "wss"), sslopt=client_sslopt(ca, other.issue("mallory", [])))
        ws.send("x")
        ws.recv()
