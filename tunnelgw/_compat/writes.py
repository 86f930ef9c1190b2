"""
What a tunnel's writes do with Twisted's transports (see
L{tunnelgw._compat}): the bytes go to the kernel now, not on the
reactor's next turn.

Shortcut C{write_now}: L{write_now}, L{half_close_now}, L{close_now}.  A
Twisted transport only buffers a write and sends it when the reactor next
finds the socket writable: one more pass through the reactor, and two
more epoll calls, for every message a tunnel relays.

Shortcut C{tls_writes}: L{encrypt}.  A write to Twisted's TLS layer is
gathered for the reactor's next turn (C{BufferingTLSTransport}: a copy, a
C{callLater(0)}, one more pass through the reactor), then cut into 16 KiB
pieces, each encrypted, taken out of OpenSSL's memory BIO and written to
the TCP connection on its own.  A tunnel already writes once per read it
relays (nothing is left to gather), so L{encrypt} does what that write
would do on the next turn, at once and in one piece: every record of the
message goes into the memory BIO, and what comes out is one write.

Every attribute is read so that its absence (another Twisted) falls back
to what the public API does; C{tests/unit/test_compat.py} checks each
against Twisted's real objects.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError

from twisted.internet import tcp
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from tunnelgw._compat import enabled
from tunnelgw._compat.twisted import buffered, layers

__all__ = ["write_now", "half_close_now", "close_now", "plain_and_idle", "encrypt"]

# Twisted's own TCP connections, whose attributes plain_and_idle reads
# directly (any other transport is looked at layer by layer, with care)
_TCP = frozenset({tcp.Server, tcp.Client})
_WRITE_NOW = enabled("write_now")
_TLS_WRITES = enabled("tls_writes")


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
    was already waiting, the write only joins it.  Under Twisted's TLS
    layer, the records come from L{encrypt} (shortcut C{tls_writes}) when
    it can make them.
    """
    if _WRITE_NOW and plain_and_idle(transport):
        _send(transport, data)  # the usual case, told in a few reads
        return
    layer = _socket_layer(transport)
    if layer is None:
        transport.write(data)
        return
    idle = _WRITE_NOW and buffered(layer) == 0 and _open(layer)
    if transport is layer and idle and plain(layer):
        _send(layer, data)
        return
    records = encrypt(transport, data) if transport is not layer and transport.transport is layer else None
    if records is not None:
        if records and idle:
            _send(layer, records)
        elif records:
            layer.write(records)
        return
    transport.write(data)
    if idle and buffered(layer) != 0:
        layer.doWrite()


def _no_producer_waits(connection: Any) -> bool:
    """
    No producer, or a streaming one that is not paused: then C{doWrite},
    its buffer empty, goes on to the half-close (a paused or pull producer
    is resumed instead, and the half-close waits for a later turn).
    """
    return connection.producer is None or (connection.streamingProducer and not connection.producerPaused)


def half_close_now(transport: Any) -> None:
    """
    C{transport.loseWriteConnection()}, and on one of Twisted's plain TCP
    connections with nothing waiting and no producer, the half-close (the
    FIN) now rather than on the reactor's next turn: what the transport's
    own C{doWrite} ends with when its buffer is empty (C{_writeDisconnected},
    C{_closeWriteConnection}), without the rest of that turn (registering
    for writability and back, a send of nothing: three system calls), and
    its close then without a second shutdown (C{_shouldShutdown}).
    Otherwise (data waiting, a paused or pull producer, TLS, another
    transport) the reactor does it, after the data.
    """
    if _WRITE_NOW and plain_and_idle(transport) and _no_producer_waits(transport):
        transport._writeDisconnecting = True
        transport._writeDisconnected = True
        transport._closeWriteConnection()  # shutdown(SHUT_WR), then the protocol's writeConnectionLost
        # the FIN is out: its close needs no shutdown(SHUT_RDWR) first (one
        # more system call, which Twisted says is not really necessary)
        transport._shouldShutdown = False
        return
    transport.loseWriteConnection()


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


# -- shortcut "tls_writes" ----------------------------------------------------

_TLS = frozenset({BufferingTLSTransport, TLSMemoryBIOProtocol})
# room for each record's header, content type, padding and tag over its
# plaintext (22 bytes in TLS 1.3, 29 in TLS 1.2 with AES-GCM)
_RECORD, _OVERHEAD = 2**14, 64


def _steady(tls: Any) -> bool:
    """
    The TLS layer is past its handshake, open, and holds nothing: a write
    goes straight to OpenSSL, as its own C{_write} would send it.
    """
    aggregator = getattr(tls, "_aggregator", None)
    if aggregator is not None and getattr(aggregator, "_buffer", None) != []:
        return False
    return (
        tls._handshakeDone is True
        and tls._lostTLSConnection is False
        and tls._aborted is False
        and not tls.disconnecting
        and tls._appSendBuffer == []
    )


def _drain(connection: Any, size: int) -> bytes:
    """Everything OpenSSL has put in the memory BIO (C{size} is a guess)."""
    pieces = []
    while True:
        try:
            piece = connection.bio_read(size)
        except WantReadError:
            break
        pieces.append(piece)
        if len(piece) < size:
            break
    return b"".join(pieces)


def encrypt(tls: Any, data: bytes) -> bytes | None:
    """
    The TLS records that carry C{data} on C{tls} (one of Twisted's TLS
    layers), for the caller to write to the TCP connection under it, now
    and before anything else; C{None} if the shortcut is off or the layer
    is not in a state for it (mid-handshake, closing, holding writes, or
    not Twisted's): then the caller writes through C{tls.write}.

    What the layer's own C{_write} does when OpenSSL refuses the write is
    done here too: asked to read first (a renegotiation), the records made
    so far are written to the TCP connection and the rest is held in the
    layer; a TLS error ends the connection with it.  Then the records are
    written already, and the caller gets C{b""}.
    """
    if not _TLS_WRITES or type(tls) not in _TLS:
        return None
    try:
        if not _steady(tls):
            return None
        connection = tls._tlsConnection
        tcp = tls.transport
    except AttributeError:
        return None
    view = memoryview(data)
    total, done = len(data), 0
    room = total + _OVERHEAD * (total // _RECORD + 1)  # every record's, in one read
    try:
        while done < total:
            done += connection.send(view[done:])  # a record at a time (partial writes)
    except WantReadError:
        tcp.write(_drain(connection, room))
        tls._bufferedWrite(bytes(view[done:]))
        return b""
    except Error:
        tcp.write(_drain(connection, room))
        tls._tlsShutdownFinished(Failure())
        return b""
    return _drain(connection, room)
