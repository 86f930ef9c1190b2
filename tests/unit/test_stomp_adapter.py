"""
The STOMP adapter in memory, inside a real Tunnel with string transports:
frames pass re-serialized, the policy decides CONNECT/SEND/SUBSCRIBE, a
refused frame never reaches the broker and gets an ERROR, credentials are
injected, and broker frames reach the client whole.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.adapters.stomp.adapter import StompOptions
from tunnelgw.adapters.stomp.factory import StompAdapterFactory
from tunnelgw.adapters.stomp.frames import HEARTBEAT, SERVER_COMMANDS, Frame, serialize
from tunnelgw.adapters.stomp.parser import Parser
from tunnelgw.config.loader import loads
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.security import Subject
from tunnelgw.security.policy import RulesPolicyFactory
from tunnelgw.testing import AdapterHarness, public_realm
from tunnelgw.tunnel.relay import Tunnel

POLICY = RulesPolicyFactory().parse_config(
    {
        "rules": [
            {"roles": ["*"], "actions": ["connect"], "resources": ["/"]},
            {"roles": ["traders"], "actions": ["subscribe", "send"], "resources": ["/topic/public.*"]},
        ]
    },
    "policies.p",
)

CONNECT = b"CONNECT\nlogin:guest\npasscode:guest\naccept-version:1.2,1.1,1.0\nheart-beat:0,0\n\n\x00"
CONNECTED = b"CONNECTED\nserver:RabbitMQ/3.10.8\nsession:s-1\nheart-beat:0,0\nversion:1.2\n\n\x00\n"


def options(**table: Any) -> StompOptions:
    return StompAdapterFactory().parse_options(table, "services.s.stomp")


class StompAdapterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make(
        self,
        opts: StompOptions | None = None,
        subprotocol: str | None = "v12.stomp",
        subject: Subject | None = None,
    ) -> Tunnel:
        service = ServiceConfig(
            name="broker",
            path="/stomp",
            adapter="stomp",
            upstream="tcp:127.0.0.1:61613",
            subprotocols=("v12.stomp", "v11.stomp", "v10.stomp"),
            policy="p",
            adapter_options=opts or StompOptions(),
        )
        harness = AdapterHarness(
            StompAdapterFactory(), service, subject or Subject.of("alice", ["traders"]), subprotocol, POLICY
        )
        self.client, self.backend, self.wire, self.tunnel = (
            harness.client,
            harness.backend,
            harness.wire,
            harness.tunnel,
        )
        return self.tunnel

    def broker_frames(self) -> list[Any]:
        return list(Parser(limits=None).feed(self.wire.value()))

    def connected(self, **kw: Any) -> None:
        self.make(**kw)
        self.tunnel.client_message(CONNECT, False)
        self.backend.dataReceived(CONNECTED)
        self.wire.clear()

    def assert_refused(self, code: int, message: str, receipt: str | None = None) -> None:
        payload, is_binary = self.client.messages[-1]
        self.assertFalse(is_binary)
        (error,) = list(Parser(SERVER_COMMANDS).feed(payload))
        assert isinstance(error, Frame)
        self.assertEqual(error.command, "ERROR")
        self.assertIn(message, error.get("message") or "")
        self.assertEqual(error.get("receipt-id"), receipt)
        self.assertEqual(self.client.closed, (code, error.get("message")))
        self.assertTrue(any(e.get("event") == "stomp_refused" for e in self.events))

    # -- client to broker -------------------------------------------------

    def test_stompjs_session(self) -> None:
        self.make()
        self.tunnel.client_message(CONNECT, False)
        (connect,) = self.broker_frames()
        self.assertEqual(connect.command, "CONNECT")
        self.assertEqual(connect.get("login"), "guest")
        self.assertEqual(connect.get("passcode"), "guest")
        self.assertEqual(connect.get("host"), "/")
        self.backend.dataReceived(CONNECTED)
        self.assertEqual(self.client.messages, [(CONNECTED, False)])
        self.wire.clear()
        sub = b"SUBSCRIBE\nid:sub-0\ndestination:/topic/public.prices\n\n\x00"
        send = b"SEND\ndestination:/topic/public.prices\ncontent-length:5\n\nhello\x00"
        self.tunnel.client_message(sub + send + b"\n", False)
        frames = self.broker_frames()
        self.assertEqual(
            [f.command if isinstance(f, Frame) else f for f in frames], ["SUBSCRIBE", "SEND", HEARTBEAT]
        )
        self.assertEqual(frames[1].body, b"hello")
        self.assertIsNone(self.client.closed)

    def test_split_frames_reach_the_broker_whole(self) -> None:
        self.connected()
        send = b"SEND\ndestination:/topic/public.a\n\nhello\x00"
        for i in range(len(send)):
            self.tunnel.client_message(send[i : i + 1], True)
        (frame,) = self.broker_frames()
        self.assertEqual(frame.body, b"hello")

    def test_denied_subscribe_is_never_forwarded(self) -> None:
        self.connected()
        self.tunnel.client_message(b"SUBSCRIBE\nid:1\ndestination:/queue/secret\nreceipt:r-7\n\n\x00", False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1008, "not authorized to subscribe to /queue/secret", receipt="r-7")
        self.assertTrue(self.wire.disconnecting)

    def test_denied_send_after_allowed_one_in_the_same_message(self) -> None:
        """
        Frames accepted before the refused one are delivered; the refused
        one and everything after it are not.
        """
        self.connected()
        ok = b"SEND\ndestination:/topic/public.a\n\nfine\x00"
        bad = b"SEND\ndestination:/queue/secret\n\nleak\x00"
        self.tunnel.client_message(ok + bad + ok, False)
        frames = self.broker_frames()
        self.assertEqual([f.body for f in frames], [b"fine"])
        self.assert_refused(1008, "not authorized to send to /queue/secret")

    def test_repeated_destination_reaches_the_broker_once(self) -> None:
        """
        The first header is the one authorized, and the only one forwarded:
        a broker that reads the last one cannot be steered elsewhere.
        """
        self.connected()
        self.tunnel.client_message(
            b"SEND\ndestination:/topic/public.a\ndestination:/queue/secret\n\nx\x00", False
        )
        (frame,) = self.broker_frames()
        self.assertEqual([v for k, v in frame.headers if k == "destination"], ["/topic/public.a"])

    def test_connect_must_come_first(self) -> None:
        self.make()
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\n\nx\x00", False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1002, "the first frame must be CONNECT")

    def test_second_connect_refused(self) -> None:
        self.connected()
        self.tunnel.client_message(CONNECT, False)
        self.assert_refused(1002, "CONNECT on a connected session")

    def test_nothing_after_disconnect(self) -> None:
        self.connected()
        self.tunnel.client_message(b"DISCONNECT\nreceipt:bye\n\n\x00", False)
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\n\nx\x00", False)
        self.assertEqual([f.command for f in self.broker_frames()], ["DISCONNECT"])
        self.assert_refused(1002, "SEND after DISCONNECT")

    def test_connect_to_a_virtual_host_the_policy_denies(self) -> None:
        self.make()
        self.tunnel.client_message(CONNECT.replace(b"login:", b"host:private\nlogin:"), False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1008, "not authorized to connect to virtual host private")

    def test_accept_version_limited_by_the_subprotocol(self) -> None:
        self.make(subprotocol="v11.stomp")
        self.tunnel.client_message(CONNECT, False)
        (connect,) = self.broker_frames()
        self.assertEqual(connect.get("accept-version"), "1.0,1.1")

    def test_no_acceptable_version(self) -> None:
        self.make(subprotocol="v10.stomp")
        self.tunnel.client_message(CONNECT.replace(b"1.2,1.1,1.0", b"1.2"), False)
        self.assert_refused(1002, "has no STOMP version up to 1.0")

    def test_malformed_frame(self) -> None:
        self.connected()
        self.tunnel.client_message(b"SEND\nno colon here\n\nx\x00", False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1002, "a header line has no colon")

    def test_a_nul_in_a_header_is_refused_and_nothing_forwarded(self) -> None:
        """
        RabbitMQ reads a NUL in a header value as part of one frame; a
        broker that ends frames at the first NUL would read a second,
        uninspected frame from it: ERROR and 1002, nothing forwarded.
        """
        self.connected()
        self.tunnel.client_message(
            b"SEND\ndestination:/topic/public.a\x00SUBSCRIBE\ndestination:/queue/secret\nid:1\n\nx\x00", False
        )
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1002, "a NUL byte in the frame's command or headers")

    def test_unknown_command(self) -> None:
        self.connected()
        self.tunnel.client_message(b"FROB\n\n\x00", False)
        self.assert_refused(1002, "unknown or unexpected command")

    def test_oversize_body(self) -> None:
        self.connected(opts=options(max_body=16))
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\n\n" + b"x" * 17, False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1009, "body larger than 16 bytes")

    def test_oversize_declared_body_refused_before_it_arrives(self) -> None:
        self.connected(opts=options(max_body=16))
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\ncontent-length:2000000000\n\n", False)
        self.assert_refused(1009, "body larger than 16 bytes")

    def test_too_many_headers(self) -> None:
        self.connected(opts=options(max_headers=3))
        headers = b"".join(b"h%d:v\n" % i for i in range(4))
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\n" + headers + b"\nx\x00", False)
        self.assert_refused(1009, "more than 3 headers")

    def test_subscriptions_bounded(self) -> None:
        self.connected(opts=options(max_subscriptions=2))
        for i in range(2):
            self.tunnel.client_message(b"SUBSCRIBE\nid:%d\ndestination:/topic/public.a\n\n\x00" % i, False)
        self.tunnel.client_message(b"UNSUBSCRIBE\nid:0\n\n\x00", False)
        self.tunnel.client_message(b"SUBSCRIBE\nid:2\ndestination:/topic/public.a\n\n\x00", False)
        self.assertIsNone(self.client.closed)
        self.tunnel.client_message(b"SUBSCRIBE\nid:3\ndestination:/topic/public.a\n\n\x00", False)
        self.assert_refused(1008, "more than 2 subscriptions")

    def test_escaped_headers_round_trip_in_12(self) -> None:
        self.connected()
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\nx\\cy:a\\nb\\\\c\\rd\n\nx\x00", False)
        (frame,) = self.broker_frames()
        self.assertEqual(frame.get("x:y"), "a\nb\\c\rd")
        self.assertIn(b"x\\cy:a\\nb\\\\c\\rd\n", self.wire.value())

    def test_10_headers_are_not_unescaped(self) -> None:
        self.make(subprotocol="v10.stomp")
        self.tunnel.client_message(CONNECT, False)
        self.backend.dataReceived(CONNECTED.replace(b"version:1.2", b"version:1.0"))
        self.wire.clear()
        self.tunnel.client_message(b"SEND\ndestination:/topic/public.a\nk:a\\b\n\nx\x00", False)
        self.assertIn(b"k:a\\b\n", self.wire.value())

    # -- credential injection ---------------------------------------------

    def injecting(self) -> StompOptions:
        return options(
            credentials=[
                {"users": ["alice"], "login": "injected", "passcode": "secret", "host": "/"},
                {"roles": ["ops"], "login": "ops-account", "passcode": "ops-secret"},
            ]
        )

    def test_injection_replaces_the_clients_credentials(self) -> None:
        self.make(opts=self.injecting())
        self.tunnel.client_message(
            b"CONNECT\naccept-version:1.2\nlogin:mallory\npasscode:guess\n\n\x00", False
        )
        (connect,) = self.broker_frames()
        self.assertEqual(connect.get("login"), "injected")
        self.assertEqual(connect.get("passcode"), "secret")
        self.assertEqual([k for k, _ in connect.headers].count("login"), 1)
        (event,) = [e for e in self.events if e.get("event") == "stomp_connect"]
        self.assertTrue(event["injected"])
        self.assertNotIn("secret", repr(event))

    def test_injection_by_role(self) -> None:
        self.make(opts=self.injecting(), subject=Subject.of("bob", ["ops"]))
        self.tunnel.client_message(b"CONNECT\naccept-version:1.2\n\n\x00", False)
        (connect,) = self.broker_frames()
        self.assertEqual((connect.get("login"), connect.get("passcode")), ("ops-account", "ops-secret"))

    def test_injection_without_an_entry_for_the_user(self) -> None:
        self.make(opts=self.injecting(), subject=Subject.of("carol", ["traders"]))
        self.tunnel.client_message(CONNECT, False)
        self.assertEqual(self.wire.value(), b"")
        self.assert_refused(1008, "no broker credentials for this user")

    # -- broker to client -------------------------------------------------

    def test_broker_frames_reach_the_client_whole(self) -> None:
        self.connected()
        message = b"MESSAGE\nsubscription:0\ndestination:/topic/public.a\nmessage-id:1\ncontent-length:5\n\nhello\x00\n"
        for i in range(len(message) - 2):
            self.backend.dataReceived(message[i : i + 1])
        self.assertEqual(self.client.messages[1:], [])
        self.backend.dataReceived(message[-2:-1])
        self.backend.dataReceived(message[-1:])
        # the frame when its NUL arrived, the heart-beat EOL after it
        self.assertEqual(self.client.messages[1:], [(message[:-1], False), (b"\n", False)])

    def test_packed_broker_frames_in_one_message(self) -> None:
        self.connected()
        receipt = b"RECEIPT\nreceipt-id:1\n\n\x00\n"
        self.backend.dataReceived(receipt * 3 + b"MESS")
        self.assertEqual(self.client.messages[1:], [(receipt * 3, False)])

    def test_binary_body_goes_in_a_binary_message(self) -> None:
        self.connected()
        frame = b"MESSAGE\ndestination:/topic/public.a\ncontent-length:3\n\n\xff\x00\xfe\x00"
        self.backend.dataReceived(frame)
        self.assertEqual(self.client.messages[1:], [(frame, True)])

    def test_message_type_binary(self) -> None:
        self.connected(opts=options(message_type="binary"))
        self.backend.dataReceived(b"\n")
        self.assertEqual(self.client.messages[-1], (b"\n", True))

    def test_bad_broker_frame(self) -> None:
        self.connected()
        self.backend.dataReceived(b"RECEIPT\nreceipt-id:1\n\n\x00BOGUS\n\n\x00")
        self.assertEqual(self.client.messages[1][0], b"RECEIPT\nreceipt-id:1\n\n\x00")
        self.assertIn(b"ERROR\nmessage:bad frame from the broker", self.client.messages[2][0])
        self.assertEqual(
            self.client.closed, (1014, "the broker sent a bad frame: unknown or unexpected command 'BOGUS'")
        )

    # -- configuration -----------------------------------------------------

    def test_config(self) -> None:
        base = (
            """
