"""
The C{whole_frames} and C{whole_sends} shortcuts (tunnelgw._compat.reads,
L{LegInternals.send_whole}) against autobahn's own parse and framing: the
same frames, cut the same way, to the same echo service with the
shortcuts on and off, must get the same bytes back (echoes,
pongs, close frames) and leave the connection in the same state, whatever
the frames are (single, fragmented, control, bad, over a limit, invalid
text, past the message rate) and wherever the reads cut them.
"""

from __future__ import annotations

import struct
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

import tests.unit.test_site as site_tests
import tunnelgw._compat.autobahn as compat_autobahn
from tunnelgw._compat import reads
from tunnelgw.admission.pipeline import AdmissionPipeline
from tunnelgw.config.loader import loads
from tunnelgw.front.site import GatewaySite
from tunnelgw.security import PassThroughAuthenticator
from tunnelgw.testing import FakeEndpoint, HalfCloseStringTransport, client_frame
from tunnelgw.websocket.leg import WebSocketLeg
from tunnelgw.websocket.server import TunnelWebSocket

# the site tests' echo service, with small limits and a message rate
CONFIG = (
    site_tests.CONFIG
    + """
[services.echo.limits]
max_frame_size = 300
max_message_size = 400
max_fragments = 3
max_messages_per_second = 1
message_burst = {burst}
"""
)
UPGRADE = site_tests.UPGRADE.format(path="/echo", extra="").encode()
PEER = IPv4Address("TCP", "192.0.2.7", 40000)


def run(reads_: list[bytes], shortcut: bool, burst: int = 100) -> tuple[bytes, bool, bool]:
    """What the gateway wrote after the 101, and whether it closed or aborted."""
    reactor = MemoryReactorClock()
    old_loop, txaio.config.loop = txaio.config.loop, reactor
    try:
        config = loads(CONFIG.replace("{burst}", str(burst)))
        site = GatewaySite(
            config, reactor, AdmissionPipeline(reactor, PassThroughAuthenticator(), FakeEndpoint())
        )
        channel = site.buildProtocol(PEER)
        transport = HalfCloseStringTransport(peerAddress=PEER)
        transport.protocol = channel
        channel.makeConnection(transport)
        channel.dataReceived(UPGRADE)
        assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()[:100]
        transport.clear()
        ws = transport.protocol
        reading = mock.patch.object(
            compat_autobahn, "whole_frames", lambda cls: reads.whole_frames(cls) and shortcut
        )
        sending = mock.patch.object(
            compat_autobahn, "_WHOLE_SENDS", compat_autobahn._WHOLE_SENDS and shortcut
        )
        with reading, sending:
            for data in reads_:
                ws.dataReceived(data)
                reactor.advance(0)
        return transport.value(), transport.disconnecting, bool(getattr(transport, "aborted", False))
    finally:
        txaio.config.loop = old_loop


_mask = st.one_of(st.just(b"\x11\x22\x33\x44"), st.binary(min_size=4, max_size=4))


def _masked(
    opcode: int, payload: bytes, fin: bool = True, first: int | None = None, mask: bytes = b"\x11\x22\x33\x44"
) -> bytes:
    frame = client_frame(opcode, payload, fin, mask)
    return frame if first is None else bytes([first]) + frame[1:]


_payload = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(str.encode),
    st.binary(min_size=120, max_size=320),
    st.sampled_from(
        [b"", b"caf\xc3", b"\xed\xa0\x80", b"\xff", "h\u00e9".encode(), b"y" * 301, b"\x82\x91" * 130]
    ),
)
_data = st.sampled_from([0x1, 0x2])
_good = st.builds(_masked, _data, _payload, mask=_mask)
_fragmented = st.builds(
    lambda opcode, parts, mask: b"".join(
        _masked(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1, mask=mask)
        for i, part in enumerate(parts)
    ),
    _data,
    st.lists(_payload, min_size=2, max_size=4),  # max_fragments is 3
    _mask,
)
_other = st.one_of(
    _fragmented,
    st.builds(lambda p, m: _masked(0x9, p[:125], mask=m), _payload, _mask),
    st.builds(lambda p, m: _masked(0xA, p[:125], mask=m), _payload, _mask),
)
_bad = st.one_of(
    st.builds(_masked, st.just(0x0), _payload, fin=st.booleans()),  # no message to continue
    st.builds(_masked, _data, _payload, fin=st.just(False)),  # a message begun, maybe not continued
    st.just(_masked(0x8, struct.pack("!H", 1000) + b"bye")),
    st.builds(_masked, st.just(0x2), _payload, first=st.just(0xC2)),  # RSV1: nothing negotiated
    st.builds(_masked, st.just(0x3), _payload),  # a reserved opcode
    st.builds(lambda p: bytes([0x82, len(p[:100])]) + p[:100], _payload),  # unmasked
    st.just(b"\x82\xfe\x00\x05" + b"\x00" * 4 + b"short"),  # 126 for a length under 126
    st.just(b"\x82\xff" + struct.pack("!Q", 5) + b"\x00" * 4 + b"hello"),  # 127 for 5
)
# mostly what clients send; now and then what ends a connection
_frame = st.one_of(_good, _good, _good, _good, _other, _other, _bad)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, offset = [], 0
    for cut in cuts:
        chunks.append(data[offset : offset + cut])
        offset += cut
    return [*chunks, data[offset:]]


