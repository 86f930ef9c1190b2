"""
Reverse connectivity: the inner gateway dials out to the outer one, so the
inner firewall needs no inbound port.

Inner side (L{LinkDialer}, one per C{[[gateway.reverse_links]]}): keeps
C{pool} idle WebSocket links open to the outer gateway's link path (mTLS:
its client certificate; the outer's certificate verified against the
configured CA and name), subprotocol C{tunnelgw-link}.  A link that is used
or dies is replaced; an outer gateway that cannot be reached is retried
with exponential backoff up to C{backoff_max}.

Outer side (L{LinkPool}, one per C{[links.NAME]}; L{LinkServerProtocol} on
the link path): idle links wait in the pool.  A client arriving for a
service with C{upstream = "reverse:NAME"} takes one (waiting at most
C{wait_timeout}, then 503), and the outer sends one text message on it:

    {"open": PATH, "subprotocol": ..., "assertion": JWT, "origin": ...}

The inner admits it through its own pipeline for PATH exactly as a chained
upgrade (the C{assertion} login module sees the outer's certificate, the
link's peer), and answers C{{"accept": SUBPROTOCOL}} or
C{{"refuse": STATUS, "reason": ...}}.  After an accept the link carries
the session's messages as they are, both ways, and is closed with the
session: links are used once.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from tunnelgw.config.model import PoolConfig, ReverseLink
from tunnelgw.errors import Refusal
from tunnelgw.logs import Logger
from tunnelgw.upstream.chain import MessageLeg, refusal_of

__all__ = [
    "LINK_SUBPROTOCOL",
    "LinkPool",
    "LinkServerProtocol",
    "PoolConfig",
    "ReverseLink",
    "link_factory",
]

LINK_SUBPROTOCOL = "tunnelgw-link"
MAX_OPEN_MESSAGE = 16 * 1024


# -- the outer side ------------------------------------------------------------


class LinkPool:
    """
    The idle links of one C{[links.NAME]}, and the clients waiting for one.
    """

    log = Logger()

    def __init__(self, config: PoolConfig, clock: Any) -> None:
        self.config = config
        self.clock = clock
        self.idle: deque[LinkServerProtocol] = deque()
        self._waiting: deque[tuple[defer.Deferred[LinkServerProtocol], IDelayedCall]] = deque()

    def offer(self, link: LinkServerProtocol) -> None:
        """
        An inner gateway opened a link.
        """
        while self._waiting:
            d, timer = self._waiting.popleft()
            if timer.active():
                timer.cancel()
            if not d.called:
                d.callback(link)
                return
        if len(self.idle) >= self.config.max_idle:
            link.close(1013, "enough idle links")
            return
        self.idle.append(link)

    def forget(self, link: LinkServerProtocol) -> None:
        if link in self.idle:
            self.idle.remove(link)

    def session(
        self, service: Any, subject: Any, subprotocol: str | None, origin: str | None
    ) -> defer.Deferred[LinkServerProtocol]:
        """
        Open a session for C{service} on an idle link: the inner gateway
        admits it (at the same path) and the link, accepted, is the
        session's backend leg; or a Refusal.
        """
        opening = {
            "open": service.path,
            "subprotocol": subprotocol,
            "origin": origin,
            "assertion": service.adapter_options.signer.sign(subject, self.clock.seconds()),
        }
        return self.take().addCallback(lambda link: link.open_session(opening))

    def take(self) -> defer.Deferred[LinkServerProtocol]:
        """
        An idle link, now or when one comes within C{wait_timeout}; else a
        503 refusal.
        """
        if self.idle:
            return defer.succeed(self.idle.popleft())

        def cancel(d: defer.Deferred[LinkServerProtocol]) -> None:
            self._waiting = deque(w for w in self._waiting if w[0] is not d)

        d: defer.Deferred[LinkServerProtocol] = defer.Deferred(cancel)

        def expired() -> None:
            self._waiting = deque(w for w in self._waiting if w[0] is not d)
            d.errback(
                Refusal(
                    503,
                    f"no link from the inner gateway ({self.config.name}) within {self.config.wait_timeout:g}s",
                    {"Retry-After": "5"},
                )
            )

        self._waiting.append((d, self.clock.callLater(self.config.wait_timeout, expired)))
        return d


class LinkServerProtocol(MessageLeg, WebSocketServerProtocol):  # type: ignore[misc]
    """
    The outer end of a reverse link: idle in its pool, then one session's
    backend leg.
    """

    pool: LinkPool

    def __init__(self) -> None:
        WebSocketServerProtocol.__init__(self)
        MessageLeg.__init__(self)
        self._answer: defer.Deferred[LinkServerProtocol] | None = None
        self._idle = True

    def onConnect(self, request: Any) -> str:
        return LINK_SUBPROTOCOL

    def onOpen(self) -> None:
        self.transport.unregisterProducer()  # twisted.web's channel, as for tunnels
        self.pool.offer(self)

    def open_session(self, request: dict[str, Any]) -> defer.Deferred[LinkServerProtocol]:
        """
        Ask the inner gateway to admit a session; fires with this link once
        it accepted (a BackendLeg), or fails with a Refusal.
        """
        self._idle = False
        self._answer = defer.Deferred(lambda d: self.abort())
        self.sendMessage(json.dumps(request).encode(), False)
        return self._answer

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        answer, self._answer = self._answer, None
        if answer is None:
            MessageLeg.onMessage(self, payload, isBinary)
            return
        try:
            reply = json.loads(payload) if not isBinary else None
        except ValueError:
            reply = None
        if isinstance(reply, dict) and "accept" in reply:
            self.transport.pauseProducing()  # until the tunnel attaches
            answer.callback(self)
        elif isinstance(reply, dict) and isinstance(reply.get("refuse"), int):
            # the inner's refusal, relayed as a forward chain relays it
            answer.errback(refusal_of(reply["refuse"], str(reply.get("reason", ""))[:200]))
            self.close(1000, "session refused")
        else:
            answer.errback(Refusal(502, "the inner gateway answered the link with nonsense"))
            self.abort()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._idle:
            self.pool.forget(self)
            return
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.errback(Refusal(502, "the inner gateway closed the link"))
            return
        self.ended(wasClean, code, reason)


def link_factory(pool: LinkPool, reactor: Any) -> WebSocketServerFactory:
    factory = WebSocketServerFactory(reactor=reactor, server="tunnelgw")
    factory.setProtocolOptions(
        versions=[13],
        requireMaskedClientFrames=True,
        utf8validateIncoming=True,
        autoPingInterval=pool.config.ping_interval,
        autoPingTimeout=10,
        failByDrop=False,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=5,
        perMessageCompressionAccept=lambda offers: None,
    )
    factory.protocol = type(  # type: ignore[assignment]
        "LinkServerProtocol_" + pool.config.name, (LinkServerProtocol,), {"pool": pool}
    )
    factory.noisy = False
    return factory
