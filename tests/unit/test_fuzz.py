"""
Fuzzing in the normal suite (hypothesis, bounded in examples and time):
each parser an attacker reaches is given arbitrary and mangled input, and
must answer in its own way (a refusal, an error frame, a close code),
never with an exception that escapes or a logged failure, and with what it
holds bounded.  The two HTTP paths must give the same answer to the same
head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

import tests.unit.test_rfb_adapter as rfb_tests
import tests.unit.test_site as site_tests
import tests.unit.test_xmpp_adapter as xmpp_tests
from tunnelgw.adapters.stomp.frames import CLIENT_COMMANDS, FrameError, Limits
from tunnelgw.adapters.stomp.parser import Parser

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1014}


@contextmanager
def no_logged_failure() -> Iterator[None]:
    """
    Nothing logs a failure (an exception that escaped into Twisted or was
    caught as unexpected) meanwhile.
    """
    failures: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == [], [str(e.get("log_failure")) for e in failures]


def _chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    offset = 0
    for cut in cuts:
        yield data[offset : offset + cut]
        offset += cut
    yield data[offset:]


# -- the request head, on both HTTP paths ------------------------------------------------

_names = st.sampled_from(
    ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
     "Origin", "Content-Length", "Transfer-Encoding", "Cookie", "Authorization", "X-Other", "host", "Expect"]
)  # fmt: skip
_values = st.one_of(
    st.sampled_from(
        ["websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", "binary", "0", "11", "chunked", "gw"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
_line_ends = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r", " \r\n"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """
    Upgrade heads, mostly plausible, with mangled lines, ends, methods,
    versions and paths.
    """
    method = draw(st.sampled_from(["GET", "GET", "POST", "get", "HEAD", "G\x00T"]))
    path = draw(st.sampled_from(["/echo", "/raw", "/echo?x=1", "/nowhere", "*", "/echo#f", "http://gw/echo"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1 x"]))
    lines = [f"{method} {path} {version}"]
    base = [
        ("Host", "gw"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    headers = draw(st.lists(st.tuples(_names, _values), max_size=4))
    keep = draw(st.lists(st.booleans(), min_size=len(base), max_size=len(base)))
    for (name, value), kept in zip(base, keep, strict=True):
        if kept or draw(st.booleans()):
            lines.append(f"{name}: {value}")
    lines += [f"{name}:{draw(st.sampled_from([' ', '', '  ']))}{value}" for name, value in headers]
    if draw(st.booleans()):
        lines.insert(
            draw(st.integers(1, len(lines))), draw(st.sampled_from([" folded", "no colon", ": empty"]))
        )
    end = draw(_line_ends)
    text = end.join(lines) + end + end
    body = draw(st.sampled_from([b"", b"", site_tests.client_frame(0x1, b"hi"), b"x" * 11]))
    return text.encode("latin-1", "replace") + body


class _Paths(site_tests._SiteCase):
    __test__ = False  # a harness here, not tests of its own

    def runTest(self) -> None:  # noqa: N802 (unittest's)
        pass

    def answer(self, data: bytes, split: bool) -> tuple[bytes, Any]:
        self.split = split
        channel, transport = self.connect()
        self.send(channel, data)
        if self.endpoint.pending:
            self.endpoint.succeed()
        out = transport.value()
        transport.protocol.connectionLost(Failure(ConnectionDone()))
        status = site_tests._answer(out)[0]
        return status, self.site.limiter.total


@FUZZ
@given(head=heads())
def test_both_http_paths_give_any_head_the_same_answer(head: bytes) -> None:
    paths = _Paths()
    paths.setUp()
    with no_logged_failure():
        one_read = paths.answer(head, split=False)
        two_reads = paths.answer(head, split=True)
    # the status line (or nothing yet, for a head that has not ended), and
    # every connection given back
    assert one_read == two_reads, (head, one_read, two_reads)
    assert one_read[1] == 0


# -- the frame layer ------------------------------------------------------------------

_frames = st.lists(
    st.one_of(
        st.builds(
            site_tests.client_frame,
            st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB]),
            st.binary(max_size=200),
            st.booleans(),
        ),
        st.binary(min_size=1, max_size=16),  # garbage, unmasked frames, reserved bits
    ),
    max_size=12,
)


@FUZZ
@given(frames=_frames, cuts=st.lists(st.integers(1, 64), max_size=6))
def test_any_frames_get_a_close_code_or_an_answer(frames: list[bytes], cuts: list[int]) -> None:
    site = _Paths()
    site.setUp()
    with no_logged_failure():
        channel, transport = site.upgrade("/echo")
        ws = transport.protocol
        transport.clear()
        for chunk in _chunks(b"".join(frames), cuts):
            if chunk:
                ws.dataReceived(chunk)
        # what autobahn holds unparsed: at most a frame's worth
        assert len(getattr(ws, "data", b"") or b"") <= 1024 * 1024 + 14 + 200
        for opcode, payload in _server_frames(transport.value()):
            if opcode == 0x8 and len(payload) >= 2:
                assert int.from_bytes(payload[:2], "big") in CLOSE_CODES
        ws.connectionLost(Failure(ConnectionDone()))


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    return site_tests.server_frames(data)


# -- STOMP ----------------------------------------------------------------------------

_stomp = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [b"SEND\n", b"CONNECT\n", b"destination:/q/a\n", b"content-length:3\n", b"content-length:x\n",
             b"\n", b"\r\n", b"\x00", b"body", b"h:\\q\n", b"\xff", b":\n", b"a" * 50]
        ),
        max_size=30,
    ).map(b"".join),
)  # fmt: skip


@FUZZ
@given(
    data=_stomp, cuts=st.lists(st.integers(1, 40), max_size=8), version=st.sampled_from(["1.0", "1.1", "1.2"])
)
def test_the_stomp_parser_takes_any_bytes(data: bytes, cuts: list[int], version: str) -> None:
    limits = Limits(max_line=64, max_headers=4, max_body=128)
    parser = Parser(CLIENT_COMMANDS, limits, version)
    try:
        for chunk in _chunks(data, cuts):
            for _ in parser.feed(chunk):
                pass
            # bounded: a head's lines and a body's limit, and one read more
            assert parser.buffered <= limits.max_line * (limits.max_headers + 1) + limits.max_body + 40 + 2
    except FrameError as e:
        assert e.reason


# -- XMPP -----------------------------------------------------------------------------

_xml = st.one_of(
    st.text(max_size=120),
    st.lists(
        st.sampled_from(
            ["<message>", "</message>", "<body>", "</body>", "<presence/>", "<iq type='get'>", "</iq>",
             "<a xmlns='x'>", "</a>", "text", "&amp;", "&bad;", "<!-- c -->", "<?pi x?>", "<![CDATA[x]]>",
             "<!DOCTYPE a>", " ", "'", '"', "<", ">", "/>", "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
             "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", "<stream:stream>", "\x00"]
        ),
        max_size=12,
    ).map("".join),
)  # fmt: skip


@FUZZ
@given(messages=st.lists(_xml, min_size=1, max_size=5))
def test_the_xmpp_adapter_takes_any_client_messages(messages: list[str]) -> None:
    case = xmpp_tests.XmppAdapterTests()
    with no_logged_failure():
        case.ready()
        for message in messages:
            case.client(message)
            if case.h.client.closed is not None:
                assert case.h.client.closed[0] in CLOSE_CODES
                break
        assert case.h.tunnel.buffered() <= 1024 * 1024


@FUZZ
@given(chunks=st.lists(_xml, min_size=1, max_size=5))
def test_the_xmpp_adapter_takes_any_server_stream(chunks: list[str]) -> None:
    case = xmpp_tests.XmppAdapterTests()
    with no_logged_failure():
        case.ready()
        for chunk in chunks:
            case.server(chunk)
            if case.h.client.closed is not None:
                assert case.h.client.closed[0] in CLOSE_CODES
                break


# -- RFB ------------------------------------------------------------------------------


@FUZZ
@given(
    steps=st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), min_size=1, max_size=10),
    after_version=st.booleans(),
)
def test_the_rfb_state_machine_takes_any_bytes_either_way(
    steps: list[tuple[bool, bytes]], after_version: bool
) -> None:
    case = rfb_tests.RfbAdapterTests()
    with no_logged_failure():
        case.make()
        if after_version:
            case.server(rfb_tests.VERSION)
            case.client(rfb_tests.VERSION)
        for from_client, data in steps:
            if from_client:
                case.client(data)
            else:
                case.server(data)
            if case.h.client.closed is not None:
                assert case.h.client.closed[0] in CLOSE_CODES
                break
        assert case.h.tunnel.buffered() <= 1024 * 1024


def test_the_head_strategy_makes_valid_upgrades_too() -> None:
    """
    The fuzzed heads are near enough to real ones to be admitted at times
    (else the same-answer test would only compare refusals).
    """
    paths = _Paths()
    paths.setUp()
    assert paths.answer(site_tests.UPGRADE.format(path="/echo", extra="").encode(), split=False)[
        0
    ].startswith(b"HTTP/1.1 101")
