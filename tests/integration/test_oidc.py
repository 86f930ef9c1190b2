"""
Keys and tokens from a real OpenID Connect provider (npm's oidc-provider,
run here): its JWT access tokens admitted through the jwt module's
jwks_uri; a key rotation (the provider restarted with a new signing key)
picked up without touching the gateway; an expired token refused and its
open tunnel ended; opaque tokens checked by introspection at the same
provider, and one revoked there refused, its open tunnel ended.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.harness import (
    REPO,
    Gateway,
    expect_close,
    free_port,
    handshake_status,
    port_open,
    wait_for,
    ws_connect,
)

PEERS = REPO / "tests" / "peers"
CLIENT = ("gw-test", "gw-secret")
JWT_TTL = 4


def private_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return dict(jwk)


class Provider:
    def __init__(self, work: Path) -> None:
        node = shutil.which("node")
        if node is None or not (PEERS / "node_modules" / "oidc-provider").is_dir():
            # A missing peer fails the test run; it never skips it.
            raise RuntimeError("oidc-provider is not installed: run tests/peers/install.sh (make test does)")
        self.node = node
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = work / "jwks.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *keys: dict[str, Any]) -> Provider:
        self.keys.write_text(json.dumps({"keys": list(keys)}))
        log = open(self.work / "provider.log", "ab")
        self.proc = subprocess.Popen(
            [self.node, str(PEERS / "oidc_provider.mjs")],
            cwd=PEERS,
            env={**os.environ, "PORT": str(self.port), "JWKS_FILE": str(self.keys), "JWT_TTL": str(JWT_TTL)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: port_open(self.port), 20, "the OpenID provider")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def post(self, path: str, **form: str) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(":".join(CLIENT).encode()).decode()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def token(self, resource: str) -> str:
        answer = self.post("/token", grant_type="client_credentials", scope="tunnel", resource=resource)
        return str(answer["access_token"])


class Setup:
    def __init__(self, provider: Provider, gateway: Gateway, k1: dict[str, Any]) -> None:
        self.provider = provider
        self.gateway = gateway
        self.k1 = k1


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("oidc")
    provider = Provider(work)
    k1 = private_jwk("k1")
    authorization = work / "introspection-authorization"
    authorization.write_text("Basic " + base64.b64encode(":".join(CLIENT).encode()).decode())
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.idp]
[[realms.idp.modules]]
module = "jwt"
flag = "required"
options = {{ jwks_uri = "{provider.url}/jwks", jwks_refetch_interval = 1, algorithms = ["RS256"], audience = "urn:tunnelgw:jwt", issuer = "{provider.url}", leeway = 0, roles_claim = "scope" }}

[realms.opaque]
revalidate_interval = 1
[[realms.opaque.modules]]
module = "introspection"
flag = "required"
options = {{ url = "{provider.url}/token/introspection", source = "bearer", user_field = "client_id", roles_field = "scope", authorization_file = "{authorization}" }}

[services.jwt]
path = "/jwt"
adapter = "echo"
realm = "idp"
require_roles = ["tunnel"]
subprotocols = ["echo"]
allow_missing_origin = true

[services.opaque]
path = "/opaque"
adapter = "echo"
realm = "opaque"
require_roles = ["tunnel"]
subprotocols = ["echo"]
allow_missing_origin = true
"""
    gateway = Gateway(work, config, port)
    try:
        provider.start(k1)
        gateway.start()
        yield Setup(provider, gateway, k1)
    finally:
        gateway.stop()
        provider.stop()


def bearer(token: str) -> list[str]:
    return [f"Authorization: Bearer {token}"]


def echo(ws: Any, data: bytes = b"ping") -> None:
    ws.send_binary(data)
    assert ws.recv() == data


def test_jwt_access_tokens_rotation_and_expiry(setup: Setup) -> None:
    p, gw = setup.provider, setup.gateway
    token = p.token("urn:tunnelgw:jwt")
    assert pyjwt.get_unverified_header(token)["kid"] == "k1"
    ws = ws_connect(gw.url("/jwt"), subprotocols=["echo"], header=bearer(token))
    echo(ws)
    accepted = gw.wait_event(event="admission", decision="accept", service="jwt")
    assert accepted["principal"] == "gw-test"
    assert gw.wait_event(event="jwks_fetched")["kids"] == ["k1"]

    # the token expires: its tunnel ends, and it is refused from then on
    code, reason = expect_close(ws, JWT_TTL + 5)
    assert (code, reason) == (1008, "credentials expired")
    assert (
        handshake_status(gw.url("/jwt"), subprotocols=["echo"], headers={"Authorization": f"Bearer {token}"})[
            0
        ]
        == 401
    )

    # a rotation: the provider restarts signing with k2 (k1 still published)
    p.stop()
    p.start(private_jwk("k2"), setup.k1)
    rotated = p.token("urn:tunnelgw:jwt")
    assert pyjwt.get_unverified_header(rotated)["kid"] == "k2"
    # a token of an unknown kid: the key set is fetched again (at most once a second)
    headers = {"Authorization": f"Bearer {rotated}"}
    wait_for(
        lambda: handshake_status(gw.url("/jwt"), subprotocols=["echo"], headers=headers)[0] == 101, 10, "k2"
    )
    ws = ws_connect(gw.url("/jwt"), subprotocols=["echo"], header=bearer(rotated))
    echo(ws)
    ws.close()
    kids = [e["kids"] for e in gw.events() if e.get("event") == "jwks_fetched"]
    assert kids[-1] == ["k2", "k1"]


def test_opaque_tokens_by_introspection_and_revocation(setup: Setup) -> None:
    p, gw = setup.provider, setup.gateway
    token = p.token("urn:tunnelgw:opaque")
    ws = ws_connect(gw.url("/opaque"), subprotocols=["echo"], header=bearer(token))
    echo(ws)
    p.post("/token/revocation", token=token)
    # revalidation asks the provider again within a second: the tunnel ends
    code, reason = expect_close(ws, 10)
    assert (code, reason) == (1008, "credentials revoked")
    status = handshake_status(
        gw.url("/opaque"), subprotocols=["echo"], headers={"Authorization": f"Bearer {token}"}
    )
    assert status[0] == 401
    assert (
        handshake_status(gw.url("/opaque"), subprotocols=["echo"], headers={"Authorization": "Bearer junk"})[
            0
        ]
        == 401
    )
