"""
STOMP through the gateway to a real RabbitMQ (rabbitmq_stomp on its plain
TCP port), with real clients: stomp.js (@stomp/stompjs + ws, in Node) and
stomp.py over WebSocket.  Between the gateway and the broker sits a tap
that keeps what the broker was sent, so "never forwarded" is checked on
the broker's side of the wire, and the broker itself is asked who logged
in and which queues exist.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stomp
from argon2 import PasswordHasher

from tests.integration.harness import REPO, Gateway, TcpTap, expect_close, free_port, wait_for, ws_connect
from tests.integration.rabbitmq import INJECTED_LOGIN, INJECTED_PASSCODE, RabbitMQ

PEERS = REPO / "tests" / "peers"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ALICE = ("alice", "alice-Secret-pw-1")  # role traders: /topic/public.* only
OPS = ("olga", "olga-Secret-pw-2")  # role ops: every destination


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


class Setup:
    def __init__(self, gateway: Gateway, tap: TcpTap, broker: RabbitMQ) -> None:
        self.gateway = gateway
        self.tap = tap
        self.broker = broker
        self.origin = f"http://127.0.0.1:{gateway.port}"


@pytest.fixture(scope="module")
def setup(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("stomp")
    users = work / "users"
    users.write_text(f"{ALICE[0]}:{FAST.hash(ALICE[1])}:traders\n{OPS[0]}:{FAST.hash(OPS[1])}:ops\n")
    tap = TcpTap(rabbitmq.stomp_port)
    port = free_port()
    service = f"""
adapter = "stomp"
realm = "staff"
policy = "broker"
upstream = "tcp:127.0.0.1:{tap.port}"
subprotocols = ["v12.stomp", "v11.stomp", "v10.stomp"]
allow_no_subprotocol = true
origins = ["http://127.0.0.1:{port}"]
# gateway keepalive pings every second, beside the STOMP heart-beats
limits = {{ ping_interval = 1, ping_timeout = 5 }}
"""
    config = f"""
[gateway]
listen = ["tcp:{port}:interface=127.0.0.1"]

[realms.staff]
[[realms.staff.modules]]
module = "password_file"
flag = "required"
options = {{ path = "{users}" }}

[policies.broker]
[[policies.broker.rules]]
roles = ["*"]
actions = ["connect"]
resources = ["/"]
[[policies.broker.rules]]
roles = ["traders"]
actions = ["subscribe", "send"]
resources = ["/topic/public.*"]
[[policies.broker.rules]]
roles = ["ops"]
actions = ["subscribe", "send"]
resources = ["*"]

[services.stomp]
path = "/stomp"
{service}

