"""
The HTTP channel of every client connection: it counts itself in the
connection limits, gives the client C{handshake_timeout} for its request
head, answers malformed heads at once (L{StrictHead}), and takes an upgrade
that comes whole in the first read on the fast path.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from twisted.web import http, server

from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.errors import Refusal
from tunnelgw.front.strict_head import StrictHead
from tunnelgw.front.upgrade import (
    parse_upgrade_head,
    refusal_response,
    take_over,
)
from tunnelgw.limits import Lease
from tunnelgw.logs import Logger
from tunnelgw.tunnel.deadlines import Deadline, deadlines
from tunnelgw.websocket.server import AdmittedFactory

__all__ = ["GatewayChannel"]


def _new_conn_id() -> str:
    """
    A connection's id in the logs: 12 hex digits.  Not a secret (it is
    never sent to a client, nor used as a key), so it comes from Python's
    random generator (reseeded in every forked child) rather than the
    kernel's, which costs a system call per connection.
    """
    return f"{random.getrandbits(48):012x}"


class GatewayChannel(StrictHead, http.HTTPChannel):
    """
    An HTTP/1.1 channel that counts itself in the connection limits and
    gives a client C{handshake_timeout} seconds, in all, to send a complete
    request head (slowloris), not merely some byte now and then.

    A service's upgrade that comes whole in the first read takes the fast
    path (L{tunnelgw.front.upgrade}): admitted without twisted.web, then
    handed to autobahn with the bytes it came in.  A head twisted.web
    would close on silently or wait on is answered (L{StrictHead}).
    """

    log = Logger()
    transport: Any  # ITCPTransport or TLS; untyped in Twisted
    site: Any  # the GatewaySite
    lease: Lease | None = None
    conn_id: str = ""
    _deadline: Deadline | None = None
    _first_read = True
    # on the fast path, while the upgrade is admitted: the head and what
    # the client sent after it (bounded: reading stops past EARLY_BYTES)
    _upgrade: Any = None  # the Upgrade being admitted (resources.Upgrade)
    _early: list[bytes] | None = None
    EARLY_BYTES = 0x4000  # as twisted.web's HTTPChannel (_optimisticEagerReadSize)

    def connectionMade(self) -> None:
        # twisted.web's own set-up (TCP_NODELAY, the channel registered as
        # its transport's producer) waits until twisted.web reads this
        # connection (the first read, in dataReceived): an upgrade on the
        # fast path never needs it (autobahn sets TCP_NODELAY itself).
        self.conn_id = _new_conn_id()
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", "unix")
        self.lease = self.site.limiter.acquire(self.peer_host)
        self._start_deadline()

    def _start_deadline(self) -> None:
        queue = deadlines(self.site.clock, self.site.config.handshake_timeout)
        self._deadline = queue.call(self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        self.log.info(
            "connection {conn_id} from {peer}: no complete request within {timeout}s",
            event="handshake_timeout",
            conn_id=self.conn_id,
            peer=self.peer_host,
            timeout=self.site.config.handshake_timeout,
        )
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.transport.loseConnection()
        self.site.clock.callLater(1.0, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
            if sum(map(len, self._early)) > self.EARLY_BYTES:
                self.transport.pauseProducing()
            return
        if self._first_read:
            self._first_read = False
            self._proxied_peer()
            if self._fast_upgrade(data):
                return
            super().connectionMade()  # twisted.web's part of it, now needed
        if self.check_head(data):
            super().dataReceived(data)

    def _proxied_peer(self) -> None:
        """
        Behind a PROXY-protocol listener (C{haproxy:tcp:...}), the client's
        address is known once the header has been read, just before these
        first bytes: the connection is counted against it, not against the
        balancer's.
        """
        host = getattr(self.transport.getPeer(), "host", "unix")
        if host != self.peer_host and self.lease is not None:
            self.lease.release()
            self.peer_host = host
            self.lease = self.site.limiter.acquire(host)

    def _fast_upgrade(self, data: bytes) -> bool:
        head = parse_upgrade_head(data)
        if head is None:
            return False
        resource = self.site.upgrades.get(head.path)
        if resource is None or self.lease is None:
            return False
        self._stop_deadline()
        areq = AdmissionRequest(
            conn_id=self.conn_id,
            peer_host=self.peer_host,
            path=head.path.decode("ascii"),
            method="GET",
            headers=head.headers,
            lease=self.lease,
            # as twisted.web's isSecure, without its adapter lookup
            secure=ISSLTransport.providedBy(self.transport),
            query=_decoded_args(head.query),
            peer_certificate=_peer_certificate(self.transport),
        )
        self._early = [data]
        upgrade = resource.upgrade(areq, self, self._hand_over, self._refuse_upgrade)
        if self._early is not None:  # not yet decided (it may be at once)
            self._upgrade = upgrade
        return True

    def _hand_over(self, factory: AdmittedFactory) -> None:
        transport, self.transport = self.transport, None
        early, self._early, self._upgrade = self._early or [], None, None
        protocol = factory.buildProtocol(transport.getPeer())
        take_over(transport, protocol)
        transport.resumeProducing()  # if the early bytes paused it
        # autobahn parses the head again, then takes what followed as frames
        protocol.dataReceived(b"".join(early))

    def _refuse_upgrade(self, refusal: Refusal) -> None:
        self._early = self._upgrade = None
        # the connection closes: nothing more is read (as twisted.web's
        # channel drops what follows a request it will not keep alive for)
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.transport.write(refusal_response(refusal))
        self.transport.loseConnection()

    body_limit = 0
    """The largest body the request being read may have (L{GatewaySite.body_limit})."""
    _target: bytes | None = None  # the request line's target, while its request is read

    def lineReceived(self, line: bytes) -> None:
        if self._target is None and line:
            parts = line.split()
            self._target = parts[1] if len(parts) == 3 else b""
        super().lineReceived(line)

    def allHeadersReceived(self) -> None:
        # A declared body over the limit is refused before any of it is read
        # (twisted.web would otherwise spool it to a temporary file).
        self.body_limit = self.site.body_limit((self._target or b"").partition(b"?")[0])
        if self.length is not None and self.length > self.body_limit:
            self.body_too_large()
            return
        super().allHeadersReceived()

    def body_too_large(self) -> None:
        """
        Answer 413 and close; the parser stops once the transport is closing.
        """
        if self.transport.disconnecting:
            return
        self._stop_deadline()
        self.log.info(
            "connection {conn_id} from {peer}: request body over {limit} bytes",
            event="admission",
            decision="refuse",
            status=413,
            conn_id=self.conn_id,
            peer=self.peer_host,
            limit=self.body_limit,
            reason="request body too large",
        )
        self.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()

    def allContentReceived(self) -> None:
        self._target = None  # what follows is the next request's
        self._stop_deadline()
        super().allContentReceived()

    forward: Any = None
    """The WebSocket protocol this connection was handed to (twisted.web's path)."""

    def rawDataReceived(self, data: bytes) -> None:
        # twisted.web hands the rest of a read to this once a request's head
        # is in; after an upgrade admitted in that read, it is the
        # WebSocket's (frames sent with the head), not a pipelined request.
        if self.forward is not None:
            self.forward.dataReceived(data)
            return
        super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and self.transport is not None:
            self._start_deadline()

    def take_lease(self) -> Lease | None:
        """
        The connection becomes a tunnel: its lease goes with it.
        """
        lease, self.lease = self.lease, None
        self._stop_deadline()
        return lease

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stop_deadline()
        if self._upgrade is not None:
            upgrade, self._upgrade, self._early = self._upgrade, None, None
            upgrade.cancel()
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        super().connectionLost(reason)


def _headers_of(request: server.Request) -> dict[str, list[str]]:
    return {
        name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
        for name, values in request.requestHeaders.getAllRawHeaders()
    }


def _decoded_args(args: dict[bytes, list[bytes]]) -> dict[str, list[str]]:
    """
    Query arguments as twisted.web parses them (C{Request.args}), as text.
    """
    return {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in args.items()}


def _peer_certificate(transport: Any) -> Any:
    """
    The client's certificate on a TLS connection that asked for one (and
    verified it against the listener's client_ca), as a cryptography
    certificate; otherwise C{None}.
    """
    if not ISSLTransport.providedBy(transport):
        return None
    certificate: Any = transport.getPeerCertificate()
    return certificate.to_cryptography() if certificate is not None else None