[gateway]
listen = ["tcp:1"]
"""
            + public_realm("r")
            + """[policies.p]
[[policies.p.rules]]
roles = ["*"]
actions = ["connect"]
resources = ["/"]
[services.s]
path = "/s"
adapter = "stomp"
realm = "r"
upstream = "tcp:127.0.0.1:61613"
"""
        )
        config = loads(
            base
            + 'policy = "p"\nsubprotocols = ["v10.stomp", "v12.stomp"]\n[services.s.stomp]\nmax_body = 100\n'
        )
        (service,) = config.services
        self.assertEqual(service.subprotocols, ("v12.stomp", "v10.stomp"))
        self.assertEqual(service.adapter_options.limits.max_body, 100)
        with self.assertRaisesRegex(ConfigError, "services.s.policy: adapter 'stomp' authorizes operations"):
            loads(base + 'subprotocols = ["v12.stomp"]\n')
        with self.assertRaisesRegex(
            ConfigError, "services.s.subprotocols: adapter 'stomp' does not speak binary"
        ):
            loads(base + 'policy = "p"\nsubprotocols = ["binary"]\n')
        with self.assertRaisesRegex(ConfigError, r"services.s.stomp.colour: unknown key"):
            loads(base + 'policy = "p"\nsubprotocols = ["v12.stomp"]\n[services.s.stomp]\ncolour = 1\n')
        with self.assertRaisesRegex(ConfigError, r"services.s.stomp.credentials\[0\]: set users or roles"):
            options(credentials=[{"login": "x"}])
        with self.assertRaisesRegex(
            ConfigError, r"services.s.stomp.message_type: expected one of text, binary"
        ):
            options(message_type="json")
        with self.assertRaisesRegex(
            ConfigError, r"services.s.stomp.credentials\[0\].passcode_file: /nonexistent"
        ):
            options(credentials=[{"roles": ["*"], "login": "x", "passcode_file": "/nonexistent"}])


# any text a header may hold: no NUL (it ends a frame, and is refused)
_header_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
frame_headers = st.lists(
    st.tuples(
        st.text(_header_text, min_size=1, max_size=8).filter(lambda k: k != "content-length"),
        st.text(_header_text, max_size=12),
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(
    headers=frame_headers,
    body=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=8),
)
def test_any_allowed_send_reaches_the_broker_equal(
    headers: list[tuple[str, str]], body: bytes, cuts: list[int]
) -> None:
    """
    Whatever its headers (escaped in 1.2), body (NUL included) and however it
    is cut into messages, an authorized SEND reaches the broker with the same
    meaning: destination, first value of each header, body.
    """
    case = StompAdapterTests()
    case.setUp()
    case.connected()
    sent = Frame("SEND", [("destination", "/topic/public.x"), *headers], body)
    data = serialize(sent, "1.2")
    offset = 0
    for cut in cuts:
        case.tunnel.client_message(data[offset : offset + cut], True)
        offset += cut
    case.tunnel.client_message(data[offset:], True)
    (received,) = case.broker_frames()
    assert received.body == body
    for key, _ in sent.headers:
        assert received.get(key) == sent.get(key)
    assert case.client.closed is None
