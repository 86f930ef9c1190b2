"""
The extension points, each through a package of its own (examples/),
built into a wheel, installed into a fresh virtual environment and used
by a gateway run from it with twistd: a protocol adapter (C{lines}), an
upstream kind (C{failover:}), a login module reading a request header
(C{api_key}) and a policy that asks a remote decision point per session
(C{remote}), all four in one service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    EchoServer,
    JsonHTTPServer,
    expect_close,
    free_port,
    handshake_status,
    ws_connect,
)
from tests.integration.test_plugin import checked_gateway, plugin_env

EXAMPLES = (
    "tunnelgw-example-adapter",
    "tunnelgw-example-upstream",
    "tunnelgw-example-header-module",
    "tunnelgw-example-remote-policy",
)
KEYS = {"ops": "ops-key-0123456789abcdef", "guest": "guest-key-0123456789abcdef"}


class DecisionPoint(JsonHTTPServer):
    """
    A policy decision point over HTTP: C{ops} may GET and SET, C{guest}
    nothing; what it was asked is kept.
    """

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        super().__init__(self.decide)

    def decide(self, body: bytes, headers: Any) -> dict[str, Any]:
        question = json.loads(body)
        self.asked.append(question)
        if question["user"] == "ops":
            return {"allow": True, "grants": {"command": ["GET", "SET"]}}
        return {"allow": False}


@pytest.fixture
def decision_point() -> Iterator[DecisionPoint]:
    point = DecisionPoint()
    yield point
    point.close()


def config(port: int, dead: int, backend: int, pdp: str) -> str:
    keys = "\n".join(
        f'[[realms.keys.modules.options.keys]]\nsha256 = "{hashlib.sha256(key.encode()).hexdigest()}"\n'
        f'user = "{user}"\n'
        for user, key in KEYS.items()
    )
    return f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.keys]
challenge = "Bearer"
[[realms.keys.modules]]
module = "api_key"
flag = "required"
[realms.keys.modules.options]
header = "X-API-Key"
{keys}

[policies.pdp]
policy = "remote"
url = "{pdp}"

[services.cache]
path = "/cache"
adapter = "lines"
realm = "keys"
policy = "pdp"
upstream = "failover:tcp:127.0.0.1:{dead},tcp:127.0.0.1:{backend}"
subprotocols = ["text-lines"]
allow_missing_origin = true
[services.cache.lines]
max_line = 256
"""


def test_four_extension_packages_through_twistd(tmp_path: Path, decision_point: DecisionPoint) -> None:
    python, site = plugin_env(tmp_path, *EXAMPLES)
    for plugin in (
        "example_lines_adapter",
        "example_failover_upstream",
        "example_api_key_module",
        "example_remote_policy",
    ):
        assert (site / "tunnelgw" / "plugins" / f"{plugin}.py").exists()

    backend = EchoServer()
    try:
        port = free_port()
        text = config(port, free_port(), backend.port, decision_point.url("/decide"))
        # the project's own environment has none of them
        gateway = checked_gateway(python, tmp_path / "gw", text, port, "unknown login module 'api_key'")
        gateway.start()
        try:
            url = gateway.url("/cache")
            # the header module: no key, a wrong key
            assert handshake_status(url, subprotocols=["text-lines"])[0] == 401
            assert handshake_status(url, subprotocols=["text-lines"], headers={"X-API-Key": "nope"})[0] == 401
            # the remote policy refuses guest's session
            guest = handshake_status(url, subprotocols=["text-lines"], headers={"X-API-Key": KEYS["guest"]})
            assert guest[0] == 403
            # ops: the first backend is down, the second answers (failover),
            # and each command is checked against the session's grants
            ws = ws_connect(url, subprotocols=["text-lines"], header={"X-API-Key": KEYS["ops"]})
            assert ws.subprotocol == "text-lines"
            ws.send("SET k 1")
            assert ws.recv() == "SET k 1"
            ws.send("GET k")
            assert ws.recv() == "GET k"
            ws.send("FLUSHALL")
            assert expect_close(ws)[0] == 1008
            assert [q["user"] for q in decision_point.asked] == ["guest", "ops"]
            assert decision_point.asked[1]["service"] == "cache"
            assert decision_point.asked[1]["subprotocol"] == "text-lines"
            event = gateway.wait_event(event="tunnel_close", service="cache")
            assert event["principal"] == "ops" and event["code"] == 1008, event
            assert KEYS["ops"] not in gateway.output() and KEYS["guest"] not in gateway.output()
        finally:
            gateway.stop()
    finally:
        backend.close()
