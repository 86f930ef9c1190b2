"""
What the tunnel needs of each side (L{ClientLeg}, L{BackendLeg}), and the
backend leg of a byte-stream service: a TCP, TLS or UNIX connection
(L{BackendProtocol}).
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from tunnelgw.tunnel.flow import half_close_now, release_connector, write_now

__all__ = ["BackendLeg", "BackendProtocol", "ClientLeg", "TunnelSide"]


class TunnelSide(TypingProtocol):
    """
    What a backend leg tells its tunnel (L{tunnelgw.tunnel.relay.Tunnel}).
    """

    def backend_data(self, data: bytes) -> None: ...

    def backend_eof(self) -> None: ...

    def backend_lost(self, reason: Failure, code: int | None = None, why: str | None = None) -> None: ...


class ClientLeg(TypingProtocol):
    """
    What the tunnel needs of the client side (the WebSocket protocol).
    """

    transport: Any

    def send_message(self, payload: bytes, is_binary: bool) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...

    def buffered_input(self) -> int: ...


class BackendLeg(TypingProtocol):
    """
    What the tunnel needs of the backend side: a byte stream
    (L{BackendProtocol}) or a message stream (a chained gateway,
    L{tunnelgw.upstream.chain.ChainProtocol}).  C{transport} is the
    connection underneath, for flow control.
    """

    transport: Any

    def attach(self, tunnel: Any) -> None: ...

    def write(self, data: bytes) -> None: ...

    def send_message(self, payload: bytes, is_binary: bool) -> None: ...

    def finish(self) -> None:
        """We send nothing more; the backend may finish (half-close)."""

    def close(self, code: int, reason: str) -> None:
        """Close after what was already sent."""

    def abort(self) -> None: ...


_DONE = Failure(ConnectionDone())


def _is_tls(transport: Any) -> bool:
    return bool(ISSLTransport.providedBy(transport))


@implementer(IHalfCloseableProtocol)
class BackendProtocol(Protocol):
    """
    The backend leg: a TCP (or TLS, or UNIX) connection to the service.

    It declares L{IHandshakeListener} only when its transport is TLS
    (L{connectionMade}): Twisted's endpoints wrap a protocol in one that
    declares just one of the two, the last it copies (C{directlyProvides}
    in a loop), and a wrapper without L{IHalfCloseableProtocol} turns the
    service's half-close into the end of the whole connection.

    It holds what happens until a tunnel attaches: what the service sends
    first (one read: it stops reading then), its end.  A tunnel usually
    attaches in the very reactor turn the connection is made, before
    anything can be read; pausing the transport at once would cost two
    epoll calls per connection for nothing.
    """

    transport: Any  # an ITCPTransport (or TLS/UNIX); untyped in Twisted

    def __init__(self) -> None:
        self.tunnel: TunnelSide | None = None
        self.lost: Failure | None = None
        self.eof = False
        self._early: list[bytes] | None = None

    # -- TLS ----------------------------------------------------------------

    # class defaults: most backends are plain TCP, and a tunnel is kept small
    secure = False
    """The TLS handshake is done and the server verified."""
    _secured: defer.Deferred[BackendProtocol] | None = None
    made: defer.Deferred[BackendProtocol] | None = None
    """Fired with this protocol when its connection is made, if set (by a
    connect that does not wrap it: L{tunnelgw.upstream.direct})."""

    def secured(self) -> defer.Deferred[BackendProtocol]:
        """
        Fires with this protocol once the TLS handshake under it is done and
        the server's certificate and name verified; fails with why if the
        connection is lost first (a wrong CA, a wrong name).  Cancelling it
        aborts the connection.
        """
        if self.secure:
            return defer.succeed(self)
        if self.lost is not None:
            return defer.fail(self.lost)
        self._secured = defer.Deferred(lambda d: self.transport.abortConnection())
        return self._secured

    def handshakeCompleted(self) -> None:
        # Twisted reports the handshake done even when the verification of
        # the server's name, run during it, has just failed and aborted the
        # connection (its connectionLost, with the reason, follows).
        if self.transport.disconnecting:
            return
        self.secure = True
        waiting, self._secured = self._secured, None
        if waiting is not None:
            waiting.callback(self)

    def connectionMade(self) -> None:
        # Interactive protocols (VNC input, STOMP, XMPP) must not wait on
        # Nagle; the client side is set the same way by autobahn.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if _is_tls(self.transport):
            alsoProvides(self, IHandshakeListener)  # its TLS layer asks once done
        made = self.made
        if made is not None:
            del self.made  # the class's None again: no attribute kept per tunnel
            made.callback(self)

    def attach(self, tunnel: TunnelSide) -> None:
        self.tunnel = tunnel
        early, self._early = self._early, None
        for data in early or ():
            tunnel.backend_data(data)
        if self.lost is not None:
            tunnel.backend_lost(self.lost)
        elif self.eof:
            tunnel.backend_eof()

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.backend_data(data)
            return
        # the service spoke before the tunnel attached: keep it, read no more
        if self._early is None:
            self._early = []
        self._early.append(data)
        self.transport.pauseProducing()

    # -- BackendLeg ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        write_now(self.transport, data)

    def send_message(self, payload: bytes, is_binary: bool) -> None:
        raise TypeError("a byte-stream backend takes bytes, not messages")

    def finish(self) -> None:
        if _is_tls(self.transport):
            # TLS's half-close is its close_notify (the server's data is
            # still read until its own); a TCP half-close under TLS would
            # cut it short, and Twisted's TLS layer then ends the
            # connection while it is still reading it ('NoneType' object
            # has no attribute 'bio_read', logged on every clean close).
            # The TLS layer sends it only once no producer is registered.
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        half_close_now(self.transport)

    def close(self, code: int, reason: str) -> None:
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def readConnectionLost(self) -> None:
        self.eof = True
        if self.tunnel is not None:
            self.tunnel.backend_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self.lost = reason
        waiting, self._secured = self._secured, None
        if waiting is not None:
            waiting.errback(reason)
        release_connector(self.transport)
        if self.tunnel is not None:
            self.tunnel.backend_lost(reason)
