"""
Authentication before the upgrade, with real HTTP and WebSocket clients:
each module accepts good and refuses bad credentials, 401 carries the
realm's challenge, a user without the service's role gets 403, a
browser-style client with only a cookie gets in, and no secret reaches the
log.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.harness import Gateway, free_port, handshake_status, ws_connect

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORDS = {"alice": "alice-Secret-pw-1", "bob": "bob-Secret-pw-2"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("auth")
    users = work / "users"
    users.write_text(f"alice:{FAST.hash(PASSWORDS['alice'])}:vnc\nbob:{FAST.hash(PASSWORDS['bob'])}\n")
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.staff]
challenge = "Basic"
[[realms.staff.modules]]
module = "password_file"
flag = "sufficient"
options = {{ path = "{users}" }}
[[realms.staff.modules]]
module = "jwt"
flag = "sufficient"
options = {{ algorithms = ["ES256"], key_file = "{work / "public.pem"}", audience = "tunnelgw" }}

[realms.web]
challenge = "Bearer"
[[realms.web.modules]]
module = "jwt"
flag = "required"
options = {{ source = "cookie", cookie = "session", algorithms = ["ES256"], key_file = "{work / "public.pem"}", audience = "tunnelgw" }}

[realms.office]
[[realms.office.modules]]
module = "address"
flag = "requisite"
options = {{ allow = ["10.0.0.0/8"] }}
[[realms.office.modules]]
module = "anonymous"
flag = "required"

[realms.loopback]
[[realms.loopback.modules]]
module = "address"
flag = "requisite"
options = {{ allow = ["127.0.0.0/8"], deny = ["127.0.0.2/32"] }}
[[realms.loopback.modules]]
module = "anonymous"
flag = "required"
options = {{ roles = ["local"] }}

[services.loopback]
path = "/loopback"
adapter = "echo"
realm = "loopback"
require_roles = ["local"]
allow_no_subprotocol = true
allow_missing_origin = true

[services.staff]
path = "/staff"
adapter = "echo"
realm = "staff"
require_roles = ["vnc"]
allow_no_subprotocol = true
allow_missing_origin = true

[services.web]
path = "/web"
adapter = "echo"
realm = "web"
allow_no_subprotocol = true
origins = ["https://app.example.com"]

[services.office]
path = "/office"
adapter = "echo"
realm = "office"
allow_no_subprotocol = true
allow_missing_origin = true
"""
    gateway = Gateway(work, config, port).start()
    yield gateway, key
    gateway.stop()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token(key: Any, **claims: Any) -> str:
    base = {"sub": "alice", "aud": "tunnelgw", "exp": int(time.time()) + 60, "roles": ["vnc"]}
    base.update(claims)
    return jwt.encode(base, key, algorithm="ES256")


ISSUED: list[str] = []


def bearer(key: Any, **claims: Any) -> dict[str, str]:
    t = token(key, **claims)
    ISSUED.append(t)
    return {"Authorization": f"Bearer {t}"}


def test_password_good_opens_the_tunnel(setup: Any) -> None:
    gateway, _ = setup
    ws = ws_connect(gateway.url("/staff"), header=basic("alice", PASSWORDS["alice"]))
    ws.send("hi")
    assert ws.recv() == "hi"
    ws.close()
    event = gateway.wait_event(event="admission", decision="accept", path="/staff")
    assert event["principal"] == "alice"


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice", "wrong"), basic("mallory", "x"), {"Authorization": "Basic ###"}],
    ids=["none", "wrong-password", "unknown-user", "malformed"],
)
def test_password_bad_is_401_with_challenge(setup: Any, headers: dict[str, str]) -> None:
    gateway, _ = setup
    status, body = handshake_status(gateway.url("/staff"), headers=headers)
    assert status == 401
    assert handshake_status.headers["WWW-Authenticate"] == 'Basic realm="staff"'  # type: ignore[attr-defined]
    assert "authentication required" in body


def test_bearer_good_and_bad(setup: Any) -> None:
    gateway, key = setup
    assert handshake_status(gateway.url("/staff"), headers=bearer(key))[0] == 101
    other = ec.generate_private_key(ec.SECP256R1())
    bad = {
        "expired": bearer(key, exp=int(time.time()) - 120),
        "wrong signature": bearer(other),
        "wrong audience": bearer(key, aud="elsewhere"),
    }
    for why, headers in bad.items():
        assert handshake_status(gateway.url("/staff"), headers=headers)[0] == 401, why


def test_user_without_the_role_is_403(setup: Any) -> None:
    gateway, key = setup
    status, body = handshake_status(gateway.url("/staff"), headers=basic("bob", PASSWORDS["bob"]))
    assert status == 403 and "not allowed" in body
    assert handshake_status(gateway.url("/staff"), headers=bearer(key, roles=[]))[0] == 403
    event = gateway.wait_event(event="authorization", decision="deny", principal="bob")
    assert event["required"] == ["vnc"]


def test_browser_with_only_a_cookie_gets_in(setup: Any) -> None:
    gateway, key = setup
    t = token(key)
    ISSUED.append(t)
    ws = ws_connect(gateway.url("/web"), origin="https://app.example.com", cookie=f"theme=dark; session={t}")
    ws.send("from the browser")
    assert ws.recv() == "from the browser"
    ws.close()
    status, _ = handshake_status(gateway.url("/web"), origin="https://app.example.com")
    assert status == 401
    assert handshake_status.headers["WWW-Authenticate"] == 'Bearer realm="web"'  # type: ignore[attr-defined]


def test_address_inside_the_allowed_network_gets_in(setup: Any) -> None:
    gateway, _ = setup
    ws = ws_connect(gateway.url("/loopback"))
    ws.send("local")
    assert ws.recv() == "local"
    ws.close()


def test_address_outside_the_allowed_network_is_refused(setup: Any) -> None:
    gateway, _ = setup
    assert handshake_status(gateway.url("/office"))[0] == 401
    event = gateway.wait_event(event="login_module", realm="office", module="address")
    assert event["outcome"] == "failure" and "127.0.0.1" in event["reason"]


def test_audit_per_module_and_no_secret_in_any_log_line(setup: Any) -> None:
    gateway, key = setup
    handshake_status(gateway.url("/staff"), headers=basic("alice", PASSWORDS["alice"]))
    handshake_status(gateway.url("/staff"), headers=bearer(key))
    handshake_status(gateway.url("/staff"), headers=bearer(key, aud="elsewhere"))
    events = [e for e in gateway.events() if e.get("event") == "login_module" and e.get("realm") == "staff"]
    assert {e["module"] for e in events} >= {"password_file", "jwt"}
    assert "alice" in {e["principal"] for e in events if e["outcome"] == "success"}
    assert "mallory" in {e["principal"] for e in events if e["outcome"] == "failure"}  # the claimed name
    assert {e["flag"] for e in events} == {"sufficient"}
    log = Path(gateway.log_path).read_text()
    secrets = list(PASSWORDS.values()) + ISSUED
    secrets += [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in PASSWORDS.items()]
    for secret in secrets:
        assert secret not in log
        assert secret.split(".")[-1] not in log  # not even a token's signature
