"""
Re-validation without disconnecting, end to end: a tunnel whose token
expires is closed with 1008 within a second of the expiry; the same tunnel
refreshed in time through the refresh endpoint stays open and keeps its
data flowing; a user removed from the password file loses their tunnel
within the revalidation interval.
"""

from __future__ import annotations

import base64
import http.client
import time
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.harness import Gateway, expect_close, free_port, ws_connect

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("reval")
    key = ec.generate_private_key(ec.SECP256R1())
    public = work / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    users = work / "users"
    users.write_text(f"alice:{FAST.hash('pw-a')}\ncarol:{FAST.hash('pw-c')}\n")
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.tokens]
challenge = "Bearer"
[[realms.tokens.modules]]
module = "jwt"
flag = "required"
options = {{ algorithms = ["ES256"], key_file = "{public}", audience = "tunnelgw", leeway = 0 }}

[realms.staff]
revalidate_interval = 1
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.tokens]
path = "/tokens"
adapter = "echo"
realm = "tokens"
allow_no_subprotocol = true
allow_missing_origin = true
origins = ["https://app.example.com"]

[services.staff]
path = "/staff"
adapter = "echo"
realm = "staff"
allow_no_subprotocol = true
allow_missing_origin = true
"""
    gateway = Gateway(work, config, port).start()
    yield gateway, key, users
    gateway.stop()


def token(key: Any, exp: float, sub: str = "alice") -> str:
    return jwt.encode({"sub": sub, "aud": "tunnelgw", "exp": int(exp)}, key, algorithm="ES256")


def open_tunnel(gateway: Gateway, headers: dict[str, str], path: str = "/tokens") -> tuple[Any, str]:
    ws = ws_connect(gateway.url(path), header=headers)
    response_headers = ws.getheaders()
    assert response_headers is not None
    session = response_headers["x-tunnel-session"]
    assert len(session) >= 32
    return ws, session


def refresh(gateway: Gateway, session: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request("POST", "/tunnelgw/refresh", headers={"X-Tunnel-Session": session, **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_close(ws: Any, timeout: float) -> tuple[int, float]:
    code, _ = expect_close(ws, timeout)
    return code, time.time()


def test_expired_token_closes_the_tunnel_within_a_second(setup: Any) -> None:
    gateway, key, _ = setup
    exp = int(time.time()) + 3
    ws, _ = open_tunnel(gateway, {"Authorization": f"Bearer {token(key, exp)}"})
    ws.send("before")
    assert ws.recv() == "before"
    code, closed_at = wait_close(ws, 10)
    assert code == 1008
    assert -0.05 <= closed_at - exp <= 1.0, closed_at - exp


def test_refreshed_tunnel_stays_open_and_keeps_flowing(setup: Any) -> None:
    gateway, key, _ = setup
    exp = int(time.time()) + 3
    ws, session = open_tunnel(gateway, {"Authorization": f"Bearer {token(key, exp)}"})
    # bad refreshes change nothing
    assert refresh(gateway, session, {"Authorization": f"Bearer {token(key, exp - 100)}"})[0] == 401
    assert refresh(gateway, session, {"Authorization": f"Bearer {token(key, exp + 60, sub='bob')}"})[0] == 403
    assert refresh(gateway, "not-a-session", {"Authorization": f"Bearer {token(key, exp + 60)}"})[0] == 404
    foreign = {"Authorization": f"Bearer {token(key, exp + 60)}", "Origin": "https://evil.example"}
    assert refresh(gateway, session, foreign)[0] == 403
    status, body = refresh(gateway, session, {"Authorization": f"Bearer {token(key, exp + 60)}"})
    assert status == 200, body
    while time.time() < exp + 1.5:  # past the first expiry, data still flows
        ws.send("after")
        assert ws.recv() == "after"
        time.sleep(0.25)
    ws.close()
    gateway.wait_event(event="tunnel_refresh", principal="alice")


def test_user_removed_from_password_file_loses_the_tunnel(setup: Any) -> None:
    gateway, _, users = setup
    header = {"Authorization": "Basic " + base64.b64encode(b"carol:pw-c").decode()}
    ws, _ = open_tunnel(gateway, header, "/staff")
    ws.send("hello")
    assert ws.recv() == "hello"
    time.sleep(1.5)  # revalidation runs every second: carol is still there
    ws.send("still")
    assert ws.recv() == "still"
    removed_at = time.time()
    users.write_text(f"alice:{FAST.hash('pw-a')}\n")
    code, closed_at = wait_close(ws, 10)
    assert code == 1008
    assert closed_at - removed_at <= 2.5  # the interval (1 s) plus autobahn's close path
    event = gateway.wait_event(event="tunnel_revoked", principal="carol")
    assert event["conn_id"]


def test_refresh_is_post_only(setup: Any) -> None:
    gateway, _, _ = setup
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("GET", "/tunnelgw/refresh")
    assert conn.getresponse().status == 405
    conn.close()
