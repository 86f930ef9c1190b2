"""
What tunnelgw does with Twisted's private names (see L{tunnelgw._compat}).

Shortcuts:
  - C{reactor}: L{QuietEPollReactor}.
  - C{write_now} and C{tls_writes}: in L{tunnelgw._compat.writes}.

Fixes:
  - L{buffered}, L{app_buffered}: the bytes a transport holds, which
    Twisted does not tell (the flush before a close, the peak buffers of
    a tunnel's log).
  - L{release_connector}: outgoing connections freed by reference
    counting, not by the collector.
  - L{early_bytes}: what a client sent after its head on twisted.web's
    path is not lost at the hand-over.
  - L{BoundedExpatStream}: xish's element stream with hooks for XMPP's
    depth, attribute and text bounds.

Every attribute is read so that its absence (another Twisted) falls back
to what the public API does; C{tests/unit/test_compat.py} checks each
against Twisted's real objects.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import tcp
from twisted.python import log
from twisted.words.xish import domish

__all__ = [
    "layers",
    "buffered",
    "app_buffered",
    "held_bytes",
    "release_connector",
    "QuietEPollReactor",
    "early_bytes",
    "BoundedExpatStream",
]

_MAX_DEPTH = 4

# Twisted's own TCP connections, whose attributes held_bytes reads
# directly (any other transport is looked at layer by layer, with care)
_TCP = frozenset({tcp.Server, tcp.Client})


def layers(transport: Any) -> list[Any]:
    """
    The transport and those under it (TLS over TCP: two layers).
    """
    found: list[Any] = []
    while transport is not None and len(found) < _MAX_DEPTH:
        found.append(transport)
        transport = getattr(transport, "transport", None)
    return found


# -- fixes: what a transport holds --------------------------------------------


def buffered(layer: Any) -> int | None:
    """
    The bytes in a file-descriptor transport's own write buffers
    (C{dataBuffer} past C{offset}, and the private C{_tempDataLen} of
    writes not yet joined to it), or C{None} if it has none (or Twisted's
    attributes are not as expected).
    """
    buf = getattr(layer, "dataBuffer", None)
    offset = getattr(layer, "offset", None)
    temp = getattr(layer, "_tempDataLen", None)
    if (
        not isinstance(buf, (bytes, bytearray, memoryview))
        or type(offset) is not int
        or type(temp) is not int
    ):
        return None
    return len(buf) - offset + temp


def app_buffered(layer: Any) -> int:
    """
    The bytes a TLS layer holds: small writes it gathers for the reactor's
    next turn (the private C{_buffer} of C{BufferingTLSTransport}'s
    C{_aggregator}), and what waits for its handshake (the private
    C{_appSendBuffer} of C{TLSMemoryBIOProtocol}); 0 for any other layer.
    """
    total = 0
    for held in (
        getattr(getattr(layer, "_aggregator", None), "_buffer", None),
        getattr(layer, "_appSendBuffer", None),
    ):
        if isinstance(held, list):
            total += sum(len(chunk) for chunk in held)
    return total


def held_bytes(transport: Any) -> int:
    """
    Bytes written to C{transport} that have not reached the kernel yet,
    through every layer (what L{buffered} and L{app_buffered} count); read
    directly on one of Twisted's plain TCP connections (every relayed
    message asks).
    """
    if type(transport) in _TCP:
        try:
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[no-any-return]
        except AttributeError:
            pass
    own = getattr(transport, "held_bytes", None)
    if own is not None:  # a transport of ours that counts its own (a fallback session)
        return int(own())
    total = 0
    for layer in layers(transport):
        total += buffered(layer) or 0
        if hasattr(layer, "_appSendBuffer"):  # TLS
            total += app_buffered(layer)
    return total


def release_connector(transport: Any) -> None:
    """
    Unlink a lost outgoing connection from its connector, and the connector
    from the endpoint's factory, so that reference counting frees them.

    Twisted leaves every outgoing connection in reference cycles: the
    connection and its connector refer to each other (C{connector},
    C{transport}), and an endpoint's wrapping factory refers to the
    connector (C{_connector}) and to its own Deferred (C{_onConnection}),
    whose canceller is the factory's method.  Only the garbage collector
    frees them then, with all they hold: for a backend connection that
    lived long, its protocol and its tunnel, kept in the oldest generation
    until a full collection (which scans every tunnel).  None of these
    links is followed once the connection is lost.  Where an attribute is
    missing (another Twisted), it is left alone: the collector frees it.
    """
    for layer in layers(transport):
        connector = getattr(layer, "connector", None)
        if connector is None:
            continue
        if getattr(connector, "transport", None) is layer:
            connector.transport = None
        factory: Any = getattr(connector, "factory", None)
        if getattr(factory, "_connector", None) is connector:
            factory._connector = None
        if getattr(getattr(factory, "_onConnection", None), "called", False):
            factory._onConnection = None


def early_bytes(channel: Any) -> bytes:
    """
    What twisted.web's C{HTTPChannel} holds unread (its private
    C{_dataBuffer}: the bytes after a request's head, kept while it waits
    for the request to finish), which a hand-over to another protocol
    would otherwise drop.
    """
    return b"".join(getattr(channel, "_dataBuffer", None) or ())


# -- shortcut "reactor" ---------------------------------------------------------


def _prefix(selectable: Any) -> str:
    try:
        return str(selectable.logPrefix())
    except Exception:
        return "(buggy logPrefix method)"


try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # no epoll here (not Linux): Twisted's default reactor
    EPollReactor = object  # type: ignore[assignment,misc]


class QuietEPollReactor(EPollReactor):
    """
    C{EPollReactor} whose I/O events run without a legacy logging context.

    Twisted's C{doPoll} hands each ready descriptor to
    C{twisted.python.log.callWithLogger}, which asks the selectable for its
    C{logPrefix()}, copies the legacy logging context twice and pushes it.
    This one runs each event through C{EPollReactor}'s own
    C{_doReadOrWrite} (an exception of C{doRead} or C{doWrite} is the
    connection's loss, logged), and still logs an exception escaping the
    event with the selectable's prefix.
    """

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1  # wait until something is ready
        try:
            # as EPollReactor: at most one event per descriptor it tracks
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # gone during an earlier event of this poll
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=_prefix(selectable))

    doIteration = doPoll


# -- fix: hooks in xish's expat stream -------------------------------------------


class BoundedExpatStream(domish.ExpatElementStream):  # type: ignore[misc]
    """
    xish's expat element stream, with hooks its subclass defines: the
    private callbacks it overrides (C{_onStartElement}, C{_onEndElement},
    C{_onCdata}) call L{start_element} and L{end_element} first, and
    L{text} instead.
    """

    def start_element(self, name: str, attrs: dict[str, str]) -> None:
        """Before xish builds the element; raise to refuse it."""

    def end_element(self, name: str) -> None:
        """Before xish closes the element."""

    def text(self, data: str) -> None:
        """Character data (xish's own adds it to the current element)."""
        super()._onCdata(data)

    def _onStartElement(self, name: str, attrs: dict[str, str]) -> None:
        self.start_element(name, attrs)
        super()._onStartElement(name, attrs)

    def _onEndElement(self, name: str) -> None:
        self.end_element(name)
        super()._onEndElement(name)

    def _onCdata(self, data: str) -> None:
        self.text(data)
