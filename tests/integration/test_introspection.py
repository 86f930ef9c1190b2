"""
The introspection module against an HTTP introspection endpoint (a stand-in
for the web app whose session cookie the browser carries): an active
session gets in with the app's user and roles, an unknown or ended one is
refused, a slow app times out, and ending the session in the app closes
the tunnel at the next revalidation.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import (
    Gateway,
    JsonHTTPServer,
    expect_close,
    free_port,
    handshake_status,
    ws_connect,
)

SESSIONS: dict[str, dict[str, Any]] = {}
SEEN_AUTHORIZATION: list[str] = []


def introspect(body: bytes, headers: Any) -> dict[str, Any]:
    form = urllib.parse.parse_qs(body.decode())
    SEEN_AUTHORIZATION.append(headers.get("Authorization", ""))
    token = form.get("token", [""])[0]
    if token == "slow":
        time.sleep(3)
    return SESSIONS.get(token, {"active": False})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = JsonHTTPServer(introspect)
    work = tmp_path_factory.mktemp("introspection")
    (work / "auth").write_text("Basic Z2F0ZXdheTpzZWNyZXQ=\n")
    port = free_port()
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.app]
revalidate_interval = 1
[[realms.app.modules]]
module = "introspection"
flag = "required"
options = {{ url = "{server.url("/introspect")}", cookie = "app_session", timeout = 1, authorization_file = "{work / "auth"}" }}

[services.desk]
path = "/desk"
adapter = "echo"
realm = "app"
require_roles = ["desk"]
allow_no_subprotocol = true
origins = ["https://app.example.com"]
"""
    gateway = Gateway(work, config, port).start()
    yield gateway
    gateway.stop()
    server.close()


ORIGIN = "https://app.example.com"


def test_active_session_gets_in(setup: Gateway) -> None:
    SESSIONS["s-alice"] = {"active": True, "sub": "alice", "roles": ["desk"]}
    ws = ws_connect(setup.url("/desk"), origin=ORIGIN, cookie="app_session=s-alice")
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()
    assert setup.wait_event(event="admission", decision="accept")["principal"] == "alice"
    assert SEEN_AUTHORIZATION[-1] == "Basic Z2F0ZXdheTpzZWNyZXQ="


def test_unknown_inactive_and_slow_sessions_are_refused(setup: Gateway) -> None:
    SESSIONS["s-old"] = {"active": False, "sub": "alice"}
    for cookie in ("app_session=nope", "app_session=s-old", "other=s-alice", None):
        headers = {"Cookie": cookie} if cookie else {}
        assert handshake_status(setup.url("/desk"), origin=ORIGIN, headers=headers)[0] == 401, cookie
    started = time.monotonic()
    assert (
        handshake_status(setup.url("/desk"), origin=ORIGIN, headers={"Cookie": "app_session=slow"})[0] == 401
    )
    assert time.monotonic() - started < 2.5


def test_session_ended_in_the_app_closes_the_tunnel(setup: Gateway) -> None:
    SESSIONS["s-bob"] = {"active": True, "sub": "bob", "roles": "desk other"}
    ws = ws_connect(setup.url("/desk"), origin=ORIGIN, cookie="app_session=s-bob")
    ws.send("working")
    assert ws.recv() == "working"
    SESSIONS["s-bob"] = {"active": False}
    ended = time.time()
    code, _ = expect_close(ws, 10)
    assert code == 1008
    assert time.time() - ended < 3