# reads cut anywhere, or between frames (where a read that ends in a
# fragment, or in a frame autobahn has begun, meets the shortcut next)
_reads = st.one_of(
    st.builds(_cut, st.lists(_frame, max_size=16).map(b"".join), st.lists(st.integers(1, 200), max_size=12)),
    st.lists(st.lists(_frame, min_size=1, max_size=4).map(b"".join), max_size=6),
    st.builds(
        lambda frames, at: [b"".join(frames)[:at], b"".join(frames)[at:]],
        st.lists(_frame, min_size=1, max_size=6),
        st.integers(1, 12),
    ),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_reads, st.sampled_from([3, 100, 100]))
def test_the_shortcut_answers_as_autobahn_does(reads_: list[bytes], burst: int) -> None:
    assert run(reads_, True, burst) == run(reads_, False, burst)


_ZERO = b"\x00" * 4
_AB = _masked(0x2, b"ab", mask=b"\x85\x00\x00\x00")
_LOOKS_LIKE_A_FRAME = _masked(0x9, b"\x82\x85" + b"z" * 40, mask=_ZERO)  # a ping
_MORE = _masked(0x2, b"x" * 20) * 3


@pytest.mark.parametrize(
    ("reads_", "burst"),
    [
        ([_masked(0x1, b"\xff") + _MORE], 100),  # not UTF-8
        ([_masked(0x1, b"caf\xc3") + _MORE], 100),  # ends within a code point
        ([_masked(0x2, b"y" * 301) + _MORE], 100),  # over max_frame_size
        ([_MORE + _MORE], 3),  # past the message rate within one read
        ([_AB[:1], _AB[1:] + _MORE], 100),  # a header cut: autobahn holds its first byte
        (
            [_LOOKS_LIKE_A_FRAME[:6], _LOOKS_LIKE_A_FRAME[6:] + _MORE],
            100,
        ),  # a frame autobahn began (inside no message)
        ([_masked(0x2, b"a", fin=False), _masked(0x2, b"b") + _MORE], 100),  # within a message
        ([_masked(0x2, b"a", fin=False), _masked(0x0, b"b") + _MORE], 100),
        ([_masked(0x9, b"ping") + _MORE + _masked(0x8, struct.pack("!H", 1000)) + _MORE], 100),
    ],
)
def test_each_way_out_of_the_shortcut(reads_: list[bytes], burst: int) -> None:
    assert run(reads_, True, burst) == run(reads_, False, burst)


def test_the_legs_are_served_and_a_hook_nobody_vouched_for_turns_it_off() -> None:
    assert reads.whole_frames(TunnelWebSocket)

    class Streaming(TunnelWebSocket):  # type: ignore[misc]
        def onMessageFrameData(self, payload: Any) -> None:
            pass

    assert not reads.whole_frames(Streaming)


def test_many_messages_in_one_read_each_arrive_once() -> None:
    messages = [bytes([i]) * (i * 7 % 200) for i in range(10)]
    data = b"".join(_masked(0x2, m) for m in messages)
    written, closing, _ = run([data[:-3], data[-3:]], True)
    echoed, at = [], 0
    while at < len(written):
        length, start = written[at + 1], at + 2
        if length == 126:
            length, start = struct.unpack("!H", written[at + 2 : at + 4])[0], at + 4
        echoed.append(written[start : start + length])
        at = start + length
    assert echoed == messages and not closing


class _Leg(WebSocketLeg, WebSocketServerProtocol):  # type: ignore[misc]
    pass


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("is_binary", [True, False])
def test_a_whole_send_is_the_frame_autobahn_sends(size: int, is_binary: bool) -> None:
    payload = bytes(i % 251 for i in range(size)) if is_binary else b"a" * size
    sent = []
    for whole in (True, False):
        leg = _Leg()
        leg.factory = WebSocketServerFactory()
        leg.makeConnection(StringTransport())
        leg.state = leg.STATE_OPEN
        with mock.patch.object(compat_autobahn, "_WHOLE_SENDS", whole):
            assert leg.send_whole(payload, is_binary) is whole
            if not whole:
                leg.send_message(payload, is_binary)
        sent.append(leg.transport.value())
    assert sent[0] == sent[1] and sent[0].endswith(payload)


def test_what_a_whole_send_leaves_to_autobahn() -> None:
    leg = _Leg()
    leg.factory = WebSocketServerFactory()
    leg.makeConnection(StringTransport())
    assert not leg.send_whole(b"x", True)  # not open yet
    leg.state = leg.STATE_OPEN
    leg.maxMessagePayloadSize = 3
    assert not leg.send_whole(b"four", True)  # over the limit: sendMessage raises
    leg.maxMessagePayloadSize, leg.autoFragmentSize = 0, 2
    assert not leg.send_whole(b"four", True)  # fragments
    leg.autoFragmentSize, leg.maskServerFrames = 0, True
    assert not leg.send_whole(b"four", True)
    leg.maskServerFrames = False
    assert leg.send_whole(b"four", True) and leg.transport.value() == b"\x82\x04four"
