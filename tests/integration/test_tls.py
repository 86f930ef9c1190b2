"""
wss: TLS listeners (pyOpenSSL through a Twisted endpoint string), checked
by a real TLS client that verifies the chain and the host name.
"""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest
import websocket

from tests.integration.certs import CA
from tests.integration.harness import ws_connect


@pytest.fixture
def tls_gateway(start_gateway, echo_server, tmp_path):  # type: ignore[no-untyped-def]
    ca = CA(tmp_path)
    cert, key = ca.issue("gateway", ["127.0.0.1", "localhost"])
    gateway = start_gateway(
        f"""
[gateway]
listen = ["ssl:{{port}}:interface=127.0.0.1:privateKey={key}:certKey={cert}"]

[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"

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
