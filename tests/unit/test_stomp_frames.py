"""
The STOMP frame codec: frames survive any split and packing, bodies with
NUL via content-length, 1.1/1.2 header escaping; malformed and oversized
input is refused with a reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelgw.adapters.stomp.frames import (
    CLIENT_COMMANDS,
    HEARTBEAT,
    SERVER_COMMANDS,
    Frame,
    FrameError,
    Limits,
    serialize,
    unescape,
)
from tunnelgw.adapters.stomp.parser import Parser


def parse_all(data: bytes, chunks: list[int] | None = None, **kw: Any) -> list[Any]:
    parser = Parser(**kw)
    out: list[Any] = []
    if chunks is None:
        out.extend(parser.feed(data))
    else:
        offset = 0
        for size in chunks:
            out.extend(parser.feed(data[offset : offset + size]))
            offset += size
        out.extend(parser.feed(data[offset:]))
    assert parser.buffered == 0
    return out


def test_stompjs_connect_and_send() -> None:
    data = (
        b"CONNECT\nlogin:guest\npasscode:guest\naccept-version:1.2,1.1,1.0\nheart-beat:0,0\n\n\x00"
        b"SEND\ndestination:/queue/a\ncontent-length:26\n\nhello stomp over websocket\x00\n"
    )
    connect, send, beat = parse_all(data)
    assert connect.command == "CONNECT" and connect.get("login") == "guest"
    assert send.get("destination") == "/queue/a" and send.body == b"hello stomp over websocket"
    assert beat is HEARTBEAT


def test_body_with_nul_needs_content_length() -> None:
    frame = Frame("SEND", [("destination", "/queue/a")], b"a\x00b\x00")
    data = serialize(frame)
    assert b"content-length:4" in data
    (parsed,) = parse_all(data)
    assert parsed.body == b"a\x00b\x00"


def test_escaping_12_and_11() -> None:
    frame = Frame("SEND", [("dest:x", "a\nb:c\\d\re")])
    (parsed,) = parse_all(serialize(frame, "1.2"))
    assert parsed.headers == frame.headers
    raw = b"SEND\nkey:a\\nb\\cc\\\\d\n\n\x00"
    (parsed,) = parse_all(raw, version="1.1")
    assert parsed.get("key") == "a\nb:c\\d"
    with pytest.raises(FrameError, match="invalid escape"):
        parse_all(b"SEND\nkey:a\\rb\n\n\x00", version="1.1")  # \r is 1.2 only
    (parsed,) = parse_all(b"SEND\nkey:a\\nb\n\n\x00", version="1.0")
    assert parsed.get("key") == "a\\nb"  # 1.0: no escaping


def test_connect_frames_are_not_unescaped() -> None:
    (parsed,) = parse_all(b"CONNECT\npasscode:a\\cb\n\n\x00")
    assert parsed.get("passcode") == "a\\cb"


def test_first_repeated_header_wins_and_set_replaces() -> None:
    (parsed,) = parse_all(b"SEND\ndestination:/a\ndestination:/b\n\n\x00")
    assert parsed.get("destination") == "/a"
    parsed.set("destination", "/c")
    assert parsed.headers == [("destination", "/c")]


def test_crlf_line_endings() -> None:
    (parsed, beat) = parse_all(b"SEND\r\ndestination:/a\r\n\r\nbody\x00\r\n")
    assert parsed.get("destination") == "/a" and parsed.body == b"body" and beat is HEARTBEAT


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"FROB\n\n\x00", "unknown or unexpected command"),
        (b"MESSAGE\n\n\x00", "unknown or unexpected command"),  # server command from a client
        (b"SEND\nnocolon\n\n\x00", "no colon"),
        (b"SEND\ncontent-length:abc\n\n\x00", "not a number"),
        (b"SEND\ncontent-length:2\n\nabc\x00", "not followed by NUL"),
        (b"SEND\n" + b"h:v\n" * 65 + b"\n\x00", "more than 64 headers"),
        (b"SEND\nh:" + b"v" * 9000 + b"\n\n\x00", "longer than"),
        (b"SEND\ncontent-length:2000000\n\n", "body larger"),
        (b"SEND\n\n" + b"x" * (1024 * 1024 + 1), "body larger"),
        (b"SEND\nh:\xff\n\n\x00", "not UTF-8"),
        (b"SEND\n" + b"h:v" * 300000, "headers too large"),
        # a broker ending frames at the first NUL would see a second frame
        (b"SEND\ndestination:/queue/a\x00SEND\ndestination:/queue/b\n\nx\x00", "NUL byte"),
        (b"SEND\ndestination:/queue/a\x00", "NUL byte"),  # not even the head's end yet
        (b"SE\x00ND\n\n\x00", "NUL byte"),
    ],
)
def test_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        list(Parser(CLIENT_COMMANDS).feed(data))


def test_incomplete_frames_wait() -> None:
    parser = Parser()
    assert list(parser.feed(b"SEND\ncontent-length:5\n\nhel")) == []
    assert parser.buffered > 0
    (frame,) = parser.feed(b"lo\x00")
    assert frame.body == b"hello"


header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
frames = st.builds(
    Frame,
    command=st.sampled_from(sorted(CLIENT_COMMANDS - {"CONNECT"})),
    headers=st.lists(st.tuples(header_text.filter(lambda s: s != "content-length"), header_text), max_size=6),
    body=st.binary(max_size=300),
)


@settings(max_examples=300)
@given(
    st.lists(frames, min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=64), max_size=40),
    st.sampled_from(["1.1", "1.2"]),
    st.booleans(),
)
def test_round_trip_any_split_any_packing(
    items: list[Frame], chunks: list[int], version: str, heartbeats: bool
) -> None:
    if version == "1.1":  # 1.1 cannot escape \r; keep headers it can carry
        for frame in items:
            frame.headers = [(k.replace("\r", ""), v.replace("\r", "")) for k, v in frame.headers]
    separator = b"\n" if heartbeats else b""
    data = separator.join(serialize(frame, version) for frame in items)
    parsed = [x for x in parse_all(data, chunks, version=version) if x is not HEARTBEAT]
    assert len(parsed) == len(items)
    for got, want in zip(parsed, items, strict=True):
        assert got.command == want.command
        assert got.body == want.body
        assert [h for h in got.headers if h[0] != "content-length"] == want.headers


def test_serialize_refuses_what_a_broker_would_read_otherwise() -> None:
    for command, version in (("SEND", "1.2"), ("SEND", "1.0"), ("CONNECT", "1.2")):
        with pytest.raises(FrameError, match="NUL byte"):
            serialize(Frame(command, [("h", "a\x00b")]), version)
        with pytest.raises(FrameError, match="NUL byte"):
            serialize(Frame(command, [("h\x00", "v")]), version)
    with pytest.raises(FrameError, match="cannot carry a newline"):
        serialize(Frame("CONNECT", [("login", "a\nb")]))
    with pytest.raises(FrameError, match="cannot carry a newline"):
        serialize(Frame("CONNECTED", [("a:b", "v")]))
    # 1.0 has no escaping: what is given is written
    assert serialize(Frame("SEND", [("k", "a:b")]), "1.0") == b"SEND\nk:a:b\n\n\x00"


# -- the relay's short check and the header fast path agree with the full parse ----------

_pieces = st.sampled_from(
    [b"MESSAGE\n", b"RECEIPT\n", b"ERROR\n", b"CONNECTED\n", b"SEND\n", b"destination:/q/a\n",
     b"content-length:3\n", b"content-length:40\n", b"content-length:x\n", b"content-length:\n",
     b"message-id:a:b\n", b"\n", b"\r\n", b"\r", b"\x00", b"body", b"h:\\c\n", b"h:\\q\n", b"\xc3\xa9",
     b"\xff", b":\n", b"nocolon\n", b"a" * 30]
)  # fmt: skip
_lines = st.sampled_from(
    [b"destination:/q/a", b"content-length:3", b"content-length:40", b"content-length:x", b"content-length:",
     b"message-id:a:b", b"nocolon", b"h:\\c", b"h:\\q", b"h:\xc3\xa9", b"h:\xff", b":", b"a" * 45, b"h:\r"]
)  # fmt: skip
_frames = st.builds(
    lambda command, lines, eol, body, end: eol.join([command, *lines, b"", body]) + end,
    st.sampled_from([b"MESSAGE", b"MESSAGE", b"RECEIPT", b"ERROR", b"CONNECTED", b"SEND", b"MESS\xffAGE"]),
    st.lists(_lines, max_size=4),
    st.sampled_from([b"\n", b"\r\n"]),
    st.one_of(st.binary(max_size=50), st.sampled_from([b"abc", b"", b"x" * 40])),
    st.sampled_from([b"\x00", b"", b"\x00\n", b"\x00\r\n"]),
)
_inspect = frozenset({"CONNECTED", "ERROR"})


def _through_feed(chunks: list[bytes], parser: Parser) -> tuple[bytes, list[Any], str | None]:
    """What a relay forwards, worked out with feed: the bytes up to each whole item."""
    fed, done, inspected, error = bytearray(), 0, [], None
    try:
        for chunk in chunks:
            fed += chunk
            for item in parser.feed(chunk):
                done = len(fed) - parser.buffered
                if isinstance(item, Frame) and item.command in _inspect:
                    inspected.append(item)
    except FrameError as e:
        error = e.reason
    return bytes(fed[:done]), inspected, error


def _through_relay(chunks: list[bytes], parser: Parser) -> tuple[bytes, list[Any], str | None]:
    whole, inspected = bytearray(), []
    for chunk in chunks:
        relayed = parser.relay(chunk, _inspect)
        whole += relayed.data
        inspected += relayed.frames
        if relayed.error is not None:
            return bytes(whole), inspected, relayed.error.reason
    return bytes(whole), inspected, None


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(st.lists(_pieces, max_size=40), st.lists(_frames, max_size=6)).map(b"".join),
    st.lists(st.integers(min_value=1, max_value=30), max_size=10),
    st.sampled_from(["1.0", "1.1", "1.2"]),
)
def test_relay_forwards_and_refuses_what_feed_would(data: bytes, cuts: list[int], version: str) -> None:
    chunks, offset = [], 0
    for cut in cuts:
        chunks.append(data[offset : offset + cut])
        offset += cut
    chunks.append(data[offset:])
    limits = Limits(max_line=40, max_headers=3, max_body=32)
    want = _through_feed(chunks, Parser(SERVER_COMMANDS, limits, version))
    got = _through_relay(chunks, Parser(SERVER_COMMANDS, limits, version))
    assert got[0] == want[0] and got[2] == want[2]
    assert [(f.command, f.headers, f.body) for f in got[1]] == [
        (f.command, f.headers, f.body) for f in want[1]
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"MESSAGE\nnocolon\n\nabc\x00",  # each check of the short path, and one frame past it
        b"MESSAGE\nh:\\q\n\nabc\x00",
        b"MESSAGE\nh:\\c\n\nabc\x00",
        b"MESSAGE\na:1\nb:2\nc:3\nd:4\n\nabc\x00",
        b"MESSAGE\nh:" + b"v" * 40 + b"\n\nabc\x00",
        b"MESSAGE\nh:\xc3\xa9\n\nabc\x00",
        b"MESSAGE\nh:\xff\n\nabc\x00",
        b"MESSAGE\ncontent-length:x\n\nabc\x00",
        b"MESSAGE\ncontent-length:\n\nabc\x00",
        b"MESSAGE\ncontent-length:33\n\n" + b"x" * 33 + b"\x00",
        b"MESSAGE\ncontent-length:2\n\nabc\x00",
        b"MESSAGE\ncontent-length:3\n\nabc\x00",
        b"MESSAGE\ncontent-length:3\ncontent-length:2\n\nabc\x00",
        b"MESSAGE\n\n" + b"x" * 33 + b"\x00",
        b"MESSAGE\r\ncontent-length:3\r\n\r\nabc\x00",
        b"MESSAGE\ncontent-length:3\r\nh:v\n\nabc\x00",
        b"RECEIPT\nreceipt-id:1\n\n\x00",
        b"SEND\ndestination:/q/a\n\n\x00",
        b"MESSAGE\x00\n\n",
    ],
)
@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_relay_short_check_agrees_frame_by_frame(data: bytes, version: str) -> None:
    limits = Limits(max_line=40, max_headers=3, max_body=32)
    fine = b"MESSAGE\ndestination:/q/a\n\nok\x00"
    for chunks in ([fine + data + fine], [fine + data], [fine, data[:-1]]):
        want = _through_feed(chunks, Parser(SERVER_COMMANDS, limits, version))
        assert _through_relay(chunks, Parser(SERVER_COMMANDS, limits, version)) == want


def test_relay_gives_whole_frames_in_one_piece_and_keeps_the_rest() -> None:
    parser = Parser(SERVER_COMMANDS)
    message = b"MESSAGE\ndestination:/q/a\nmessage-id:1\ncontent-length:2\n\nhi\x00"
    relayed = parser.relay(b"CONNECTED\nversion:1.2\n\n\x00\n" + message * 2 + message[:10], _inspect)
    assert relayed.data == b"CONNECTED\nversion:1.2\n\n\x00\n" + message * 2
    assert [f.command for f in relayed.frames] == ["CONNECTED"] and relayed.error is None
    assert parser.buffered == 10
    relayed = parser.relay(message[10:] + b"MESSAGE\nno colon\n\n\x00", _inspect)
    assert relayed.data == message and relayed.error is not None
    assert relayed.error.reason == "a header line has no colon"


def _lines_reference(text: str, max_line: int, version: str) -> list[tuple[str, str]]:
    """The header lines read one by one, as a plain reading of the rules does."""
    headers = []
    for line in text.replace("\r\n", "\n").split("\n")[1:]:
        if len(line) > max_line:
            raise FrameError("a header line is longer than")
        key, sep, value = line.partition(":")
        if not sep:
            raise FrameError("a header line has no colon")
        if version != "1.0" and "\\" in text:
            key, value = unescape(key, version), unescape(value, version)
        headers.append((key, value))
    return headers


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from(["a", ":", "\r", "\\", "n", "c", "é", " ", "\x0b"]), max_size=12),
        max_size=5,
    ),
    st.sampled_from(["1.0", "1.1", "1.2"]),
)
def test_headers_read_as_line_by_line(lines: list[str], version: str) -> None:
    text = "\n".join(["SEND", *lines])
    parser = Parser(CLIENT_COMMANDS, Limits(max_line=10, max_headers=8), version)
    try:
        want: Any = _lines_reference(text, 10, version)
    except FrameError as e:
        want = e.reason.split(" bytes")[0].split(" than")[0]
    try:
        got: Any = parser._head(text.encode())[0].headers
    except FrameError as e:
        got = e.reason.split(" bytes")[0].split(" than")[0]
    assert got == want
