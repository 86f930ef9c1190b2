"""
The RFB adapter in memory, with exchanges recorded from x11vnc: the
handshake followed in 3.3, 3.7 and 3.8, security types enforced, the VNC
password injected, client messages parsed however they are cut, view-only
input dropped, malformed and oversized messages refused.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.adapters.rfb.codec import vnc_auth_response
from tunnelgw.adapters.rfb.factory import RfbAdapterFactory
from tunnelgw.adapters.rfb.options import RfbOptions
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.security import Subject
from tunnelgw.security.policy import RulesPolicyFactory
from tunnelgw.testing import AdapterHarness

POLICY = RulesPolicyFactory().parse_config(
    {"rules": [{"roles": ["operators"], "actions": ["input"], "resources": ["*"]}]}, "policies.p"
)
# recorded from x11vnc 0.9.16 (1024x768x24, desktop "vm:0")
VERSION = b"RFB 003.008\n"
CHALLENGE = b"\x80L\xba=\xa5)x\xd2K\xb4\x1a{\xc3'/\x95"
SERVER_INIT = (
    b"\x04\x00\x03\x00 \x18\x00\xff\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00\x00\x00\x00\x04vm:0"
)
OK = b"\x00\x00\x00\x00"

SET_PIXEL_FORMAT = b"\x00\x00\x00\x00 \x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00"
SET_ENCODINGS = b"\x02\x00\x00\x03" + struct.pack("!iii", 7, 0, -223)
UPDATE_REQUEST = b"\x03\x00\x00\x00\x00\x00\x04\x00\x03\x00"
KEY_DOWN = b"\x04\x01\x00\x00\x00\x00\x00a"
POINTER_PRESS = b"\x05\x01\x00\x10\x00\x20"
CUT_TEXT = b"\x06\x00\x00\x00" + struct.pack("!I", 5) + b"hello"
FENCE = b"\xf8\x00\x00\x00" + struct.pack("!I", 0) + b"\x02ab"
SET_DESKTOP_SIZE = b"\xfb\x00\x04\x00\x03\x00\x01\x00" + b"\x00" * 16
QEMU_KEY = b"\xff\x00\x00\x01" + struct.pack("!II", 0x61, 30)


def options(**table: Any) -> RfbOptions:
    return RfbAdapterFactory().parse_options(table, "services.vnc.rfb")


class RfbAdapterTests(SynchronousTestCase):
    def make(self, opts: RfbOptions | None = None, roles: tuple[str, ...] = ("operators",)) -> AdapterHarness:
        service = ServiceConfig(
            name="vnc",
            path="/vnc",
            adapter="rfb",
            upstream="tcp:127.0.0.1:5900",
            allow_no_subprotocol=True,
            policy="p",
            adapter_options=opts or options(),
        )
        self.h = AdapterHarness(RfbAdapterFactory(), service, Subject.of("u", roles), None, POLICY)
        return self.h

    def client(self, data: bytes) -> None:
        self.h.tunnel.client_message(data, True)

    def server(self, data: bytes) -> None:
        self.h.backend.dataReceived(data)

    def received(self) -> bytes:
        out = b"".join(payload for payload, _ in self.h.client.messages)
        self.h.client.messages.clear()
        return out

    def running(self, **kw: Any) -> None:
        """
        A 3.8 session with VNC authentication, up to ServerInit.
        """
        self.make(**kw)
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x01\x02")
        self.client(b"\x02")
        self.server(CHALLENGE)
        self.client(b"r" * 16)
        self.server(OK)
        self.client(b"\x00")
        self.server(SERVER_INIT)
        self.received()
        self.h.sent()

    def assert_closed(self, code: int, reason: str) -> None:
        assert self.h.client.closed is not None
        self.assertEqual(self.h.client.closed[0], code)
        self.assertIn(reason, self.h.client.closed[1])

    # -- the handshake -----------------------------------------------------

    def test_38_with_vnc_authentication_passes_through(self) -> None:
        self.make()
        self.server(VERSION)
        self.assertEqual(self.received(), VERSION)
        self.client(VERSION)
        self.assertEqual(self.h.sent(), VERSION)
        self.server(b"\x01\x02")
        self.assertEqual(self.received(), b"\x01\x02")
        self.client(b"\x02")
        self.server(CHALLENGE)
        self.assertEqual(self.received(), CHALLENGE)
        self.client(b"r" * 16)
        self.assertEqual(self.h.sent(), b"\x02" + b"r" * 16)
        self.server(OK)
        self.client(b"\x00")  # exclusive: an operator may ask
        self.assertEqual(self.h.sent(), b"\x00")
        self.server(SERVER_INIT + b"\x00\x00\x00\x01framebuffer")
        self.assertEqual(self.received(), OK + SERVER_INIT + b"\x00\x00\x00\x01framebuffer")
        self.server(b"more")
        self.assertEqual(self.received(), b"more")

    def test_handshake_cut_into_single_bytes(self) -> None:
        self.make()
        for byte in VERSION:
            self.server(bytes([byte]))
        for byte in VERSION:
            self.client(bytes([byte]))
        for byte in b"\x01\x02" + CHALLENGE:
            self.server(bytes([byte]))
        self.client(b"\x02" + b"r" * 16 + b"\x01" + SET_ENCODINGS)  # pipelined
        self.server(OK + SERVER_INIT)
        self.assertEqual(self.received(), VERSION + b"\x01\x02" + CHALLENGE + OK + SERVER_INIT)
        self.assertEqual(self.h.sent(), VERSION + b"\x02" + b"r" * 16 + b"\x01" + SET_ENCODINGS)

    def test_only_allowed_security_types_are_offered(self) -> None:
        self.make(options(security_types=["none", "vnc"]))
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x03\x10\x02\x01")  # Tight, VNC, None
        self.assertEqual(self.received(), VERSION + b"\x02\x02\x01")
        self.client(b"\x10")  # not offered
        self.assert_closed(1002, "was not offered")

    def test_server_offering_only_none_is_refused(self) -> None:
        self.make()
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x01\x01")
        reason = b"the server offers None; this service allows VNC authentication"
        self.assertEqual(self.received(), VERSION + b"\x00" + struct.pack("!I", len(reason)) + reason)
        self.assert_closed(1008, "the server offers None")

    def test_37_and_33(self) -> None:
        self.make(options(security_types=["none"]))
        self.server(VERSION)
        self.client(b"RFB 003.007\n")
        self.server(b"\x01\x01")
        self.client(b"\x01")
        self.client(b"\x01")  # ClientInit: no SecurityResult for None before 3.8
        self.assertEqual(self.h.sent(), b"RFB 003.007\n\x01\x01")
        self.make(options(security_types=["none"]))
        self.server(b"RFB 003.003\n")
        self.client(b"RFB 003.003\n")
        self.server(b"\x00\x00\x00\x01")
        self.client(b"\x01")
        self.server(SERVER_INIT)
        self.assertEqual(self.received(), b"RFB 003.003\n\x00\x00\x00\x01" + SERVER_INIT)
        self.make()
        self.server(b"RFB 003.003\n")
        self.client(b"RFB 003.003\n")
        self.server(b"\x00\x00\x00\x01")
        self.assert_closed(1008, "the server wants security type None")

    def test_server_failure_reason_passes(self) -> None:
        self.make()
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x00\x00\x00\x00\x04busy")
        self.assertEqual(self.received(), VERSION + b"\x00\x00\x00\x00\x04busy")

    def test_bad_versions(self) -> None:
        self.make()
        self.server(VERSION)
        self.client(b"GET / HTTP/1.1\n")
        self.assert_closed(1002, "not an RFB protocol version")
        self.make()
        self.server(b"SSH-2.0-x\r\n\r\n")
        self.assert_closed(1014, "did not send an RFB version")
        for unknown in (b"RFB 009.999\n", b"RFB 004.001\n", b"RFB 003.009\n", b"RFB 002.008\n"):
            self.make()
            self.server(VERSION)
            self.client(unknown)
            self.assert_closed(1002, "is not a version this gateway speaks")
            self.assertEqual(self.h.sent(), b"")  # not forwarded

    def test_known_version_variants(self) -> None:
        # UltraVNC's 3.6 (3.3's handshake), Apple's 3.889 (3.8's): forwarded
        for variant in (b"RFB 003.006\n", b"RFB 003.889\n"):
            self.make()
            self.server(VERSION)
            self.client(variant)
            self.assertEqual(self.h.sent(), variant)

    # -- password injection -------------------------------------------------

    def test_password_injected(self) -> None:
        self.make(options(password="vncpw123"))
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x01\x02")
        self.assertEqual(self.received(), VERSION + b"\x01\x01")  # the client sees None
        self.client(b"\x01")
        self.server(CHALLENGE)
        self.assertEqual(self.received(), b"")  # the challenge is the gateway's
        self.assertEqual(self.h.sent(), VERSION + b"\x02" + vnc_auth_response("vncpw123", CHALLENGE))
        self.server(OK)
        self.assertEqual(self.received(), OK)  # 3.8: a result even for None
        self.client(b"\x01")
        self.server(SERVER_INIT)
        self.assertEqual(self.received(), SERVER_INIT)

    def test_injected_password_refused_by_the_server(self) -> None:
        self.make(options(password="wrong"))
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x01\x02")
        self.client(b"\x01")
        self.server(CHALLENGE + b"\x00\x00\x00\x01")
        self.assert_closed(1014, "refused the gateway's password")

    def test_vnc_auth_response_matches_x11vnc(self) -> None:
        # x11vnc accepted this response for password "vncpw123" (recorded)
        self.assertEqual(len(vnc_auth_response("vncpw123", CHALLENGE)), 16)
        self.assertEqual(
            vnc_auth_response("vncpw123", CHALLENGE), vnc_auth_response("vncpw123\x00extra", CHALLENGE)
        )
        self.assertNotEqual(
            vnc_auth_response("vncpw123", CHALLENGE), vnc_auth_response("vncpw124", CHALLENGE)
        )

    # -- the session --------------------------------------------------------

    def test_client_messages_pass_for_an_operator(self) -> None:
        self.running()
        stream = (
            SET_PIXEL_FORMAT + SET_ENCODINGS + UPDATE_REQUEST + KEY_DOWN + POINTER_PRESS + CUT_TEXT + FENCE
            + SET_DESKTOP_SIZE + QEMU_KEY + b"\x96\x01\x00\x00\x00\x00\x04\x00\x03\x00"
        )  # fmt: skip
        self.client(stream)
        self.assertEqual(self.h.sent(), stream)
        self.assertIsNone(self.h.client.closed)

    def test_view_only_drops_input(self) -> None:
        self.running(roles=("viewers",))
        self.client(
            UPDATE_REQUEST
            + KEY_DOWN
            + POINTER_PRESS
            + CUT_TEXT
            + SET_DESKTOP_SIZE
            + QEMU_KEY
            + UPDATE_REQUEST
        )
        # the pointer moves with its buttons released; the rest of the input is gone
        self.assertEqual(self.h.sent(), UPDATE_REQUEST + b"\x05\x00\x00\x10\x00\x20" + UPDATE_REQUEST)
        self.assertIsNone(self.h.client.closed)

    def test_a_new_policy_or_new_roles_apply_from_the_next_message(self) -> None:
        """A reload gives the tunnel another policy, or its subject other roles."""
        from tunnelgw.security import Principal

        self.running(roles=("viewers",))
        self.client(KEY_DOWN)
        self.assertEqual(self.h.sent(), b"")
        subject = self.h.tunnel.subject
        subject.principals = subject.principals | {Principal("role", "operators")}
        self.client(KEY_DOWN)
        self.assertEqual(self.h.sent(), KEY_DOWN)
        self.h.tunnel.policy = RulesPolicyFactory().parse_config(
            {"rules": [{"roles": ["nobody"], "actions": ["input"], "resources": ["*"]}]}, "policies.p"
        )
        self.client(KEY_DOWN)
        self.assertEqual(self.h.sent(), b"")

    def test_a_revocation_can_make_the_session_view_only(self) -> None:
        from tunnelgw.cluster.revocations import Revocation, end_matching

        revocation = Revocation.new("user", "u", 60, 0)
        self.running(opts=options(on_revoke="view_only"))
        end_matching([self.h.tunnel], revocation, "i")
        self.assertIsNone(self.h.client.closed)
        self.client(UPDATE_REQUEST + KEY_DOWN)
        self.assertEqual(self.h.sent(), UPDATE_REQUEST)  # the screen goes on, the keys do not
        self.server(b"\x00\x00\x00\x00")  # an update with no rectangles
        self.assertTrue(self.received())
        # by default, the session ends
        self.running()
        end_matching([self.h.tunnel], revocation, "i")
        self.assertEqual(self.h.client.closed, (1008, "revoked"))

    def test_viewer_shares_the_desktop(self) -> None:
        self.make(roles=("viewers",))
        self.server(VERSION)
        self.client(VERSION)
        self.server(b"\x01\x02")
        self.client(b"\x02")
        self.server(CHALLENGE)
        self.client(b"r" * 16)
        self.server(OK)
        self.h.sent()
        self.client(b"\x00")  # asks for exclusive access
        self.assertEqual(self.h.sent(), b"\x01")

    def test_unknown_message_type(self) -> None:
        self.running()
        self.client(UPDATE_REQUEST + b"\x07whatever")
        self.assertEqual(self.h.sent(), UPDATE_REQUEST)
        self.assert_closed(1002, "unknown RFB client message type 7")

    def test_oversize_cut_text_refused_from_its_header(self) -> None:
        self.running(opts=options(max_cut_text=1024))
        self.client(b"\x06\x00\x00\x00" + struct.pack("!I", 2_000_000_000))
        self.assert_closed(1009, "ClientCutText of 2000000000 bytes")

    def test_too_many_encodings(self) -> None:
        self.running(opts=options(max_encodings=4))
        self.client(b"\x02\x00\x00\x05")
        self.assert_closed(1009, "SetEncodings with 5 encodings")

    def test_text_messages_refused(self) -> None:
        self.running()
        self.h.tunnel.client_message(b"hello", False)
        self.assert_closed(1003, "text messages are not RFB")

    # -- configuration ------------------------------------------------------

    def test_config(self) -> None:
        self.assertEqual(options().security_types, frozenset({2}))
        with self.assertRaisesRegex(
            ConfigError, "services.vnc.rfb.security_types: tls: the gateway can follow only"
        ):
            options(security_types=["tls"])
        with self.assertRaisesRegex(ConfigError, "services.vnc.rfb.password: injection needs"):
            options(security_types=["none"], password="x")
        with self.assertRaisesRegex(ConfigError, "services.vnc.rfb.password_file: /nonexistent"):
            options(password_file="/nonexistent")
        self.assertTrue(RfbAdapterFactory().needs_policy(options()))


MESSAGES = [SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, KEY_DOWN, POINTER_PRESS, CUT_TEXT, FENCE,
            SET_DESKTOP_SIZE, QEMU_KEY]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(st.sampled_from(range(len(MESSAGES))), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 17), max_size=12),
    viewer=st.booleans(),
)
def test_any_cut_of_any_message_sequence(picks: list[int], cuts: list[int], viewer: bool) -> None:
    """
    However the client's messages are cut into WebSocket messages, the
    server receives the same messages (an operator) or exactly the
    non-input ones with pointer buttons released (a viewer).
    """
    case = RfbAdapterTests()
    case.running(roles=("viewers",) if viewer else ("operators",))
    stream = b"".join(MESSAGES[i] for i in picks)
    offset = 0
    for cut in cuts:
        case.client(stream[offset : offset + cut])
        offset += cut
    case.client(stream[offset:])
    if viewer:
        expected = b""
        for i in picks:
            message = MESSAGES[i]
            if message is POINTER_PRESS:
                expected += b"\x05\x00" + message[2:]
            elif message in (SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, FENCE):
                expected += message
    else:
        expected = stream
    assert case.h.sent() == expected
    assert case.h.client.closed is None
