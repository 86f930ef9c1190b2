"""
The inner side of reverse links: an inner gateway dials out to an outer
one (L{LinkDialer}), keeps idle links open, and serves each session the
outer opens over one (L{LinkClientProtocol}) through its own admission.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from twisted.application.service import Service
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall

from tunnelgw.logs import Logger
from tunnelgw.upstream.chain import check_url
from tunnelgw.upstream.links import LINK_SUBPROTOCOL, MAX_OPEN_MESSAGE, ReverseLink
from tunnelgw.websocket.leg import WebSocketLeg

__all__ = ["LinkClientProtocol", "LinkDialer"]


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
