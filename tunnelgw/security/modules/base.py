"""
What most login modules share: keep the subject and callbacks, succeed or
fail in login, add principals in commit only if login succeeded; and for
those that ask another service, one deadline for the whole question with
its failures told as L{LoginFailed} (L{asked_within}), and over HTTP the
URLs they may ask (L{check_remote_url}) and an answer's body read within
bounds (L{bounded_body}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hyperlink

from twisted.internet import defer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from tunnelgw.errors import ConfigError, LoginFailed
from tunnelgw.security import Principal, Subject


class BaseModule:
    """
    Subclasses implement C{authenticate()} returning (a Deferred of) what
    C{commit} needs, or raising L{LoginFailed}; and C{principals(result)}.
    """

    def initialize(
        self, subject: Subject, callbacks: Any, shared_state: dict[str, Any], options: Any
    ) -> None:
        self.subject = subject
        self.callbacks = callbacks
        self.reactor: Any = getattr(callbacks, "reactor", None)
        """The gateway's reactor (the module's clock), kept after the login."""
        self.shared = shared_state
        self.options = options
        self._result: Any = None

    def login(self) -> Any:
        """
        C{True} once C{authenticate} has answered (or a Deferred of it when
        C{authenticate} returns one); its exceptions propagate.
        """
        result = self.authenticate()
        if isinstance(result, defer.Deferred):
            return result.addCallback(self._succeeded)
        return self._succeeded(result)

    def _succeeded(self, result: Any) -> bool:
        self._result = result
        return True

    def authenticate(self) -> Any:
        raise NotImplementedError

    def basic(self) -> tuple[str, str]:
        """
        The request's HTTP Basic user name and password.

        @raise LoginFailed: it has none.
        """
        if self.callbacks.basic is None:
            raise LoginFailed("no Basic credentials")
        user, password = self.callbacks.basic
        return user, password

    def principals(self, result: Any) -> tuple[set[Principal], dict[str, Any]]:
        raise NotImplementedError

    def commit(self) -> bool:
        try:
            if self._result is None:
                return False
            principals, attributes = self.principals(self._result)
            self.subject.principals.update(principals)
            for key, value in attributes.items():
                self.subject.attributes.setdefault(key, value)
            return True
        finally:
            self._release()

    def abort(self) -> None:
        self._result = None
        self._release()

    def _release(self) -> None:
        """
        The module lives as long as its tunnel: the request's callbacks and
        the login's shared state need not.
        """
        self.callbacks = None
        self.shared = {}

    def logout(self) -> None:
        self._result = None

    def revalidate(self, subject: Subject) -> Any:
        """
        C{True} (or a Deferred of it) while the subject is still valid.
        """
        return True


def roles_of(names: Any) -> set[Principal]:
    return {Principal("role", name) for name in names}


def check_numeric_dates(claims: dict[str, Any], what: str = "token") -> None:
    """
    RFC 7519 2: C{exp}, C{nbf} and C{iat} are NumericDates, JSON numbers.
    pyjwt reads them with C{int()}, so it takes C{"1700000000"} (a string)
    too; a token whose issuer wrote one is not what it says.

    @raise LoginFailed: one of them is there and is not a number.
    """
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise LoginFailed(f"invalid {what}: the {name} claim is not a NumericDate")


def asked_within(d: defer.Deferred[Any], timeout: float, reactor: Any, asked: str) -> defer.Deferred[Any]:
    """
    C{d}, the answer of the service C{asked} names, cancelled after
    C{timeout} seconds on C{reactor}'s clock; any failure but a
    L{LoginFailed} becomes one that says what went wrong.
    """

    def failed(f: Failure) -> Any:
        if f.check(LoginFailed):
            return f
        if f.check(defer.TimeoutError):
            raise LoginFailed(f"{asked} did not answer within {timeout:g}s")
        raise LoginFailed(f"{asked} failed: {f.getErrorMessage()}")

    return d.addTimeout(timeout, reactor).addErrback(failed)


def check_remote_url(key: str, url: str) -> None:
    """
    What a module sends credentials to, or fetches keys from, is https, or
    http to a loopback address: over a network in the clear, keys would be
    anyone's to replace and credentials anyone's to read.

    @raise ConfigError: any other URL (C{key} names the entry).
    """
    if hyperlink.URL.from_text(url).userinfo:
        raise ConfigError(f"{key}: no credentials in the URL (URLs get logged)")
    if not remote_url_allowed(url):
        raise ConfigError(f"{key}: expected an https URL (http only to a loopback address), got {url!r}")


def remote_url_allowed(url: str) -> bool:
    """
    What L{check_remote_url} accepts: https, or http to a loopback address,
    with no credentials in the URL.
    """
    parsed = hyperlink.URL.from_text(url)
    loopback = parsed.host in ("127.0.0.1", "::1", "localhost")
    secure = parsed.scheme == "https" or (parsed.scheme == "http" and loopback)
    return bool(parsed.host) and secure and not parsed.userinfo


class _Body(Protocol):
    """
    A response's body, at most C{limit} bytes: over it, the connection is
    aborted and C{done} fails with C{too_large()}.
    """

    def __init__(self, done: defer.Deferred[bytes], limit: int, too_large: Callable[[], Exception]) -> None:
        self._done = done
        self._limit = limit
        self._too_large = too_large
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._size += len(data)
        if self._size > self._limit:
            self.abort()
            self._end(Failure(self._too_large()))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if reason.check(ResponseDone, PotentialDataLoss):
            self._end(b"".join(self._chunks))
        else:
            self._end(reason)

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()

    def _end(self, result: bytes | Failure) -> None:
        if self._done.called:  # a timeout or a cancel ended it first
            return
        if isinstance(result, bytes):
            self._done.callback(result)
        else:
            self._done.errback(result)


def bounded_body(
    response: Any, reactor: Any, timeout: float, limit: int, too_large: Callable[[], Exception]
) -> defer.Deferred[bytes]:
    """
    The body of an HTTP C{response} (an L{IResponse}), at most C{limit}
    bytes (over them: C{too_large()}), within C{timeout} seconds on
    C{reactor}'s clock (past them: L{defer.TimeoutError}); either way, and
    when the Deferred is cancelled, the connection is aborted, as Twisted's
    C{readBody} does when cancelled.  A body cut short fails with why.
    """
    body: _Body | None = None
    done: defer.Deferred[bytes] = defer.Deferred(lambda _: body.abort() if body is not None else None)
    body = _Body(done, limit, too_large)
    response.deliverBody(body)
    return done.addTimeout(max(0.001, timeout), reactor)
