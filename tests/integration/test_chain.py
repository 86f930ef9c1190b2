"""
Two gateways chained on loopback (the namespace topology is in
test_dmz.py): client → outer (authenticates, signs an assertion) → inner
(mTLS, assertion login module, its own roles) → TCP echo backend.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.certs import CA
from tests.integration.harness import (
    EchoServer,
    Gateway,
    expect_close,
    free_port,
    handshake_status,
    pump,
    ws_connect,
)
from tunnelgw.security import Subject
from tunnelgw.security.signer import AssertionSigner

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2"}  # alice: staff; bob: guest
INNER_NAME = "inner.tunnelgw.test"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def public(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


class Chain:
    """
    The files and configurations of an outer and an inner gateway.
    """

    def __init__(self, work: Path, inner_host: str = "127.0.0.1", backend: str = "127.0.0.1:9") -> None:
        self.work = work
        self.ca = CA(work)
        self.inner_cert, self.inner_key = self.ca.issue("inner", [INNER_NAME])
        self.outer_cert, self.outer_key = self.ca.issue("outer-1", [])
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.signing_path = write_key(work / "assertion.key", self.signing_key)
        self.token_key = ec.generate_private_key(ec.SECP256R1())  # an identity provider's
        self.token_public = public(work / "idp.pub", self.token_key)
        self.verify_path = public(work / "assertion.pub", self.signing_key)
        users = work / "users"
        users.write_text(f"alice:{FAST.hash(USERS['alice'])}:staff\nbob:{FAST.hash(USERS['bob'])}:guest\n")
        self.users = users
        self.inner_host = inner_host
        self.backend = backend

    def inner_config(self, port: int, interface: str = "127.0.0.1") -> str:
        return f"""
[gateway]
[[gateway.tls_listeners]]
endpoint = "tcp:{port}:interface={interface}"
certificate = "{self.inner_cert}"
private_key = "{self.inner_key}"
client_ca = "{self.ca.cert_path}"
require_client_certificate = true

[realms.from-outer]
[[realms.from-outer.modules]]
module = "assertion"
flag = "required"
options = {{ audience = "inner-1", trusted = [{{ issuer = "outer-1", key_file = "{self.verify_path}", certificate_subject = "CN=outer-1" }}] }}

[services.app]
path = "/app"
adapter = "raw"
realm = "from-outer"
require_roles = ["staff"]
upstream = "tcp:{self.backend}"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true
"""

    def outer_config(self, port: int, inner_port: int, interface: str = "127.0.0.1") -> str:
        return f"""
[gateway]
listen = ["tcp:{port}:interface={interface}"]

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{self.users}" }}

[realms.tokens]
challenge = "Bearer"
[[realms.tokens.modules]]
module = "jwt"
flag = "required"
options = {{ algorithms = ["ES256"], key_file = "{self.token_public}", audience = "tunnelgw", leeway = 0 }}
{self._chained("app", "staff", inner_port)}
{self._chained("app-token", "tokens", inner_port)}
"""

    def _chained(self, name: str, realm: str, inner_port: int) -> str:
        return f"""