[services.injected]
path = "/stomp-injected"
{service}
[[services.injected.stomp.credentials]]
roles = ["traders"]
login = "{INJECTED_LOGIN}"
passcode = "{INJECTED_PASSCODE}"
"""
    gw_dir = work / "gw"
    gw_dir.mkdir()
    gateway = Gateway(gw_dir, config, port).start()
    yield Setup(gateway, tap, rabbitmq)
    gateway.stop()
    tap.close()


def node() -> str:
    path = shutil.which("node")
    if path is None or not (PEERS / "node_modules" / "@stomp" / "stompjs").exists():
        raise RuntimeError("Node or @stomp/stompjs missing: run tests/peers/install.sh (make test does)")
    return path


def stompjs(setup: Setup, path: str = "/stomp", user: tuple[str, str] = ALICE, **cfg: Any) -> dict[str, Any]:
    """
    Run the stomp.js client to the end; its result object.
    """
    cfg.setdefault("headers", {"Origin": setup.origin, "Authorization": basic(user)})
    cfg["url"] = setup.gateway.url(path)
    proc = subprocess.run(
        [node(), str(PEERS / "stomp_client.mjs"), json.dumps(cfg)],
        capture_output=True,
        timeout=40,
        cwd=PEERS,
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr)
    result: dict[str, Any] = lines[-1]
    return result


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_stompjs_subscribes_sends_and_receives_with_receipts_and_heartbeats(setup: Setup) -> None:
    topic = unique("/topic/public.")
    result = stompjs(
        setup,
        subscribe=[topic],
        send={"destination": topic, "body": "hello stomp through the gateway", "receipt": "r-1"},
        heartbeat=500,
        holdMs=3500,
    )
    assert result["protocol"] == "v12.stomp"
    assert result["connected"]["version"] == "1.2"
    # RabbitMQ agrees to heart-beats both ways (it rounds to whole seconds)
    assert all(int(ms) > 0 for ms in result["connected"]["heartBeat"].split(","))
    assert result["messages"] == [{"destination": topic, "body": "hello stomp through the gateway"}]
    assert result["receipts"] == ["r-1"]
    assert result["errors"] == []
    # the broker's heart-beats crossed the gateway while the session idled
    # (RabbitMQ sends one a second), and stomp.js's kept the broker happy
    assert result["heartbeatsIn"] >= 2
    assert result["close"]["code"] == 1000
    event = setup.gateway.wait_event(event="tunnel_close", principal="alice", subprotocol="v12.stomp")
    assert event["code"] == 1000


def test_stompjs_lower_versions(setup: Setup) -> None:
    topic = unique("/topic/public.")
    result = stompjs(
        setup,
        protocols=["v11.stomp", "v10.stomp"],
        subscribe=[topic],
        send={"destination": topic, "body": "one-one", "receipt": "r-2"},
    )
    assert result["protocol"] == "v11.stomp"
    assert result["connected"]["version"] == "1.1"
    assert result["messages"] == [{"destination": topic, "body": "one-one"}]


def test_denied_subscription_gets_error_and_the_broker_never_sees_it(setup: Setup) -> None:
    allowed = unique("/topic/public.")
    secret = unique("/queue/secret")
    result = stompjs(setup, subscribe=[allowed, secret])
    assert result["connected"]["version"] == "1.2"
    assert result["errors"] == [{"message": f"not authorized to subscribe to {secret}", "receiptId": None}]
    assert result["close"]["code"] == 1008
    # the allowed SUBSCRIBE before it reached the broker; the refused one did not
    wire = setup.tap.received()
    assert allowed.encode() in wire
    assert secret.encode() not in wire
    assert secret.removeprefix("/queue/") not in setup.broker.queues()
    event = setup.gateway.wait_event(event="authorization", decision="deny", resource=secret)
    assert event["principal"] == "alice" and event["action"] == "subscribe"


def test_denied_send_with_receipt(setup: Setup) -> None:
    secret = unique("/queue/secret")
    result = stompjs(setup, send={"destination": secret, "body": "leak", "receipt": "r-9"})
    assert result["errors"] == [{"message": f"not authorized to send to {secret}", "receiptId": "r-9"}]
    assert result["close"]["code"] == 1008
    assert secret.encode() not in setup.tap.received()
    assert secret.removeprefix("/queue/") not in setup.broker.queues()


def test_other_roles_reach_other_destinations(setup: Setup) -> None:
    queue = unique("/queue/secret")
    result = stompjs(
        setup, user=OPS, subscribe=[queue], send={"destination": queue, "body": "for ops", "receipt": "r-3"}
    )
    assert result["messages"] == [{"destination": queue, "body": "for ops"}]


def test_injected_credentials(setup: Setup) -> None:
    """
    The browser sends no broker password (here: a wrong one); the broker
    sees the account configured for the user's role.
    """
    topic = unique("/topic/public.")
    cfg = {
        "url": setup.gateway.url("/stomp-injected"),
        "headers": {"Origin": setup.origin, "Authorization": basic(ALICE)},
        "connectHeaders": {"login": "mallory", "passcode": "not-the-password"},
        "subscribe": [topic],
        "send": {"destination": topic, "body": "injected", "receipt": "r-4"},
        "waitStdin": True,
    }
    proc = subprocess.Popen(
        [node(), str(PEERS / "stomp_client.mjs"), json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=PEERS,
    )
    assert proc.stdout is not None and proc.stdin is not None
    timer = threading.Timer(40, proc.kill)
    timer.start()
    try:
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] in ("exchanged", "result", "timeout"):
                break
        assert events[-1]["event"] == "exchanged", events
        # while the session is open, the broker names who it logged in
        assert INJECTED_LOGIN in wait_for(setup.broker.stomp_logins, 20, "the broker to list the session")
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        proc.wait(20)
    finally:
        timer.cancel()
        proc.kill()
    assert result["messages"] == [{"destination": topic, "body": "injected"}]
    assert result["close"]["code"] == 1000
    wire = setup.tap.received()
    assert f"login:{INJECTED_LOGIN}\n".encode() in wire
    assert b"mallory" not in wire and b"not-the-password" not in wire
    event = setup.gateway.wait_event(event="stomp_connect", injected=True)
    assert event["login"] == INJECTED_LOGIN
    assert INJECTED_PASSCODE not in setup.gateway.output()


class Collector(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.receipts: list[str] = []
        self.errors: list[str] = []
        self.heartbeats = 0

    def on_message(self, frame: Any) -> None:
        self.messages.append((frame.headers["destination"], frame.body))

    def on_receipt(self, frame: Any) -> None:
        self.receipts.append(frame.headers["receipt-id"])

    def on_error(self, frame: Any) -> None:
        self.errors.append(frame.headers.get("message", ""))

    def on_heartbeat(self) -> None:
        self.heartbeats += 1


@pytest.mark.parametrize("subprotocol", ["v12.stomp", None])
def test_python_client_over_websocket(setup: Setup, subprotocol: str | None) -> None:
    # websocket-client sends Origin http://127.0.0.1:PORT itself, as a page there would
    header = {"Authorization": basic(ALICE)}
    if subprotocol is not None:
        header["Sec-WebSocket-Protocol"] = subprotocol
    conn = stomp.WSStompConnection(
        [("127.0.0.1", setup.gateway.port)],
        ws_path="/stomp",
        vhost="/",
        header=header,
        heartbeats=(500, 500),
        timeout=10,
        reconnect_attempts_max=1,
    )
    listener = Collector()
    conn.set_listener("collector", listener)
    topic = unique("/topic/public.")
    conn.connect("guest", "guest", wait=True)
    try:
        conn.subscribe(topic, id="s-1", ack="auto")
        conn.send(topic, "from stomp.py", receipt="r-5")
        wait_for(lambda: listener.messages and "r-5" in listener.receipts, 10, "the message and receipt")
        wait_for(lambda: listener.heartbeats >= 2, 10, "broker heart-beats")
    finally:
        conn.disconnect(receipt="bye")
    assert listener.messages == [(topic, "from stomp.py")]
    assert listener.errors == []


def test_malformed_and_oversized_frames_over_a_real_websocket(setup: Setup) -> None:
    header = [f"Authorization: {basic(ALICE)}"]
    for payload, code, message in [
        (b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00SEND\nbroken header\n\nx\x00", 1002, "no colon"),
        (b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00FROB\n\n\x00", 1002, "unknown or unexpected command"),
        (b"SEND\ndestination:/topic/public.a\n\nx\x00", 1002, "the first frame must be CONNECT"),
        (
            b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00SEND\ndestination:/topic/public.a\ncontent-length:9999999\n\n",
            1009,
            "body larger than",
        ),
    ]:
        ws = ws_connect(
            setup.gateway.url("/stomp"), subprotocols=["v12.stomp"], header=header, origin=setup.origin
        )
        ws.send_binary(payload)
        texts = []
        while True:
            received = ws.recv()
            if isinstance(received, str) and received.startswith("ERROR"):
                texts.append(received)
                break
        assert "message:" in texts[0] and message in texts[0], texts
        assert expect_close(ws)[0] == code
        ws.close()


def test_a_path_with_no_credentials_is_refused_before_the_broker(setup: Setup) -> None:
    before = len(setup.tap.sent)
    result = stompjs(setup, headers={"Origin": setup.origin}, subscribe=["/topic/public.x"])
    assert result["close"] == {"httpStatus": 401}
    assert len(setup.tap.sent) == before
