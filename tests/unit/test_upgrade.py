"""
The upgrade fast path's head parser: what it takes, it reads as
twisted.web would; everything else it leaves to twisted.web.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.errors import Refusal
from tunnelgw.front.upgrade import MAX_HEAD, MAX_HEADERS, parse_upgrade_head, refusal_response

HEAD = (
    b"GET /raw HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def with_header(line: bytes) -> bytes:
    return HEAD[:-2] + line + b"\r\n\r\n"


class ParseTests(SynchronousTestCase):
    def test_a_plain_upgrade(self) -> None:
        head = parse_upgrade_head(HEAD)
        assert head is not None
        self.assertEqual(head.path, b"/raw")
        self.assertEqual(head.query, {})
        self.assertEqual(head.headers["sec-websocket-key"], ["dGhlIHNhbXBsZSBub25jZQ=="])
        self.assertEqual(list(head.headers)[0], "host")

    def test_query_as_twisted_web_reads_it(self) -> None:
        head = parse_upgrade_head(HEAD.replace(b"/raw", b"/raw?token=a%20b&empty=&x=1&x=2"))
        assert head is not None
        self.assertEqual(head.path, b"/raw")
        self.assertEqual(head.query, {b"token": [b"a b"], b"empty": [b""], b"x": [b"1", b"2"]})

    def test_repeated_headers_kept_in_order_and_values_stripped(self) -> None:
        head = parse_upgrade_head(
            with_header(b"Sec-WebSocket-Protocol:  a, b \t\r\nsec-websocket-protocol:c\r\nX-Empty:")
        )
        assert head is not None
        self.assertEqual(head.headers["sec-websocket-protocol"], ["a, b", "c"])
        self.assertEqual(head.headers["x-empty"], [""])

    def test_left_to_twisted_web(self) -> None:
        for data in (
            HEAD[:-1],  # incomplete
            HEAD + b"\x81",  # something after the head
            HEAD.replace(b"GET", b"POST"),
            HEAD.replace(b"GET", b"get"),
            HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
            HEAD.replace(b"GET /raw", b"GET  /raw"),
            HEAD.replace(b"/raw", b"http://gw/raw"),  # absolute form
            HEAD.replace(b"/raw", b"*"),
            HEAD.replace(b"/raw", b"/r\xc3\xa9"),
            with_header(b" folded"),  # obs-fold
            with_header(b"X-A : b"),  # space before the colon
            with_header(b"X-A"),  # no colon
            with_header(b": b"),  # no name
            with_header(b"X(A): b"),  # not a token
            with_header(b"X-A: b\nX-B: c"),  # bare LF
            with_header(b"X-A: b\rc"),  # bare CR
            with_header(b"X-A: b\x00c"),  # NUL
            with_header(b"X-A: b\x7fc"),  # control character
            with_header(b"X-A: caf\xc3\xa9"),  # obs-text
            with_header(b"Content-Length: 0"),
            with_header(b"Transfer-Encoding: chunked"),
            with_header(b"Expect: 100-continue"),
            with_header(b"X-Big: " + b"a" * MAX_HEAD),
            with_header(b"\r\n".join(b"X-%d: y" % i for i in range(MAX_HEADERS))),
        ):
            self.assertIsNone(parse_upgrade_head(data), data)

    def test_the_limits_themselves_are_fine(self) -> None:
        lines = b"\r\n".join(b"X-%d: y" % i for i in range(MAX_HEADERS - 6))
        self.assertIsNotNone(parse_upgrade_head(with_header(lines)))
        padding = MAX_HEAD - len(HEAD) - len(b"X-Pad: \r\n") + 4
        data = with_header(b"X-Pad: " + b"a" * padding)
        self.assertEqual(data.find(b"\r\n\r\n"), MAX_HEAD)
        self.assertIsNotNone(parse_upgrade_head(data))


class RefusalResponseTests(SynchronousTestCase):
    def test_status_headers_and_reason(self) -> None:
        data = refusal_response(Refusal(429, "slow down", {"Retry-After": "5"}))
        head, _, body = data.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        self.assertEqual(status, b"HTTP/1.1 429 Too Many Requests")
        headers = dict(line.split(b": ", 1) for line in lines)
        self.assertEqual(headers[b"Retry-After"], b"5")
        self.assertEqual(headers[b"Connection"], b"close")
        self.assertEqual(headers[b"Content-Length"], str(len(body)).encode())
        self.assertEqual(body, b"slow down\n")
        self.assertIn(b"GMT", headers[b"Date"])

    def test_unknown_status_phrase(self) -> None:
        self.assertTrue(
            refusal_response(Refusal(499, "gone")).startswith(b"HTTP/1.1 499 Client Closed Request\r\n")
        )
        self.assertTrue(refusal_response(Refusal(599, "odd")).startswith(b"HTTP/1.1 599 Error\r\n"))
