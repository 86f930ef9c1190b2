"""
A live reload with real tunnels open: raw (an echo server), STOMP
(RabbitMQ), XMPP (prosody), VNC (x11vnc) and a TLS listener.  SIGHUP
with a configuration that adds a service, removes others, changes a
realm's roles, a policy's destinations and the listener's certificate:
each tunnel still allowed keeps flowing (the same sha256, every message),
each that is not is closed with its code and its protocol's error within a
second, a new TLS handshake sees the new certificate, and a configuration
that does not load changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from argon2 import PasswordHasher

from tests.integration.certs import CA
from tests.integration.harness import (
    EchoServer,
    Gateway,
    expect_close,
    free_port,
    handshake_status,
    json_lines,
    ws_connect,
)
from tests.integration.prosody import DOMAIN, USERS, Prosody
from tests.integration.rabbitmq import RabbitMQ
from tests.integration.vnc import Desktop
from tunnelgw.audit import AUDIT_EVENTS

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


def render(s: Setup, *, new: bool) -> str:
    """The gateway's configuration before the reload, or after it."""
    cert, key = s.certs[1 if new else 0]
    ops_roles = '["viewer"]' if new else '["ops"]'
    destinations = '["/queue/keep-*", "/queue/new"]' if new else '["/queue/keep-*", "/queue/old"]'

    def raw(name: str, realm: str = "public", extra: str = "") -> str:
        return f"""
[services.{name}]
path = "/{name}"
adapter = "raw"
realm = "{realm}"
upstream = "tcp:127.0.0.1:{s.echo.port}"
subprotocols = ["binary"]
allow_missing_origin = true
{extra}
"""

    def stomp(name: str) -> str:
        return f"""
[services.{name}]
path = "/{name}"
adapter = "stomp"
realm = "staff"
policy = "broker"
upstream = "tcp:127.0.0.1:{s.broker.stomp_port}"
subprotocols = ["v12.stomp"]
allow_missing_origin = true
"""

    def xmpp(name: str, realm: str, extra: str = "") -> str:
        return f"""
[services.{name}]
path = "/{name}"
adapter = "xmpp"
realm = "{realm}"
upstream = "tcp:127.0.0.1:{s.prosody.c2s_port}"
subprotocols = ["xmpp"]
allow_missing_origin = true
{extra}
[services.{name}.xmpp]
domain = "{DOMAIN}"
backend_tls = "off"
"""

    return f"""
[gateway]
listen = ["tcp:{s.port}:interface=127.0.0.1"]
[[gateway.tls_listeners]]
endpoint = "tcp:{s.tls_port}:interface=127.0.0.1"
certificate = "{cert}"
private_key = "{key}"

[audit]
path = "{s.work / "audit.jsonl"}"

[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{s.users}" }}

[realms.ops]
[[realms.ops.modules]]
module = "anonymous"
flag = "required"
options = {{ roles = {ops_roles} }}

[policies.broker]
[[policies.broker.rules]]
roles = ["*"]
actions = ["connect"]
resources = ["/"]
[[policies.broker.rules]]
roles = ["traders"]
actions = ["send", "subscribe"]
resources = {destinations}

[policies.desktop]
[[policies.desktop.rules]]
roles = ["*"]
actions = ["input"]
resources = ["*"]

{raw("raw")}
{raw("ops", "ops", 'require_roles = ["ops"]')}
{"" if new else raw("gone")}
{raw("added") if new else ""}
{stomp("stomp")}
{"" if new else stomp("stomp-gone")}
{xmpp("xmpp", "public")}
{xmpp("xmpp-ops", "ops", 'require_roles = ["ops"]')}

[services.vnc]
path = "/vnc"
adapter = "rfb"
realm = "public"
policy = "desktop"
upstream = "tcp:127.0.0.1:{s.desktop.port}"
subprotocols = ["binary"]
allow_missing_origin = true
[services.vnc.rfb]
security_types = ["none"]
"""


