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
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall

from tunnelgw.errors import Refusal
from tunnelgw.logs import Logger
from tunnelgw.upstream.chain import MessageLeg, check_url, refusal_of
from tunnelgw.websocket.leg import WebSocketLeg

__all__ = [
    "LINK_SUBPROTOCOL",
    "LinkDialer",
    "LinkPool",
    "LinkServerProtocol",
    "PoolConfig",
    "ReverseLink",
    "link_factory",
]

LINK_SUBPROTOCOL = "tunnelgw-link"
MAX_OPEN_MESSAGE = 16 * 1024


@dataclass(frozen=True)
class PoolConfig:
    """
    C{[links.NAME]}: where inner gateways dial in, and who may.
    """

    name: str
    path: str
    certificate_subject: str
    wait_timeout: float = 5.0
    max_idle: int = 64
    ping_interval: float = 15.0


@dataclass(frozen=True)
class ReverseLink:
    """
    C{[[gateway.reverse_links]]}: an outer gateway to dial out to.
    """

    outer: str
    tls: Any
    pool: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    ping_interval: float = 15.0


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


# -- the inner side --------------------------------------------------------------


class LinkClientProtocol(WebSocketLeg, WebSocketClientProtocol):  # type: ignore[misc]
    """
    The inner end of a reverse link: waits for the outer's open request,
    admits it through this gateway's pipeline, then is the session's client
    leg (L{tunnelgw.tunnel.legs.ClientLeg}).
    """

    dialer: LinkDialer
    transport: Any

    def __init__(self) -> None:
        super().__init__()
        self.tunnel: Any = None
        self._requested = False

    def onOpen(self) -> None:
        self.dialer.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.tunnel is not None:
            self.tunnel.client_message(payload, isBinary)
            return
        if self._requested:
            return  # data before our answer: the outer must wait for it
        self._requested = True
        self.dialer.used(self)
        try:
            request = json.loads(payload) if not isBinary and len(payload) <= MAX_OPEN_MESSAGE else None
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("open"), str):
            self.close(1002, "not a link open request")
            return
        self.transport.pauseProducing()
        self.dialer.admit(self, request)

    def accept(self, subprotocol: str | None) -> None:
        self.sendMessage(json.dumps({"accept": subprotocol}).encode(), False)
        self.transport.resumeProducing()

    def refuse(self, status: int, reason: str) -> None:
        self.sendMessage(json.dumps({"refuse": status, "reason": reason}).encode(), False)
        self.transport.resumeProducing()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.tunnel is not None:
            self.tunnel.client_closed(wasClean, code, reason)
        self.dialer.lost(self)


class LinkDialer(Service):
    """
    Keeps C{pool} idle links open to one outer gateway.
    """

    log = Logger()

    def __init__(self, link: ReverseLink, reactor: Any, admit: Any) -> None:
        self.link = link
        self.reactor = reactor
        self._admit = admit
        self.idle: set[LinkClientProtocol] = set()
        self._dialing = 0
        self._delay = link.backoff_initial
        self._retry: IDelayedCall | None = None
        host, port, _ = check_url(link.outer)
        self._endpoint = wrapClientTLS(link.tls, HostnameEndpoint(reactor, host, port, timeout=10))

    def startService(self) -> None:
        super().startService()
        self._fill()

    def stopService(self) -> Any:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        for link in list(self.idle):
            link.abort()
        return None

    def _fill(self) -> None:
        if not self.running:
            return
        # counted first: a dial that fails at once must not be redialled here
        # (its failure schedules a retry after the backoff)
        for _ in range(self.link.pool - len(self.idle) - self._dialing):
            self._dial()

    def _dial(self) -> None:
        self._dialing += 1
        factory = WebSocketClientFactory(
            self.link.outer, protocols=[LINK_SUBPROTOCOL], reactor=self.reactor, useragent="tunnelgw-link"
        )
        factory.setProtocolOptions(
            version=13,
            utf8validateIncoming=True,
            maskClientFrames=True,
            autoPingInterval=self.link.ping_interval,
            autoPingTimeout=10,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=5,
            failByDrop=False,
            tcpNoDelay=True,
        )
        factory.protocol = type("LinkClientProtocol_", (LinkClientProtocol,), {"dialer": self})  # type: ignore[assignment]
        factory.noisy = False
        d = self._endpoint.connect(factory)
        d.addErrback(self._failed)

    def opened(self, link: LinkClientProtocol) -> None:
        self._dialing -= 1
        self._delay = self.link.backoff_initial
        self.idle.add(link)
        self.log.info(
            "reverse link open to {outer} ({idle} idle)",
            event="link_open",
            outer=self.link.outer,
            idle=len(self.idle),
        )

    def used(self, link: LinkClientProtocol) -> None:
        self.idle.discard(link)
        self._fill()

    def lost(self, link: LinkClientProtocol) -> None:
        if link in self.idle:
            self.idle.discard(link)
            self._later()
        elif not link._requested:
            # closed before it opened: the outer refused or is unreachable
            self._dialing -= 1
            self._later()

    def _failed(self, f: Any) -> None:
        self._dialing -= 1
        self.log.warn(
            "reverse link to {outer} failed: {why}; retrying in {delay:g}s",
            event="link_failed",
            outer=self.link.outer,
            why=f.getErrorMessage(),
            delay=self._delay,
        )
        self._later()

    def _later(self) -> None:
        """
        Dial again after the backoff delay (doubling, capped).
        """
        if not self.running or (self._retry is not None and self._retry.active()):
            return
        delay = self._delay
        self._delay = min(self._delay * 2, self.link.backoff_max)
        self._retry = self.reactor.callLater(delay, self._fill)

    def admit(self, link: LinkClientProtocol, request: dict[str, Any]) -> None:
        self._admit(link, request)
