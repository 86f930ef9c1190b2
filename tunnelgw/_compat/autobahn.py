"""
What tunnelgw does with autobahn's private names and behaviour (see
L{tunnelgw._compat}).

Shortcuts (each falls back to autobahn's public behaviour when switched
off):
  - C{lazy_debug}: L{install_lazy_debug}.
  - C{class_options}: L{class_options}.
  - C{handshake}: L{ServerInternals.processHandshake}.
  - C{transport_details}: L{ServerInternals.connectionMade}.
  - C{lean_tunnels}: L{ServerInternals.forget_handshake}, L{NO_SEND_QUEUE}.
  - C{small_masks}, C{utf8_text}: in L{tunnelgw._compat.payloads}.
  - C{whole_frames}: L{LegInternals.dataReceived}, with
    L{tunnelgw._compat.reads}.
  - C{whole_sends}: L{LegInternals.send_whole}.

Fixes:
  - L{LegInternals.fail_too_big}: after a C{1009}, nothing more from the
    peer is parsed (RFC 6455 7.1.7).
  - L{ServerInternals._closeConnection}: the end of the TCP connection is
    the gateway's (C{close_transport}: graceful after a clean close, not
    autobahn's reset).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

import autobahn.twisted.websocket as _autobahn_twisted
import autobahn.websocket.protocol as _autobahn_protocol
from autobahn.twisted.util import peer2str

from tunnelgw._compat import enabled
from tunnelgw._compat.reads import take_messages, whole_frames

__all__ = [
    "install_lazy_debug",
    "class_options",
    "LegInternals",
    "ServerInternals",
    "NO_SEND_QUEUE",
    "LAZY_NAMES",
]


# -- shortcut "lazy_debug" ------------------------------------------------------


class _Lazy:
    """
    C{function(*args, **kwargs)}, computed only if someone turns it into
    text.
    """

    __slots__ = ("_function", "_args", "_kwargs")

    def __init__(self, function: Callable[..., object], *args: object, **kwargs: object) -> None:
        self._function = function
        self._args = args
        self._kwargs = kwargs

    def __str__(self) -> str:
        return str(self._function(*self._args, **self._kwargs))

    __repr__ = __str__


LAZY_NAMES: tuple[tuple[ModuleType, str], ...] = (
    (_autobahn_protocol, "pformat"),
    (_autobahn_protocol, "hltype"),
    (_autobahn_protocol, "hlval"),
    (_autobahn_twisted, "hltype"),
    (_autobahn_twisted, "hlval"),
)
"""The module-level names of autobahn that L{install_lazy_debug} replaces."""


def install_lazy_debug() -> None:
    """
    autobahn builds the arguments of its debug log lines whether debug
    logging is on or not: its configuration with C{pformat}, method and
    value names (C{hltype}, C{hlval}: inspect and f-strings) a dozen times
    a connection.  Replaced by lazy stand-ins, the debug text is the same
    when it is logged and costs nothing when it is not.  Idempotent.
    """
    if not enabled("lazy_debug"):
        return
    for module, name in LAZY_NAMES:
        function = getattr(module, name)
        if not isinstance(function, functools.partial):
            setattr(module, name, functools.partial(_Lazy, function))


# -- shortcut "class_options" ---------------------------------------------------


def class_options(factory: Any, protocol: type) -> dict[str, Any]:
    """
    The attributes of a protocol class for C{factory}'s connections.

    autobahn copies every option in C{CONFIG_ATTRS} from the factory onto
    each new protocol instance unless the class has it already, and then
    reads them all again for a debug line: some eighty calls and thirty
    attributes per connection.  With the shortcut, the class holds every
    option and C{CONFIG_ATTRS} is empty; without it, nothing (autobahn
    copies).  A function among them (C{perMessageCompressionAccept}) stays
    a plain function, not a method.
    """
    if not enabled("class_options"):
        return {}
    options: dict[str, Any] = {
        name: staticmethod(value) if isinstance(value, FunctionType) else value
        for name in protocol.CONFIG_ATTRS  # type: ignore[attr-defined]
        for value in (getattr(factory, name),)
    }
    options["CONFIG_ATTRS"] = ()
    return options


# -- the legs: every autobahn protocol that serves as a tunnel leg ---------------

NO_SEND_QUEUE: Any = ()
"""
An empty stand-in for autobahn's per-connection C{send_queue} (used only
for sync and chopped writes, which a tunnel never makes; an empty deque is
760 bytes, a tenth of an idle tunnel): falsy and of length 0 as autobahn
reads it; L{LegInternals.send_queue_for_use} puts a deque back before
autobahn could append to it.
"""

_WHOLE_SENDS = enabled("whole_sends")
_OPEN = _autobahn_protocol.WebSocketProtocol.STATE_OPEN


class LegInternals:
    """
    Mixed in before autobahn's protocol class.
    """

    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    data: bytes
    transport: Any
    send_queue: Any
    state: Any
    factory: Any
    maskServerFrames: bool
    _perMessageCompress: Any
    trackedTimings: Any
    logFrames: bool
    autoFragmentSize: int
    maxMessagePayloadSize: int

    discarding = False
    """The connection failed (too big, too many frames): input is dropped."""

    whole_frame_hooks: frozenset[str] = frozenset()
    """The hooks of this class that a message of one frame may skip (L{take_messages})."""

    def dataReceived(self, data: bytes) -> None:
        if self.discarding:
            return
        if whole_frames(type(self)):
            data = take_messages(self, data)
            if not data or self.discarding:
                return
        super().dataReceived(data)  # type: ignore[misc]

    def send_whole(self, payload: bytes, is_binary: bool) -> bool:
        """
        Shortcut C{whole_sends}: a server's message that autobahn's
        C{sendMessage} would send as one unmasked frame, framed here and
        handed to C{sendData} (autobahn asserts its arguments' types, keeps
        traffic counters and builds the frame through C{sendFrame}'s
        general case: masks, repeats, fragments).  C{False}, with nothing
        sent, when the message is not such a one (the connection is not
        open, is a client's, compresses, fragments, logs frames, or the
        message is over the size limit): then C{sendMessage} it is.
        """
        size = len(payload)
        if not (
            _WHOLE_SENDS
            and self.state == _OPEN
            and self.factory.isServer
            and not self.maskServerFrames
            and self._perMessageCompress is None
            and not self.trackedTimings
            and not self.logFrames
            and not 0 < self.autoFragmentSize < size
            and not 0 < self.maxMessagePayloadSize < size
        ):
            return False
        first = 0x82 if is_binary else 0x81
        if size < 126:
            head = bytes((first, size))
        elif size < 0x10000:
            head = bytes((first, 126, size >> 8, size & 0xFF))
        else:
            head = bytes((first, 127)) + size.to_bytes(8, "big")
        self.sendData(head + payload)  # type: ignore[attr-defined]
        return True

    def send_queue_for_use(self) -> None:
        """
        Before autobahn's C{sendData} may queue: a real queue in place of
        L{NO_SEND_QUEUE}.
        """
        if self.send_queue is NO_SEND_QUEUE:
            self.send_queue = deque()

    def _max_message_size_exceeded(self, size: int, limit: int, reason: str) -> None:
        # autobahn's hook for a message, frame or fragment count over its
        # limit: it sends 1009 and then goes on parsing what the peer sends
        # until its close frame, frame by frame (a peer that keeps sending
        # one-byte frames kept a core busy until the close timer).  RFC 6455
        # 7.1.7: once the connection is failed, data from the peer is not
        # processed, its close frame included.  What is buffered and what
        # arrives is dropped; the FIN follows our close frame, and the
        # close handshake timer bounds the rest.
        super()._max_message_size_exceeded(size, limit, reason)  # type: ignore[misc]
        self.discarding = True
        self.data = b""
        if self.transport is not None:
            self.transport.loseWriteConnection()

    def fail_too_big(self, size: int, limit: int, reason: str) -> None:
        """
        Fail the connection with C{1009} as autobahn does for a message
        over its size limit (and drop what follows).
        """
        self._max_message_size_exceeded(size, limit, reason)


# -- the server leg ---------------------------------------------------------------

# What autobahn keeps of the opening handshake (its response, the key, the
# blank transport details) is read only by succeedHandshake and _onOpen.
_HANDSHAKE_LEFTOVERS = ("http_response_data", "_wskey", "_transport_details")


class ServerInternals:
    """
    Mixed in before C{WebSocketServerProtocol}.  The class using it
    defines C{onConnect} (the public path of the C{handshake} shortcut)
    and C{admitted_head()}: the subprotocol, the extra response headers
    and the request's C{Sec-WebSocket-Key} and offered subprotocols, or
    C{None} if the head was not admitted whole.
    """

    transport: Any
    data: bytes
    send_queue: Any

    def admitted_head(self) -> tuple[str | None, dict[str, str], str, list[str]] | None:
        raise NotImplementedError

    def set_no_delay(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):  # as autobahn: a Unix socket has no Nagle
            pass

    def connectionMade(self) -> None:
        if not enabled("transport_details"):
            super().connectionMade()  # type: ignore[misc]
            # autobahn sets TCP_NODELAY from an option it has not copied yet
            self.set_no_delay()
            return
        # autobahn's, less the transport details it builds first: the
        # process and thread ids (two system calls), the TLS channel binding
        # and peer certificate, all for WAMP sessions.  The blank details
        # autobahn's __init__ made stay (and say "not TLS" to its _onOpen).
        self.peer = peer2str(self.transport)
        self.set_no_delay()
        self._connectionMade()  # type: ignore[attr-defined]

    if enabled("handshake"):

        def processHandshake(self) -> None:
            # autobahn's own processHandshake parses the request head and
            # checks it, then asks onConnect.  The head was parsed and
            # checked before it was admitted (check_websocket_upgrade
            # refuses whatever autobahn would), and it is here whole: a
            # second parse finds nothing new.  autobahn's succeedHandshake
            # writes the 101 from the key and the offered subprotocols.
            # Extensions are never accepted, so an offer is not even read.
            end = self.data.find(b"\r\n\r\n")
            head = self.admitted_head() if end >= 0 else None
            if head is None:  # neither happens: see above
                self.failHandshake("the request head was not admitted whole", 500)  # type: ignore[attr-defined]
                return
            subprotocol, headers, key, offered = head
            self.data = self.data[end + 4 :]  # what followed: frames
            self.websocket_version = 13
            self.websocket_protocols = offered
            self.websocket_extensions: list[Any] = []
            self._wskey = key
            self.succeedHandshake((subprotocol, headers))  # type: ignore[attr-defined]

    def forget_handshake(self) -> None:
        """
        Once open: drop what the open tunnel does not need (shortcut
        C{lean_tunnels}).
        """
        if not enabled("lean_tunnels"):
            return
        for name in _HANDSHAKE_LEFTOVERS:
            setattr(self, name, None)
        self.send_queue = NO_SEND_QUEUE

    def close_transport(self, abort: bool) -> bool:
        """
        Close the TCP connection at the end of the closing handshake (or
        when autobahn gives up on it) the gateway's way; C{False} leaves
        it to autobahn.
        """
        return False

    def _closeConnection(self, abort: bool = False) -> None:
        # autobahn aborts the TCP connection (RST) as soon as a server's
        # closing handshake completes, losing what is still in the write
        # buffer: see TunnelWebSocket.close_transport.
        if not self.close_transport(abort):
            super()._closeConnection(abort)  # type: ignore[misc]