class Setup:
    def __init__(self, work: Path, broker: RabbitMQ) -> None:
        self.work = work
        self.broker = broker
        self.port = free_port()
        self.tls_port = free_port()
        self.users = work / "users"
        self.users.write_text(f"alice:{FAST.hash('alice-pw')}:traders\n")
        ca = CA(work)
        self.ca = ca
        self.certs = [ca.issue("old", ["127.0.0.1"]), ca.issue("new", ["127.0.0.1"])]
        self.echo = EchoServer()
        (work / "prosody").mkdir()
        self.prosody = Prosody(work / "prosody").start()
        self.desktop = Desktop(work / "desktop").start()
        gw = work / "gw"
        gw.mkdir()
        self.gateway = Gateway(gw, render(self, new=False), self.port)

    def reload(self, config: str) -> float:
        """Write C{config}, send SIGHUP; the time it was sent."""
        self.gateway.config_path.write_text(config)
        assert self.gateway.proc is not None
        sent = time.monotonic()
        os.kill(self.gateway.proc.pid, signal.SIGHUP)
        return sent

    def close(self) -> None:
        self.gateway.stop()
        self.echo.close()
        self.prosody.stop()
        self.desktop.stop()


@pytest.fixture(scope="module")
def setup(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    s = Setup(tmp_path_factory.mktemp("reload"), rabbitmq)
    try:
        s.gateway.start()
        yield s
    finally:
        s.close()


# -- clients ---------------------------------------------------------------------


class Stomp:
    def __init__(self, s: Setup, path: str) -> None:
        auth = base64.b64encode(b"alice:alice-pw").decode()
        self.ws = ws_connect(
            s.gateway.url(path), subprotocols=["v12.stomp"], header=[f"Authorization: Basic {auth}"]
        )
        self.buffer = b""
        self.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"})
        assert self.frame()[0] == "CONNECTED"

    def send(self, command: str, headers: dict[str, str], body: str = "") -> None:
        head = "".join(f"{k}:{v}\n" for k, v in headers.items())
        self.ws.send(f"{command}\n{head}\n{body}\x00")

    def frame(self) -> tuple[str, dict[str, str], str]:
        while b"\x00" not in self.buffer.lstrip(b"\r\n"):
            message = self.ws.recv()
            self.buffer += message.encode() if isinstance(message, str) else message
        self.buffer = self.buffer.lstrip(b"\r\n")
        raw, self.buffer = self.buffer.split(b"\x00", 1)
        head, _, body = raw.decode().partition("\n\n")
        command, *lines = head.split("\n")
        return command, dict(line.split(":", 1) for line in lines), body


def xmpp_login(s: Setup, path: str, user: str = "alice") -> websocket.WebSocket:
    ws = ws_connect(s.gateway.url(path), subprotocols=["xmpp"])
    opening = f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>"
    ws.send(opening)
    assert ws.recv().startswith("<open ")
    assert "PLAIN" in ws.recv()
    plain = base64.b64encode(f"\0{user}\0{USERS[user]}".encode()).decode()
    ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
    assert "<success" in ws.recv()
    ws.send(opening)
    assert ws.recv().startswith("<open ")
    assert "bind" in ws.recv()
    ws.send(
        "<iq type='set' id='b1' xmlns='jabber:client'>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>"
    )
    assert "<jid>" in ws.recv()
    return ws


def xmpp_echo(ws: websocket.WebSocket, texts: list[str], user: str = "alice") -> list[str]:
    """Messages to oneself and back: their bodies, in the order received."""
    for text in texts:
        ws.send(
            f"<message xmlns='jabber:client' to='{user}@{DOMAIN}/r' type='chat'><body>{text}</body></message>"
        )
    got: list[str] = []
    while len(got) < len(texts):
        message = ws.recv()
        if "<body>" in message:
            got.append(message.split("<body>", 1)[1].split("</body>", 1)[0])
    return got


def vnc_session(s: Setup) -> RfbReader:
    ws = ws_connect(s.gateway.url("/vnc"), subprotocols=["binary"])
    assert ws.recv() == b"RFB 003.008\n"
    ws.send_binary(b"RFB 003.008\n")
    types = ws.recv()
    assert 1 in types[1:], types
    ws.send_binary(b"\x01")
    assert ws.recv() == b"\x00\x00\x00\x00"
    ws.send_binary(b"\x01")  # ClientInit, shared
    reader = RfbReader(ws)
    name_length = struct.unpack("!I", reader.take(24)[20:24])[0]
    reader.take(name_length)
    return reader


class RfbReader:
    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.buffer = b""

    def take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = self.ws.recv()
            assert isinstance(message, bytes)
            self.buffer += message
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


def vnc_update(reader: RfbReader) -> None:
    """A 16x16 FramebufferUpdateRequest gets its FramebufferUpdate, whole (raw, 32 bpp)."""
    reader.ws.send_binary(struct.pack("!BBHHHH", 3, 0, 0, 0, 16, 16))
    kind, _, rects = struct.unpack("!BBH", reader.take(4))
    assert kind == 0
    for _ in range(rects):
        _, _, w, h, encoding = struct.unpack("!HHHHi", reader.take(12))
        assert encoding == 0
        reader.take(w * h * 4)


def served_certificate(port: int) -> bytes:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return ssl.PEM_cert_to_DER_cert(pem)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def closed_within(ws: websocket.WebSocket, since: float) -> tuple[int, float, list[Any]]:
    """Read to the close frame: its code, the seconds since C{since}, what came before."""
    before: list[Any] = []
    ws.settimeout(5)
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0]
            return code, time.monotonic() - since, before
        before.append(frame.data)


