"""
A backend at an address literal (C{tcp:127.0.0.1:5900}), connected with
the reactor's C{connectTCP} and no endpoint around it.

Twisted's TCP endpoints wrap every connection's protocol in one of their
own (C{_WrappingProtocol}) to learn when it is made: one more object per
tunnel, one more call on every read from the backend, and at each connect
a zope declaration made for the wrapper (C{directlyProvides}); without
them a handshake costs 7-9% less CPU in memory (docs/decisions.md).  Here
the backend's own protocol (L{BackendProtocol}) is the connection's: it
tells its L{BackendProtocol.made} when it is made.

Names still go through Twisted's C{HostnameEndpoint} (resolution, IPv4 and
IPv6 tried in turn), and every other description through its endpoint.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IAddress, IConnector, IReactorTCP
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from tunnelgw.tunnel.legs import BackendProtocol

__all__ = ["connect_backend"]


class _Connecting(ClientFactory):
    """
    One connection attempt: its Deferred fires with the backend's protocol
    once it is made, or fails with why it could not be (refused, timed
    out, cancelled: the errors a Twisted endpoint gives).
    """

    noisy = False  # no "Starting/Stopping factory" line per backend connection

    def __init__(self) -> None:
        self.connector: IConnector | None = None
        self.result: defer.Deferred[BackendProtocol] | None = defer.Deferred(self._cancel)
        """Until it is handed on: the connection's connector keeps this
        factory as long as the connection lives, and what the Deferred's
        callbacks return must not be kept through it."""

    def _cancel(self, result: defer.Deferred[BackendProtocol]) -> None:
        connector, self.connector, self.result = self.connector, None, None
        if connector is None:
            return
        result.errback(error.ConnectingCancelledError(connector.getDestination()))
        connector.stopConnecting()  # its clientConnectionFailed finds no result to fail

    def buildProtocol(self, addr: IAddress | None) -> BackendProtocol:  # noqa: N802
        protocol = BackendProtocol()
        protocol.made, self.result, self.connector = self.result, None, None  # fired by its connectionMade
        return protocol

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:  # noqa: N802
        result, self.result, self.connector = self.result, None, None
        if result is not None:  # not yet handed on, nor cancelled
            result.errback(reason)


def connect_backend(reactor: IReactorTCP, address: tuple[str, int], timeout: float) -> defer.Deferred[Any]:
    """
    Connect a byte-stream backend at C{address} (from
    L{tunnelgw.upstream.address_of}): its L{BackendProtocol}, once
    connected.  Cancelling it stops the attempt.
    """
    attempt = _Connecting()
    result = attempt.result
    assert result is not None
    host, port = address
    try:
        attempt.connector = reactor.connectTCP(host, port, attempt, timeout=timeout)
    except Exception:
        return defer.fail()
    return result
