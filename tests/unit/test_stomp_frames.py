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
    Frame,
    FrameError,
    Parser,
    serialize,
)


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
