"""
The HTTP fallback with real proxies that break WebSocket and real clients:
stock stomp.js, noVNC and xmpp.js in headless Chromium, given the
gateway's TunnelSocket, behind Debian's nginx (no Upgrade forwarded,
buffering on) and through Debian's Squid (CONNECT refused), against
RabbitMQ, x11vnc and prosody; and the shim from Node for a session that
outlives nginx restarting in the middle of 64 MiB each way.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import struct
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.integration.harness import REPO, EchoServer, Gateway, free_port
from tests.integration.prosody import DOMAIN, USERS, Prosody
from tests.integration.proxies import Nginx, Squid
from tests.integration.vnc import Desktop

PEERS = REPO / "tests" / "peers"
SECRET = "fallback-test-secret-of-32-bytes!"
CLIENT = REPO / "tunnelgw" / "fallback" / "client" / "tunnelsocket.js"


def token(user: str, roles: list[str], lifetime: float = 600) -> str:
    claims = {"sub": user, "roles": roles, "aud": "tunnelgw", "exp": int(time.time() + lifetime)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def node() -> str:
    path = shutil.which("node")
    if path is None or not (PEERS / "node_modules" / "playwright-core").exists():
        raise RuntimeError("Node or playwright-core missing: run tests/peers/install.sh (make test does)")
    return path


def page_check(page: str, proxy: str | None = None, timeout: float = 40) -> dict[str, Any]:
    cfg = {"page": page, "proxy": proxy, "timeoutMs": int(timeout * 1000) - 5000}
    proc = subprocess.run(
        [node(), str(PEERS / "page_check.mjs"), json.dumps(cfg)],
        capture_output=True,
        timeout=timeout,
        cwd=PEERS,
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = lines[-1]
    return result


def shim(cfg: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Run the shim from Node (tests/peers/tunnelsocket_client.mjs) to the end."""
    cfg.setdefault("timeoutMs", int(timeout * 1000) - 5000)
    proc = subprocess.run(
        [node(), str(PEERS / "tunnelsocket_client.mjs"), json.dumps(cfg)],
        capture_output=True,
        timeout=timeout,
        cwd=PEERS,
        env={"PATH": "/usr/bin:/bin", "TUNNELSOCKET": str(CLIENT)},
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = lines[-1]
    return result


class Setup:
    def __init__(
        self, gateway: Gateway, nginx: Nginx, squid: Squid, echo: EchoServer, desktop: Desktop
    ) -> None:
        self.gateway = gateway
        self.nginx = nginx
        self.squid = squid
        self.echo = echo
        self.desktop = desktop

    def page(self, name: str, **cfg: Any) -> str:
        return f"{self.nginx.origin}/pages/{name}?cfg={urllib.parse.quote(json.dumps(cfg))}"

    def url(self, path: str, via: str) -> str:
        """The URL a page behind C{via} is given: nginx's, or the gateway's own through Squid."""
        port = self.nginx.port if via == "nginx" else self.gateway.port
        return f"ws://127.0.0.1:{port}{path}"

    def proxy(self, via: str) -> str | None:
        return f"http://127.0.0.1:{self.squid.port}" if via == "squid" else None


@pytest.fixture(scope="module")
def setup(rabbitmq: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("fallback")
    key = work / "jwt.key"
    key.write_text(SECRET)
    port = free_port()
    echo = EchoServer()
    nginx = Nginx(work / "nginx", port, PEERS)
    squid = Squid()
    desktop = Desktop(work / "desktop")
    xmpp = Prosody(work / "prosody")
    (work / "prosody").mkdir()
    # the pages come from nginx, behind it or through Squid: their origin
    origins = f'origins = ["{nginx.origin}"]\nfallback = true'
    started: list[Any] = []
    try:
        for peer in (desktop, xmpp):
            started.append(peer.start())
        config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.web]
[[realms.web.modules]]
module = "jwt"
flag = "required"
options = {{ source = "cookie", cookie = "tg", algorithms = ["HS256"], key_file = "{key}", audience = "tunnelgw" }}

[policies.broker]
[[policies.broker.rules]]
roles = ["*"]
actions = ["connect"]
resources = ["/"]
[[policies.broker.rules]]
roles = ["traders"]
actions = ["subscribe", "send"]
resources = ["/topic/public.*"]

[policies.desktop]
[[policies.desktop.rules]]
roles = ["operators"]
actions = ["input"]
resources = ["*"]

[services.stomp]
path = "/stomp"
adapter = "stomp"
realm = "web"
policy = "broker"
upstream = "tcp:127.0.0.1:{rabbitmq.stomp_port}"
subprotocols = ["v12.stomp", "v11.stomp", "v10.stomp"]
{origins}

[services.vnc]
path = "/vnc"
adapter = "rfb"
realm = "web"
policy = "desktop"
upstream = "tcp:127.0.0.1:{desktop.port}"
subprotocols = ["binary"]
{origins}
[services.vnc.rfb]
security_types = ["none"]

[services.xmpp]
path = "/xmpp"
adapter = "xmpp"
realm = "web"
upstream = "tcp:127.0.0.1:{xmpp.c2s_port}"
subprotocols = ["xmpp"]
{origins}
[services.xmpp.xmpp]
domain = "{DOMAIN}"
backend_tls = "off"
bind_identity = true

[services.raw]
path = "/raw"
adapter = "raw"
realm = "web"
upstream = "tcp:127.0.0.1:{echo.port}"
subprotocols = ["binary"]
{origins}

[services.ops]
path = "/ops"
adapter = "raw"
realm = "web"
require_roles = ["ops"]
upstream = "tcp:127.0.0.1:{echo.port}"
subprotocols = ["binary"]
{origins}
[services.ops.limits]
max_message_size = 4096
max_frame_size = 4096
"""
        gw_dir = work / "gw"
        gw_dir.mkdir()
        gateway = Gateway(gw_dir, config, port).start()
        started.append(gateway)
        started.append(nginx.start())
        started.append(squid.start())
        yield Setup(gateway, nginx, squid, echo, desktop)
    finally:
        for peer in reversed(started):
            peer.stop()
        echo.close()


VIA = ["nginx", "squid"]


def _refused(gateway: Gateway) -> int:
    return sum(1 for e in gateway.events() if e.get("event") == "fallback_refused")


@pytest.mark.parametrize("via", VIA)
def test_stompjs_falls_back_with_the_same_policy(setup: Setup, via: str) -> None:
    allowed = f"/topic/public.{uuid.uuid4().hex[:8]}"
    forbidden = f"/queue/secret{uuid.uuid4().hex[:8]}"
    user = f"alice-{via}"
    refused_before = _refused(setup.gateway)
    result = page_check(
        setup.page(
            "fallback_stomp.html",
            url=setup.url("/stomp", via),
            token=token(user, ["traders"]),
            allowed=allowed,
            forbidden=forbidden,
        ),
        setup.proxy(via),
    )
    assert result["done"], result
    assert result["transport"] == "fallback"
    assert result["protocol"] == "v12.stomp"
    assert result["messages"] == ["hello over the fallback"]
    assert result["errors"] == [f"not authorized to send to {forbidden}"]
    assert result["close"]["code"] == 1008
    if via == "nginx":
        # the WebSocket went to nginx, which passed no upgrade on (HTTP/1.0)
        refused = setup.gateway.wait_event(
            event="admission", decision="refuse", transport="websocket", path="/stomp"
        )
        assert refused["status"] == 505
        assert '"POST /stomp HTTP/1.1" 200' in setup.nginx.log()  # the fallback, through nginx
    else:
        log = setup.squid.log()
        assert re.search(rf"TCP_DENIED/403 \d+ CONNECT 127.0.0.1:{setup.gateway.port} ", log), log
        assert f"POST http://127.0.0.1:{setup.gateway.port}/stomp" in log  # the fallback, through Squid
    # every request of the session found it: none came after its end
    assert _refused(setup.gateway) == refused_before
    setup.gateway.wait_event(event="admission", decision="accept", transport="fallback", principal=user)
    denied = setup.gateway.wait_event(event="authorization", decision="deny", resource=forbidden)
    assert denied["principal"] == user
    closed = setup.gateway.wait_event(event="tunnel_close", transport="fallback", principal=user)
    assert closed["code"] == 1008


@pytest.mark.parametrize("via", VIA)
def test_novnc_falls_back_and_a_viewer_keys_are_dropped(setup: Setup, via: str) -> None:
    user = f"victor-{via}"
    page = setup.page("fallback_novnc.html", url=setup.url("/vnc", via), token=token(user, ["viewers"]))
    cfg = {"page": page, "proxy": setup.proxy(via), "type": "viewer-was-here", "timeoutMs": 30000}
    proc = subprocess.run(
        [node(), str(PEERS / "novnc_check.mjs"), json.dumps(cfg)], capture_output=True, timeout=45, cwd=PEERS
    )
    result = json.loads(proc.stdout.decode().splitlines()[-1])
    assert result["connected"], result
    assert result["transport"] == "fallback"
    assert result["yellow"] > 0.5, result  # the remote terminal, painted
    assert setup.desktop.typed.read_text() == ""
    setup.gateway.wait_event(event="rfb_input_dropped")
    session = setup.gateway.wait_event(event="rfb_session", principal=user)
    assert session["view_only"] is True


@pytest.mark.parametrize("via", VIA)
def test_xmppjs_falls_back_and_binds_the_same_identity(setup: Setup, via: str) -> None:
    result = page_check(
        setup.page(
            "fallback_xmpp.html",
            url=setup.url("/xmpp", via),
            token=token("alice", []),
            domain=DOMAIN,
            user="alice",
            password=USERS["alice"],
        ),
        setup.proxy(via),
    )
    assert result["done"] and not result["errors"], result
    assert result["transport"] == "fallback"
    assert result["protocol"] == "xmpp"
    assert result["online"].startswith(f"alice@{DOMAIN}/")
    assert result["messages"] == ["hello over the fallback"]


def test_64_mib_each_way_survive_nginx_restarting(setup: Setup) -> None:
    cfg = {
        "url": f"ws://127.0.0.1:{setup.nginx.port}/raw",
        "protocols": ["binary"],
        "headers": {"Origin": setup.nginx.origin, "Cookie": f"tg={token('bob', [])}"},
        "bytes": 64 * 1024 * 1024,
        "chunk": 256 * 1024,
        "progressAt": 8 * 1024 * 1024,
    }
    proc = subprocess.Popen(
        [node(), str(PEERS / "tunnelsocket_client.mjs"), json.dumps({**cfg, "timeoutMs": 170000})],
        stdout=subprocess.PIPE,
        cwd=PEERS,
        env={"PATH": "/usr/bin:/bin", "TUNNELSOCKET": str(CLIENT)},
    )
    assert proc.stdout is not None
    progress = json.loads(proc.stdout.readline())  # 8 MiB back of 64: mid-transfer
    assert progress["event"] == "progress", progress
    setup.nginx.restart()  # every stream and POST through it is cut
    assert proc.poll() is None, "the transfer ended before nginx restarted"
    out, _ = proc.communicate(timeout=180)
    result = json.loads(out.decode().splitlines()[-1])
    assert result["transport"] == "fallback", result
    assert result["sent"] == result["received"], result
    assert result["close"] == {"code": 1000, "reason": "", "wasClean": True}
    closed = setup.gateway.wait_event(event="tunnel_close", transport="fallback", principal="bob")
    assert closed["bytes_up"] == closed["bytes_down"] == 64 * 1024 * 1024
    assert result["sent"] != hashlib.sha256(b"").hexdigest()


def test_a_proxy_that_buffers_every_response_gets_polls(setup: Setup) -> None:
    result = shim(
        {
            "url": f"ws://127.0.0.1:{setup.nginx.port}/buffered/raw",
            "protocols": ["binary"],
            "headers": {"Origin": setup.nginx.origin, "Cookie": f"tg={token('pat', [])}"},
            "bytes": 8 * 1024 * 1024,
            "chunk": 64 * 1024,
        },
        timeout=90,
    )
    assert result["transport"] == "fallback", result
    assert result["polling"] is True  # the stream showed nothing in time
    assert result["sent"] == result["received"], result
    assert result["close"] == {"code": 1000, "reason": "", "wasClean": True}


def post(
    port: int, path: str, kind: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body,
            {"Content-Type": "application/x-tunnelgw-fallback", "X-Tunnel-Fallback": kind, **headers},
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def frame(kind: int, seq: int, payload: bytes) -> bytes:
    return struct.pack(">BQI", kind, seq, len(payload)) + payload


def test_every_refusal_of_the_upgrade_has_its_twin(setup: Setup) -> None:
    port, origin = setup.gateway.port, setup.nginx.origin
    bob = {"Origin": origin, "Cookie": f"tg={token('dora', ['ops'])}"}

    def open_(
        path: str, headers: dict[str, str], protocol: str = "binary"
    ) -> tuple[int, dict[str, str], bytes]:
        return post(port, path, "open", {"X-Tunnel-Protocol": protocol, **headers})

    refusals = {
        "bad origin": (open_("/ops", {**bob, "Origin": "http://evil.example"}), 403),
        "no credentials": (open_("/ops", {"Origin": origin}), 401),
        "wrong role": (open_("/ops", {**bob, "Cookie": f"tg={token('dora', [])}"}), 403),
        "unknown subprotocol": (open_("/ops", bob, "other"), 400),
        "expired token": (open_("/ops", {**bob, "Cookie": f"tg={token('dora', ['ops'], -120)}"}), 401),
    }
    for what, ((status, _, body), expected) in refusals.items():
        assert status == expected, (what, status, body)
    # the WebSocket path answers the same
    for what, status in (("bad origin", 403), ("no credentials", 401), ("wrong role", 403)):
        event = setup.gateway.wait_event(
            event="admission", decision="refuse", transport="fallback", status=status
        )
        assert event["path"] == "/ops", what

    status, headers, body = open_("/ops", bob)
    assert status == 200, body
    session = headers["x-tunnel-session"]
    later = {**bob, "X-Tunnel-Session": session}
    # a session id replayed from another Origin, or by another user
    assert post(port, "/ops", "send", {**later, "Origin": "http://evil.example"})[0] == 403
    assert post(port, "/ops", "send", {**later, "Cookie": f"tg={token('mallory', ['ops'])}"})[0] == 403
    assert post(port, "/ops", "send", {**later, "Cookie": ""})[0] == 401
    assert post(port, "/elsewhere", "send", later)[0] == 404
    assert post(port, "/ops", "send", {**bob, "X-Tunnel-Session": "x" * 32})[0] == 404
    setup.gateway.wait_event(
        event="fallback_refused", status=403, reason="this session belongs to another user"
    )
    # the session is still the owner's; an oversize message closes it as a WebSocket's (1009)
    status, headers, _ = post(port, "/ops", "send", later, frame(2, 1, b"x" * 10))
    assert (status, headers["x-tunnel-ack"]) == (200, "1")
    assert post(port, "/ops", "send", later, frame(2, 2, b"x" * 4097))[0] == 413
    closed = setup.gateway.wait_event(event="tunnel_close", transport="fallback", principal="dora")
    assert closed["code"] == 1009


def test_credentials_that_expire_close_the_session_1008(setup: Setup) -> None:
    brief = token("carol", [], lifetime=-28)  # valid for 2 s more (the realm's leeway is 30 s)
    result = shim(
        {
            "url": f"ws://127.0.0.1:{setup.gateway.port}/raw",
            "protocols": ["binary"],
            "headers": {"Origin": setup.nginx.origin, "Cookie": f"tg={brief}"},
            "holdMs": 10000,
        },
        timeout=30,
    )
    assert result["open"], result
    assert result["close"] == {"code": 1008, "reason": "credentials expired", "wasClean": True}
