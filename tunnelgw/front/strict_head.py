"""
What twisted.web's HTTP channel does with a malformed request head, made
an answer at once rather than a silent close or a wait for the deadline:

  - a request line longer than twisted.web's line limit (16 KiB): 414; a
    header line: 431 (twisted.web closed the connection with no response);
  - a bare LF as a line end (RFC 9112 2.2 allows refusing it): 400 (the
    head never ended for twisted.web, which waited for the 408).

Mixed into L{tunnelgw.front.site.GatewayChannel} before twisted.web's
C{HTTPChannel}.
"""

from __future__ import annotations

import re
from typing import Any

from tunnelgw.front.upgrade import status_phrase

__all__ = ["StrictHead"]

# an LF that no CR precedes
_BARE_LF = re.compile(rb"(?<!\r)\n")


class StrictHead:
    # of the channel this is mixed into
    transport: Any
    line_mode: int
    requests: list[Any]
    log: Any
    conn_id: str
    peer_host: str
    _tail = b""
    _refused_head = False

    def check_head(self, data: bytes) -> bool:
        """
        C{data} arrives while twisted.web reads a request head: C{False}
        (and the answer given) if it holds a bare LF before the head's end.
        """
        if not self.line_mode or self._refused_head:
            return not self._refused_head
        chunk = self._tail + data
        end = chunk.find(b"\r\n\r\n")
        head = chunk if end < 0 else chunk[: end + 2]
        if _BARE_LF.search(head) is not None:
            self.refuse_head(400, "a line of the request head ends in a bare LF")
            return False
        # enough to see a CRLF or the head's end split across reads
        self._tail = b"" if end >= 0 else chunk[-3:]
        return True

    def lineLengthExceeded(self, line: bytes) -> None:
        # twisted.web's LineReceiver closes the connection with no answer
        if self.requests:
            self.refuse_head(431, "a header line is longer than 16 KiB")
        else:
            self.refuse_head(414, "the request line is longer than 16 KiB")

    def refuse_head(self, status: int, reason: str) -> None:
        """
        Answer C{status} to a head that is not read any further, log it,
        and close.
        """
        if self._refused_head:
            return
        self._refused_head = True
        stop = getattr(self, "_stop_deadline", None)
        if stop is not None:
            stop()
        self.log.info(
            "connection {conn_id} from {peer}: {status} {reason}",
            event="admission",
            decision="refuse",
            status=status,
            conn_id=self.conn_id,
            peer=self.peer_host,
            reason=reason,
        )
        self.transport.write(
            f"HTTP/1.1 {status} {status_phrase(status)}\r\nConnection: close\r\n"
            "Content-Length: 0\r\n\r\n".encode("ascii")
        )
        self.transport.loseConnection()
