"""
An LDAP v3 client connection for the C{ldap} login module, on ldaptor's
message codec (C{pureldap}, C{pureber}): one request at a time, its
answer whole (a search's entries and its final result), within bounds.

Not ldaptor's own C{LDAPClient}: it imports the global reactor (which a
configuration loaded before twistd installs its reactor must not), keeps
whatever a server sends, follows no bound, and raises from its decoder
into the transport.  This one counts the bytes a server sends
(C{max_answer}) and the entries of a search (C{max_entries}), aborts the
connection when a request is cancelled (a login's timeout), and turns
anything that is not LDAP into L{LoginFailed}.
"""

from __future__ import annotations

from typing import Any

from ldaptor.protocols import pureber, pureldap

from twisted.internet import defer
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from tunnelgw.errors import LoginFailed

__all__ = ["Answer", "DirectoryConnection", "dn_of", "text"]

_DECODER = pureldap.LDAPBERDecoderContext_TopLevel(
    inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
        fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
    )
)

Answer = tuple[Any, list[pureldap.LDAPSearchResultEntry]]
"""A request's final result (C{resultCode}, C{errorMessage}...) and, for a search, its entries."""


class DirectoryConnection(Protocol):
    """
    A connection to a directory server.  L{request} sends an operation and
    fires with its L{Answer}; a connection that fails (closed, too much
    data, not LDAP, a certificate refused) fails the request in flight
    with L{LoginFailed}.
    """

    transport: Any

    def __init__(self, max_answer: int, max_entries: int) -> None:
        self.max_answer = max_answer
        self.max_entries = max_entries
        self._received = 0
        self._buffer = b""
        self._pending: dict[int, tuple[defer.Deferred[Answer], list[pureldap.LDAPSearchResultEntry]]] = {}
        self._failed: str | None = None
        self._closed = False

    def request(self, operation: Any) -> defer.Deferred[Answer]:
        if self._failed is not None:
            return defer.fail(LoginFailed(self._failed))
        message = pureldap.LDAPMessage(operation)

        def cancel(_: object) -> None:
            del self._pending[message.id]
            self.close()

        d: defer.Deferred[Answer] = defer.Deferred(cancel)
        self._pending[message.id] = (d, [])
        self.transport.write(message.toWire())
        return d

    def start_tls(self, creator: IOpenSSLClientConnectionCreator) -> None:
        """TLS from now on (after the server agreed to StartTLS)."""
        self.transport.startTLS(creator)

    def unbind(self) -> None:
        """The polite end (RFC 4511 4.3), then the connection closed."""
        if not self._closed and self._failed is None and self.transport is not None:
            self._closed = True
            self.transport.write(pureldap.LDAPMessage(pureldap.LDAPUnbindRequest()).toWire())
            self.transport.loseConnection()

    def close(self) -> None:
        """Abort the connection (a cancelled login): nothing more is read."""
        self._closed = True
        if self.transport is not None:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._failed is not None:
            return
        self._received += len(data)
        if self._received > self.max_answer:
            self._fail(f"the directory sent over {self.max_answer} bytes")
            return
        self._buffer += data
        while self._buffer and self._failed is None:
            try:
                message, used = pureber.berDecodeObject(_DECODER, self._buffer)
            except pureber.BERExceptionInsufficientData:
                return
            except Exception:  # ldaptor's decoder asserts and raises on what is not LDAP
                self._fail("the directory sent what is not LDAP")
                return
            if message is None or not used:
                return
            self._buffer = self._buffer[used:]
            self._handle(message)

    def _handle(self, message: Any) -> None:
        if not isinstance(message, pureldap.LDAPMessage):
            self._fail("the directory sent what is not an LDAP message")
            return
        if message.id == 0:  # an unsolicited notification: the server is ending the session
            self._fail(
                f"the directory ended the session ({text(getattr(message.value, 'errorMessage', b''))})"
            )
            return
        pending = self._pending.get(message.id)
        if pending is None:
            self._fail(f"the directory answered message {message.id}, never sent")
            return
        d, entries = pending
        value = message.value
        if isinstance(value, pureldap.LDAPSearchResultEntry):
            entries.append(value)
            if len(entries) > self.max_entries:
                self._fail(f"the directory sent over {self.max_entries} entries")
            return
        if isinstance(value, pureldap.LDAPSearchResultReference):
            return  # a referral to another server: not followed
        del self._pending[message.id]
        d.callback((value, entries))

    def _fail(self, why: str) -> None:
        self._failed = why
        self.close()
        self._fail_pending(why)

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for d, _ in pending.values():
            d.errback(LoginFailed(why))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        why = self._failed or f"the directory connection was lost ({reason.getErrorMessage()})"
        self._failed = why
        self._fail_pending(why)


def text(value: Any) -> str:
    """A value the directory sent (bytes, as ldaptor decodes them) as text; nothing: C{""}."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def dn_of(entry: pureldap.LDAPSearchResultEntry) -> bytes:
    """A search entry's DN, as the directory sent it."""
    name = entry.objectName
    return name if isinstance(name, bytes) else str(name).encode("utf-8")
