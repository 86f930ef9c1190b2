"""
XMPP through the gateway (RFC 7395 on the WebSocket, RFC 6120 on TCP) to
two real prosody servers started here: one with plaintext c2s, one that
requires STARTTLS (a self-signed certificate, which the gateway trusts).  xmpp.js and StanzaJS (Node) log in through the gateway with
SCRAM, bind, and exchange messages with a slixmpp client logged in
directly over TCP; identity binding refuses a gateway user who logs in to
XMPP as someone else; hostile XML gets its stream error and close code.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from argon2 import PasswordHasher

from tests.integration.certs import self_signed
from tests.integration.harness import REPO, Gateway, expect_close, free_port, ws_connect
from tests.integration.prosody import DOMAIN, USERS, Prosody

PEERS = REPO / "tests" / "peers"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
GATEWAY_USERS = {"alice": "alice-gw-pw-1", "carol": "carol-gw-pw-2"}
MAX_STANZA = 4096
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{GATEWAY_USERS[user]}".encode()).decode()


class Setup:
    def __init__(self, gateway: Gateway, servers: dict[str, Prosody], ca: Path) -> None:
        self.gateway = gateway
        self.servers = servers
        self.ca = ca
        self.origin = f"http://127.0.0.1:{gateway.port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("xmpp")
    # the STARTTLS server's certificate is self-signed; the gateway (and the
    # TCP client) trust that certificate itself
    cert, key = self_signed(work, DOMAIN, [DOMAIN])
    servers: dict[str, Prosody] = {}
    gateway: Gateway | None = None
    try:
        for name, tls in (("plain", None), ("tls", (cert, key))):
            state = work / name
            state.mkdir()
            servers[name] = Prosody(state, tls).start()
        users = work / "users"
        users.write_text("".join(f"{u}:{FAST.hash(p)}\n" for u, p in GATEWAY_USERS.items()))
        port = free_port()
        common = f"""
adapter = "xmpp"
realm = "staff"
subprotocols = ["xmpp"]
origins = ["http://127.0.0.1:{port}"]
"""
        config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[services.plain]
path = "/xmpp-plain"
upstream = "tcp:127.0.0.1:{servers["plain"].c2s_port}"
{common}
[services.plain.xmpp]
domain = "{DOMAIN}"
backend_tls = "off"
bind_identity = true
max_stanza_size = {MAX_STANZA}

[services.tls]
path = "/xmpp-tls"
upstream = "tcp:127.0.0.1:{servers["tls"].c2s_port}"
{common}
[services.tls.xmpp]
domain = "{DOMAIN}"
backend_tls = "required"
backend_ca = "{cert}"
bind_identity = true
"""
        gw_dir = work / "gw"
        gw_dir.mkdir()
        gateway = Gateway(gw_dir, config, port).start()
        yield Setup(gateway, servers, cert)
    finally:
        if gateway is not None:
            gateway.stop()
        for server in servers.values():
            server.stop()


def node() -> str:
    path = shutil.which("node")
    if path is None or not (PEERS / "node_modules" / "@xmpp" / "client").exists():
        raise RuntimeError("Node or @xmpp/client missing: run tests/peers/install.sh (make test does)")
    return path


