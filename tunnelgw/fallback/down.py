"""
A fallback session's down requests: a stream (one long response, padded
at its start and kept alive by heartbeats, ended after a while so that a
proxy that buffers it all the same still lets it through) or a poll (a
response that ends as soon as it carries something).  Either way the
client asks again with what it has received, and the session sends the
rest (L{tunnelgw.fallback.session.FallbackSession.attach_down}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from tunnelgw.fallback.framing import HEARTBEAT, PAD, encode

__all__ = ["DownResponse", "FALLBACK_TYPE"]

FALLBACK_TYPE = "application/x-tunnelgw-fallback"
"""The content type of every fallback request and response body (not one a form can send)."""


class DownResponse:
    """
    One down request's response.  C{poll}: end once something was sent,
    or after C{lifetime} seconds with a heartbeat; else a stream: padding
    first, a heartbeat every C{heartbeat} seconds, ended after
    C{lifetime} seconds or C{max_bytes} bytes.
    """

    def __init__(
        self,
        request: Any,  # a twisted.web Request
        session: Any,  # the FallbackSession
        clock: IReactorTime,
        *,
        poll: bool,
        lifetime: float,
        heartbeat: float,
        padding: int,
        max_bytes: int,
    ) -> None:
        self._request = request
        self._session = session
        self._clock = clock
        self._poll = poll
        self._heartbeat_every = heartbeat
        self._max_bytes = max_bytes
        self.sent = 0
        self.done = False
        self._heartbeat: IDelayedCall | None = None
        self._ending: IDelayedCall | None = clock.callLater(lifetime, self._lived)
        request.setHeader("Content-Type", FALLBACK_TYPE)
        # nginx passes a response with this header on as it comes, whatever
        # its proxy_buffering says
        request.setHeader("X-Accel-Buffering", "no")
        request.notifyFinish().addBoth(self._gone)
        if not poll:
            request.write(encode(PAD, 0, bytes(padding)))
            self._beat_later()

    def write(self, frame: bytes) -> None:
        if self.done:
            return
        self._request.write(frame)
        self.sent += len(frame)
        if self._poll:
            # more may follow in this same turn (a resend): end on the next
            if self._ending is not None and self._ending.getTime() > self._clock.seconds():
                self._ending.reset(0)
        elif self.sent > self._max_bytes:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self._stop()
        self._session.detach_down(self)
        if self._request.channel is not None:
            self._request.finish()

    def _lived(self) -> None:
        self._ending = None
        if self._poll and not self.sent and not self.done:
            self._request.write(encode(HEARTBEAT, 0))
        self.finish()

    def _beat_later(self) -> None:
        self._heartbeat = self._clock.callLater(self._heartbeat_every, self._beat)

    def _beat(self) -> None:
        self._heartbeat = None
        if not self.done:
            self._request.write(encode(HEARTBEAT, 0))
            self._beat_later()

    def _gone(self, result: Any) -> None:
        # the response finished, or the client (or a proxy) cut it
        if not self.done:
            self._stop()
            self._session.detach_down(self)

    def _stop(self) -> None:
        self.done = True
        for call in (self._heartbeat, self._ending):
            if call is not None and call.active():
                call.cancel()
        self._heartbeat = self._ending = None