[services.{name}]
path = "/{name}"
adapter = "chain"
realm = "{realm}"
upstream = "wss://{self.inner_host}:{inner_port}/app"
subprotocols = ["binary"]
allow_no_subprotocol = true
allow_missing_origin = true
[services.{name}.chain]
client_certificate = "{self.outer_cert}"
client_key = "{self.outer_key}"
ca = "{self.ca.cert_path}"
server_name = "{INNER_NAME}"
assertion_key = "{self.signing_path}"
issuer = "outer-1"
audience = "inner-1"
assertion_lifetime = 30
"""


class Setup:
    def __init__(self, chain: Chain, outer: Gateway, inner: Gateway, echo: EchoServer) -> None:
        self.chain, self.outer, self.inner, self.echo = chain, outer, inner, echo


def start(work: Path, echo: EchoServer) -> Setup:
    chain = Chain(work, backend=f"127.0.0.1:{echo.port}")
    inner_port, outer_port = free_port(), free_port()
    (work / "inner").mkdir(exist_ok=True)
    (work / "outer").mkdir(exist_ok=True)
    inner = Gateway(work / "inner", chain.inner_config(inner_port), inner_port).start()
    outer = Gateway(work / "outer", chain.outer_config(outer_port, inner_port), outer_port).start()
    return Setup(chain, outer, inner, echo)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    echo = EchoServer()
    s = start(tmp_path, echo)
    try:
        yield s
    finally:
        s.outer.stop()
        s.inner.stop()
        echo.close()


def inner_admissions(inner: Gateway) -> list[dict[str, Any]]:
    return [e for e in inner.events() if e.get("event") == "admission"]


def test_64mib_each_way_through_two_gateways(setup: Setup) -> None:
    ws = ws_connect(
        setup.outer.url("/app"), subprotocols=["binary"], header=[f"Authorization: {basic('alice')}"]
    )
    assert ws.subprotocol == "binary"
    data = os.urandom(64 * 1024 * 1024)
    received = pump(ws, data, 65536)
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    ws.close()
    inner = setup.inner.wait_event(event="tunnel_close", service="app")
    assert inner["principal"] == "alice" and inner["bytes_up"] == len(data)
    accepted = setup.inner.wait_event(event="admission", decision="accept")
    assert accepted["principal"] == "alice"
    login = setup.inner.wait_event(event="login_module", module="assertion")
    assert login["outcome"] == "success"


def test_unauthenticated_client_never_reaches_the_inner(setup: Setup) -> None:
    status, _ = handshake_status(setup.outer.url("/app"), subprotocols=["binary"])
    assert status == 401
    status, _ = handshake_status(
        setup.outer.url("/app"), subprotocols=["binary"], headers={"Authorization": "Basic YWxpY2U6d3Jvbmc="}
    )
    assert status == 401
    assert inner_admissions(setup.inner) == []


def test_a_user_the_inner_refuses(setup: Setup) -> None:
    status, body = handshake_status(
        setup.outer.url("/app"), subprotocols=["binary"], headers={"Authorization": basic("bob")}
    )
    assert status == 403 and "the inner gateway refused: 403" in body
    refused = setup.inner.wait_event(event="admission", decision="refuse")
    assert refused["status"] == 403


def direct(setup: Setup, assertion: str | None, certificate: bool = True) -> int:
    """
    An upgrade straight to the inner gateway, as an attacker in the outer
    DMZ would try; its HTTP status.
    """
    context = ssl.create_default_context(cafile=str(setup.chain.ca.cert_path))
    if certificate:
        context.load_cert_chain(str(setup.chain.outer_cert), str(setup.chain.outer_key))
    conn = http.client.HTTPSConnection("127.0.0.1", setup.inner.port, context=context, timeout=10)
    conn._context.check_hostname = False  # type: ignore[attr-defined]  # we dial an address, the cert names the host
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "binary",
    }
    if assertion is not None:
        headers["Tunnelgw-Assertion"] = assertion
    try:
        conn.request("GET", "/app", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_forged_expired_and_replayed_assertions_are_refused(setup: Setup) -> None:
    alice = Subject.of("alice", ["staff"])
    rogue = AssertionSigner("outer-1", "inner-1", ec.generate_private_key(ec.SECP256R1()), "ES256", 30)
    assert direct(setup, rogue.sign(alice, time.time())) == 401
    genuine = AssertionSigner("outer-1", "inner-1", setup.chain.signing_key, "ES256", 30)
    assert direct(setup, genuine.sign(alice, time.time() - 300)) == 401
    assert direct(setup, None) == 401
    token = genuine.sign(alice, time.time())
    assert direct(setup, token) == 101
    assert direct(setup, token) == 401  # a copied header is worth nothing
    reasons = [e["reason"] for e in setup.inner.events() if e.get("event") == "login_module"]
    assert any("invalid assertion" in r for r in reasons)
    assert any("assertion expired" in r for r in reasons)
    assert any("already used" in r for r in reasons)


def test_no_client_certificate_no_connection(setup: Setup) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        direct(setup, None, certificate=False)


def test_killing_the_inner_closes_the_client_within_a_second(setup: Setup) -> None:
    ws = ws_connect(
        setup.outer.url("/app"), subprotocols=["binary"], header=[f"Authorization: {basic('alice')}"]
    )
    ws.send_binary(b"x" * 1000)
    assert len(ws.recv()) == 1000
    assert setup.inner.proc is not None
    started = time.monotonic()
    setup.inner.proc.kill()
    code, reason = expect_close(ws, timeout=5)
    assert time.monotonic() - started < 1.0
    assert code == 1014, (code, reason)
    status, _ = handshake_status(
        setup.outer.url("/app"), subprotocols=["binary"], headers={"Authorization": basic("alice")}
    )
    assert status == 502


def test_expiry_at_the_edge_ends_the_session_at_both_layers(setup: Setup) -> None:
    import jwt

    token = jwt.encode(
        {"sub": "alice", "roles": ["staff"], "aud": "tunnelgw", "exp": int(time.time()) + 2},
        setup.chain.token_key,
        algorithm="ES256",
    )
    ws = ws_connect(
        setup.outer.url("/app-token"), subprotocols=["binary"], header=[f"Authorization: Bearer {token}"]
    )
    ws.send_binary(b"still here")
    assert ws.recv() == b"still here"
    code, reason = expect_close(ws, timeout=6)
    assert code == 1008, (code, reason)
    # the inner tunnel lives by the same expiry (the assertion carried it)
    inner = setup.inner.wait_event(event="tunnel_close", service="app")
    assert inner["code"] == 1008, inner