def web_client(
    setup: Setup, lib: str, instance: str, gateway_user: str, xmpp_user: str, **cfg: Any
) -> dict[str, Any]:
    cfg.update(
        lib=lib,
        url=setup.gateway.url(f"/xmpp-{instance}"),
        domain=DOMAIN,
        username=xmpp_user,
        password=USERS[xmpp_user],
        headers={"Origin": setup.origin, "Authorization": basic(gateway_user)},
    )
    proc = subprocess.run(
        [node(), str(PEERS / "xmpp_client.mjs"), json.dumps(cfg)], capture_output=True, timeout=40, cwd=PEERS
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = lines[-1]
    return result


class TcpPeer:
    """
    slixmpp logged in directly to prosody over TCP (STARTTLS on the TLS
    instance).
    """

    def __init__(self, server: Prosody, user: str, ca: Path | None) -> None:
        cfg = {
            "host": "127.0.0.1",
            "port": server.c2s_port,
            "jid": f"{user}@{DOMAIN}/tcp",
            "password": USERS[user],
            "ca": str(ca) if ca else None,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(PEERS / "xmpp_tcp_peer.py"), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: list[dict[str, Any]] = []
        self._timer = threading.Timer(60, self.proc.kill)
        self._timer.start()
        self.expect("online")

    def expect(self, kind: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == kind:
                return event
        raise AssertionError(f"the TCP peer ended without {kind}: {self.events}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            self._timer.cancel()
            self.proc.kill()


@pytest.mark.parametrize("instance", ["plain", "tls"])
@pytest.mark.parametrize("lib", ["xmppjs", "stanza"])
def test_web_client_logs_in_binds_and_chats_with_a_tcp_client(setup: Setup, lib: str, instance: str) -> None:
    peer = TcpPeer(setup.servers[instance], "bob", setup.ca if instance == "tls" else None)
    try:
        body = f"hello from {lib} over {instance}"
        result = web_client(
            setup, lib, instance, "alice", "alice", peer=f"bob@{DOMAIN}", body=body, expectReply=True
        )
        got = peer.expect("message")
    finally:
        peer.close()
    assert result["protocol"] == "xmpp"
    assert result["errors"] == []
    assert result["online"] and str(result["jid"]).startswith(f"alice@{DOMAIN}/")
    assert {"from": f"bob@{DOMAIN}", "body": f"pong: {body}"} in result["messages"]
    assert got == {"event": "message", "frm": f"alice@{DOMAIN}", "body": body}
    assert result["wsClose"] == 1000
    auth = setup.gateway.wait_event(event="xmpp_auth", principal="alice", identity="alice")
    assert auth["mechanism"].startswith("SCRAM-SHA-")
    if instance == "tls":
        setup.gateway.wait_event(event="xmpp_starttls")
        assert "Stream encrypted" in setup.servers["tls"].output()


@pytest.mark.parametrize("lib", ["xmppjs", "stanza"])
def test_identity_binding_refuses_another_xmpp_user(setup: Setup, lib: str) -> None:
    result = web_client(setup, lib, "plain", "alice", "carol")
    assert not result["online"], json.dumps(result)
    assert "policy-violation" in result["errors"], json.dumps(result)
    assert result["wsClose"] == 1008
    event = setup.gateway.wait_event(event="xmpp_refused", condition="policy-violation")
    assert "carol" in event["reason"] and event["principal"] == "alice"
    # the claim never reached the server
    assert f"carol@{DOMAIN}" not in setup.servers["plain"].output()


def open_stream(setup: Setup) -> websocket.WebSocket:
    ws = ws_connect(
        setup.gateway.url("/xmpp-plain"),
        subprotocols=["xmpp"],
        header=[f"Authorization: {basic('alice')}"],
        origin=setup.origin,
    )
    ws.send(f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>")
    assert ws.recv().startswith("<open ")
    assert "<stream:features" in ws.recv()
    return ws


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    + "]><lolz>&lol9;</lolz>"
)


@pytest.mark.parametrize(
    ("payload", "condition", "code"),
    [
        ("<message to='bob@localhost'><body>hi</message>", "not-well-formed", 1007),
        (LAUGHS, "restricted-xml", 1008),
        ("<message><!-- hidden --></message>", "restricted-xml", 1008),
        (
            "<message to='bob@localhost'><body>" + "x" * MAX_STANZA + "</body></message>",
            "policy-violation",
            1009,
        ),
        ("<presence/><presence/>", "not-well-formed", 1007),
        ("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", "unsupported-feature", 1002),
        (b"\x00\x01binary", "unsupported-stanza-type", 1003),
    ],
    ids=["malformed", "billion-laughs", "comment", "oversize", "two-roots", "starttls", "binary"],
)
def test_hostile_input_gets_a_stream_error_and_close_code(
    setup: Setup, payload: str | bytes, condition: str, code: int
) -> None:
    ws = open_stream(setup)
    if isinstance(payload, bytes):
        ws.send_binary(payload)
    else:
        ws.send(payload)
    error = ws.recv()
    assert error.startswith("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"), error
    assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in error
    assert ws.recv() == f"<close xmlns='{FRAMING}'/>"
    assert expect_close(ws)[0] == code
    ws.close()


def test_a_wrong_domain_is_refused(setup: Setup) -> None:
    ws = ws_connect(
        setup.gateway.url("/xmpp-plain"),
        subprotocols=["xmpp"],
        header=[f"Authorization: {basic('alice')}"],
        origin=setup.origin,
    )
    ws.send(f"<open xmlns='{FRAMING}' to='elsewhere.example' version='1.0'/>")
    assert "<host-unknown " in ws.recv()
    assert ws.recv() == f"<close xmlns='{FRAMING}'/>"
    assert expect_close(ws)[0] == 1008