# -- the test -------------------------------------------------------------------


def test_a_reload_with_tunnels_open(setup: Setup) -> None:
    s = setup
    gw = s.gateway
    context = ssl.create_default_context(cafile=str(s.ca.cert_path))
    assert served_certificate(s.tls_port) == der(s.certs[0][0])

    # open: one tunnel each way the reload will treat
    raw = ws_connect(gw.url("/raw"), subprotocols=["binary"])
    gone = ws_connect(gw.url("/gone"), subprotocols=["binary"])
    ops = ws_connect(gw.url("/ops"), subprotocols=["binary"])
    tls = ws_connect(
        f"wss://127.0.0.1:{s.tls_port}/raw", subprotocols=["binary"], sslopt={"context": context}
    )
    queue = f"/queue/keep-{uuid.uuid4().hex}"
    keep = Stomp(s, "/stomp")
    keep.send("SUBSCRIBE", {"id": "0", "destination": queue, "ack": "auto"})
    stomp_gone = Stomp(s, "/stomp-gone")
    chat = xmpp_login(s, "/xmpp")
    chat_ops = xmpp_login(s, "/xmpp-ops", "bob")
    vnc = vnc_session(s)
    vnc_update(vnc)
    assert xmpp_echo(chat, ["before"]) == ["before"]

    # raw bytes flowing the whole time, through both reloads
    data = os.urandom(8 * 1024 * 1024)
    echoed = bytearray()

    def stream() -> None:
        reader = threading.Thread(target=lambda: echoed.extend(_read(raw, len(data))), daemon=True)
        reader.start()
        for offset in range(0, len(data), 16384):
            raw.send_binary(data[offset : offset + 16384])
            time.sleep(0.0005)  # spread over the reloads: a paced sender, not a wait
        reader.join(60)

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()

    # a configuration that does not load changes nothing
    s.reload("[gateway]\nlisten = 7\n")
    invalid = gw.wait_event(event="reload", outcome="invalid")
    assert "gateway.listen" in invalid["reason"]
    assert handshake_status(gw.url("/gone"), subprotocols=["binary"]) == (101, "")

    for i in range(3):
        keep.send("SEND", {"destination": queue, "content-type": "text/plain"}, f"m{i}")
    sent = s.reload(render(s, new=True))
    applied = gw.wait_event(event="reload", outcome="applied")
    assert applied["opened"] == [] and applied["stopped"] == []
    assert applied["renewed"] == [f"tcp:{s.tls_port}:interface=127.0.0.1"]

    # what is no longer allowed: closed, with its code and protocol error, within a second
    code, took, _ = closed_within(gone, sent)
    assert (code, took < 1.0) == (1001, True), took
    code, took, _ = closed_within(ops, sent)
    assert (code, took < 1.0) == (1008, True), took
    code, took, before = closed_within(stomp_gone.ws, sent)
    assert (code, took < 1.0) == (1001, True), took
    assert any(b"ERROR\nmessage:configuration changed\\c service removed" in m for m in before), before
    code, took, before = closed_within(chat_ops, sent)
    assert (code, took < 1.0) == (1008, True), took
    assert any(b"<policy-violation" in m for m in before), before
    changes = {e["service"]: e["change"] for e in gw.events() if e.get("event") == "tunnel_rejudged"}
    assert changes == {
        "gone": "service gone removed",
        "stomp-gone": "service stomp-gone removed",
        "ops": "service ops: roles",
        "xmpp-ops": "service xmpp-ops: roles",
    }
    # the audit stream has them too, with its schema, and the reloads
    audit = json_lines(s.work / "audit.jsonl")
    assert {e["schema"] for e in audit} == {"tunnelgw.audit/1"}
    assert {e["service"]: e["change"] for e in audit if e["event"] == "tunnel_rejudged"} == changes
    assert [e["outcome"] for e in audit if e["event"] == "reload"] == ["invalid", "applied"]
    assert not [e for e in audit if e["event"] not in AUDIT_EVENTS]

    # what is still allowed goes on: every byte, every message
    streaming.join(120)
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()
    for i in range(3, 6):
        keep.send("SEND", {"destination": queue, "content-type": "text/plain"}, f"m{i}")
    bodies = [keep.frame()[2] for _ in range(6)]
    assert bodies == [f"m{i}" for i in range(6)]
    assert xmpp_echo(chat, ["after-1", "after-2"]) == ["after-1", "after-2"]
    vnc_update(vnc)
    tls.send_binary(b"still here")
    assert tls.recv() == b"still here"

    # new connections see the new configuration
    assert served_certificate(s.tls_port) == der(s.certs[1][0])
    assert handshake_status(gw.url("/gone"), subprotocols=["binary"])[0] == 404
    added = ws_connect(gw.url("/added"), subprotocols=["binary"])
    added.send_binary(b"new")
    assert added.recv() == b"new"
    assert handshake_status(gw.url("/ops"), subprotocols=["binary"])[0] == 403

    # the policy's destinations changed: the open session is held to the new ones
    keep.send("SEND", {"destination": "/queue/old", "content-type": "text/plain"}, "x")
    assert keep.frame()[0] == "ERROR"
    assert expect_close(keep.ws)[0] == 1008
    for ws in (raw, tls, chat, vnc.ws, added):
        ws.close()


def _read(ws: websocket.WebSocket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        got.extend(ws.recv())
    return bytes(got)


def test_a_new_listener_that_cannot_listen_changes_nothing(setup: Setup) -> None:
    s = setup
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        config = (
            render(s, new=True)
            .replace(
                f'listen = ["tcp:{s.port}:interface=127.0.0.1"]',
                f'listen = ["tcp:{s.port}:interface=127.0.0.1", "tcp:{port}:interface=127.0.0.1"]',
            )
            .replace('path = "/added"', 'path = "/added-again"')
        )
        s.reload(config)
        failed = s.gateway.wait_event(event="reload", outcome="failed")
        assert f"cannot listen on tcp:{port}" in failed["reason"]
        assert handshake_status(s.gateway.url("/added-again"), subprotocols=["binary"])[0] == 404
    finally:
        taken.close()
