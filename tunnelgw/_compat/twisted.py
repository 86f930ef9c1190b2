"""
What tunnelgw does with Twisted's private names (see L{tunnelgw._compat}).

Shortcuts:
  - C{write_now}: L{write_now}, L{half_close_now}, L{close_now}.
  - C{reactor}: L{QuietEPollReactor}.

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

from tunnelgw._compat import enabled

__all__ = [
    "layers",
    "buffered",
    "app_buffered",
    "held_bytes",
    "release_connector",
    "write_now",
    "half_close_now",
    "close_now",
    "plain_and_idle",
    "QuietEPollReactor",
    "early_bytes",
    "BoundedExpatStream",
]

_MAX_DEPTH = 4

# Twisted's own TCP connections, whose attributes held_bytes and
# plain_and_idle read directly (any other transport is looked at layer by
# layer, with care)
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


# -- shortcut "write_now" -------------------------------------------------------

_WRITE_NOW = enabled("write_now")


def plain_and_idle(connection: Any) -> bool:
    """
    C{connection} is one of Twisted's TCP connections, open for writing,
    with no TLS started on it and nothing waiting in its buffers, read
    directly; any other transport, or a missing attribute (another
    Twisted), means no.
    """
    if type(connection) not in _TCP:
        return False
    try:
        return (
            connection.TLS is False
            and connection._writeDisconnecting is False
            and bool(connection.connected)
            and not connection.disconnecting
            and connection._tempDataLen == 0
            and len(connection.dataBuffer) == connection.offset
        )
    except AttributeError:
        return False


def _socket_layer(transport: Any) -> tcp.Connection | None:
    for layer in layers(transport):
        if isinstance(layer, tcp.Connection):
            return layer
    return None


def _open(layer: tcp.Connection) -> bool:
    return bool(layer.connected) and not layer.disconnecting


def _send(layer: tcp.Connection, data: bytes) -> None:
    """
    A plain TCP connection with nothing waiting: straight into the kernel,
    as the transport's doWrite would (writeSomeData), without registering
    for writability first.  What does not fit waits in the transport for
    the reactor; an error, found by Twisted's own write path, ends the
    connection on the reactor's next turn.
    """
    sent = layer.writeSomeData(data)
    if type(sent) is int and 0 <= sent:
        if sent < len(data):
            layer.write(data[sent:])
        return
    layer.write(data)


def write_now(transport: Any, data: bytes) -> None:
    """
    C{transport.write(data)}, and when nothing was waiting to be sent
    before it, the bytes go to the kernel now instead of on the reactor's
    next turn.

    A Twisted transport only buffers a write and sends it when the reactor
    next finds the socket writable: one more pass through the reactor (and
    two more epoll calls) for every message a tunnel relays.  Sending at
    once is what the reactor would do next: on a plain TCP connection, its
    C{writeSomeData}; under TLS, the TCP connection's own C{doWrite} (its
    IWriteDescriptor method) once the TLS layer has written to it.  Order,
    high-water pausing and half-closes behave as before.  If the send
    fails, the transport is left registered for writing and the reactor
    finds the failure on its next turn as it always would.  When something
    was already waiting, the write only joins it.
    """
    if not _WRITE_NOW:
        transport.write(data)
        return
    if plain_and_idle(transport):
        _send(transport, data)  # the usual case, told in a few reads
        return
    layer = _socket_layer(transport)
    if layer is None or buffered(layer) != 0:
        transport.write(data)
        return
    if transport is layer and plain(layer):
        _send(layer, data)
        return
    transport.write(data)
    if _open(layer) and buffered(layer) != 0:
        layer.doWrite()


def half_close_now(transport: Any) -> None:
    """
    C{transport.loseWriteConnection()}, and on one of Twisted's plain TCP
    connections with nothing waiting, the half-close (the FIN) now rather
    than on the reactor's next turn: the transport's own C{doWrite}, what
    the reactor would call next, with nothing to send.  Otherwise (data
    waiting, TLS, another transport) the reactor does it, after the data.
    """
    now = _WRITE_NOW and plain_and_idle(transport)
    transport.loseWriteConnection()
    if now:
        # a failure is left to the reactor, which finds the transport
        # still registered for writing and gets it again
        transport.doWrite()


def close_now(transport: Any) -> bool:
    """
    End a connection now if it is one of Twisted's plain TCP connections
    with nothing waiting and no producer: the FIN at once (L{half_close_now}),
    then C{loseConnection}, which Twisted makes at once for a connection
    whose write side is shut (its C{connectionLost} runs before this
    returns).  C{loseConnection} alone would end it on the reactor's next
    turn.

    @return: C{True} if the connection is over; C{False} if it is not (it
        was not such a connection, or the shortcut is off, and nothing was
        done; or the half-close failed and the reactor will find out): then
        the caller closes it as it would have.
    """
    if not _WRITE_NOW or not plain_and_idle(transport) or transport.producer is not None:
        return False
    half_close_now(transport)
    transport.loseConnection()
    return not transport.connected


def plain(layer: tcp.Connection) -> bool:
    """
    Bytes given to this connection may go to its socket as they are: it
    is open for writing and carries no TLS started on it.  Any doubt (an
    attribute gone in another version) means no.
    """
    return (
        getattr(layer, "TLS", True) is False
        and getattr(layer, "_writeDisconnecting", True) is False
        and _open(layer)
    )


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
