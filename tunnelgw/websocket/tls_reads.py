"""
One TCP read of a TLS connection, one read for the WebSocket: Twisted's
TLS layer hands its protocol the plaintext one TLS record at a time (16
KiB at most), so a 64 KiB read became four passes through autobahn's
parser, the tunnel and the adapter.  L{batch_tls_reads} puts a
L{TLSReadBatcher} between the TCP connection and the TLS layer: it
passes each read on to the TLS layer as before, while the client leg
keeps what the TLS layer delivers, and gets it whole once the read is
done.  Only public attributes are used: the TCP connection's C{protocol}
(which autobahn's resource and the upgrade fast path set the same way)
and the TLS protocol's C{transport}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol, ILoggingContext, IProtocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

__all__ = ["TLSReadBatcher", "batch_tls_reads"]


@implementer(IProtocol, ILoggingContext)
class TLSReadBatcher:
    """
    The TCP connection's protocol in place of the TLS layer: reads go to
    the TLS layer inside one batch of the client leg's (its C{batch} and
    C{deliver_batch}); everything else is the TLS layer's.  The one
    interface a TCP connection asks of its protocol, L{IHalfCloseableProtocol},
    is provided when the TLS layer provides it (L{HalfCloseableBatcher});
    declared on the class, not copied onto each instance (which cost a
    TLS handshake some 40 us).
    """

    def __init__(self, tls: TLSMemoryBIOProtocol, leg: Any) -> None:
        self._tls = tls
        self._leg = leg

    def dataReceived(self, data: bytes) -> None:
        leg = self._leg
        leg.batch = []
        try:
            self._tls.dataReceived(data)
        finally:
            leg.deliver_batch()

    # the rest of IProtocol and ILoggingContext: the TLS layer's
    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self._tls.makeConnection(transport)

    def connectionMade(self) -> None:  # noqa: N802
        self._tls.connectionMade()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self._tls.connectionLost(reason)

    def logPrefix(self) -> str:  # noqa: N802
        return str(self._tls.logPrefix())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tls, name)


@implementer(IHalfCloseableProtocol)
class HalfCloseableBatcher(TLSReadBatcher):
    """A L{TLSReadBatcher} for a TLS layer that takes half-closes."""

    def readConnectionLost(self) -> None:  # noqa: N802
        self._tls.readConnectionLost()  # type: ignore[attr-defined]

    def writeConnectionLost(self) -> None:  # noqa: N802
        self._tls.writeConnectionLost()  # type: ignore[attr-defined]


def batch_tls_reads(leg: Any) -> bool:
    """
    Batch the TLS reads of C{leg}'s connection, if it is one of Twisted's
    TLS layers over a TCP connection whose protocol it is.
    """
    tls: Any = leg.transport
    if not isinstance(tls, TLSMemoryBIOProtocol):
        return False
    layer: TLSMemoryBIOProtocol = tls
    tcp: Any = layer.transport
    if getattr(tcp, "protocol", None) is not layer:
        return False
    kind = HalfCloseableBatcher if IHalfCloseableProtocol.providedBy(layer) else TLSReadBatcher
    tcp.protocol = kind(layer, leg)
    return True
