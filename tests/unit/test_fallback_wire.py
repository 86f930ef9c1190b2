"""
The fallback's wire format and its resumable queues: frames cut anywhere,
bounded; each message delivered exactly once, in order, whatever is lost,
repeated or resent.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.fallback.framing import (
    ACK,
    BINARY,
    CLOSE,
    HEARTBEAT,
    PAD,
    TEXT,
    Frame,
    FrameParser,
    FramingError,
    encode,
)
from tunnelgw.fallback.queues import Inbox, Outbox


class FramingTests(SynchronousTestCase):
    def test_frames_cut_anywhere(self) -> None:
        wire = encode(PAD, 0, b" " * 100) + encode(TEXT, 1, "héllo".encode()) + encode(BINARY, 2, b"\x00\xff")
        wire += encode(CLOSE, 3, b"\x03\xe8bye") + encode(HEARTBEAT, 0) + encode(ACK, 7)
        for cut in range(1, len(wire)):
            parser = FrameParser(max_payload=1024)
            frames = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
            self.assertEqual(
                [(f.kind, f.seq) for f in frames],
                [(PAD, 0), (TEXT, 1), (BINARY, 2), (CLOSE, 3), (HEARTBEAT, 0), (ACK, 7)],
            )
            self.assertEqual(parser.pending, 0)

    def test_bounds_and_lies(self) -> None:
        for wire, why in (
            (encode(TEXT, 1, b"x" * 11), "over 10"),
            (b"\x07" + b"\x00" * 12, "unknown frame kind 7"),
            (encode(TEXT, 1, b"\xff"), "not UTF-8"),
            (encode(CLOSE, 1, b"\x03"), "half a code"),
        ):
            with self.assertRaises(FramingError) as e:
                FrameParser(max_payload=10).feed(wire)
            self.assertIn(why, str(e.exception))

    def test_an_unfinished_frame_is_bounded(self) -> None:
        parser = FrameParser(max_payload=100, max_buffered=20)
        self.assertEqual(parser.feed(encode(BINARY, 1, b"x" * 50)[:20]), [])
        with self.assertRaises(FramingError) as e:
            parser.feed(b"x")
        self.assertIn("unfinished", str(e.exception))


class QueueTests(SynchronousTestCase):
    def test_kept_until_acknowledged_and_resent_on_a_new_stream(self) -> None:
        events: list[str] = []
        out = Outbox(
            high_water=50, full=lambda: events.append("full"), drained=lambda: events.append("drained")
        )
        frames = [out.push(BINARY, bytes([i]) * 10) for i in range(4)]
        self.assertEqual(events, ["full"])
        self.assertEqual(out.since(2), frames[2:])
        self.assertEqual(events, ["full", "drained"])
        out.ack(4)
        self.assertEqual((out.bytes, out.since(4)), (0, []))

    def test_an_ack_beyond_what_was_sent_is_what_was_sent(self) -> None:
        out = Outbox(high_water=100)
        out.push(TEXT, b"a")
        out.ack(99)
        self.assertEqual((out.acked, out.bytes), (1, 0))

    def test_repeats_dropped_gaps_wait(self) -> None:
        inbox = Inbox()
        f = [Frame(BINARY, n, bytes([n])) for n in range(1, 6)]
        self.assertEqual(inbox.take([f[0], f[1]]), [f[0], f[1]])
        self.assertEqual(inbox.take([f[1], f[2]]), [f[2]])  # a POST sent again
        self.assertEqual(inbox.take([f[4]]), [])  # 4 has not come
        self.assertEqual(inbox.last, 3)
        self.assertEqual(inbox.take([f[3], f[4]]), [f[3], f[4]])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=20), min_size=1, max_size=30),
    st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=60),
)
def test_exactly_once_in_order_whatever_is_lost(
    messages: list[bytes], deliveries: list[tuple[bool, int]]
) -> None:
    """
    A sender streams, the link loses any tail of any stream (a cut) and the
    receiver's acks come late: on every new stream the sender resends all
    it holds since the last ack; at the end one clean stream.  The
    receiver takes every message once, in order.
    """
    out, inbox = Outbox(high_water=1 << 20), Inbox()
    delivered: list[bytes] = []
    for i, message in enumerate(messages):
        out.push(BINARY, message)
        if i < len(deliveries):
            acked, cut = deliveries[i]
            wire = b"".join(out.since(out.acked))
            got = inbox.take(FrameParser(max_payload=64).feed(wire[: min(cut * 7, len(wire))]))
            delivered += [frame.payload for frame in got]
            if acked:
                out.ack(inbox.last)
    got = inbox.take(FrameParser(max_payload=64).feed(b"".join(out.since(inbox.last))))
    delivered += [frame.payload for frame in got]
    assert delivered == messages
