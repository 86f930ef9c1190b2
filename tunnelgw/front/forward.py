"""
A fallback session lives on the instance that opened it; behind a load
balancer without stickiness its later requests land anywhere.  An
instance that does not hold a session passes the request, as it came, to
the instance that does (its C{[cluster] advertise} URL, found through the
cluster engine by the tag the session id begins with), and relays the
answer as it comes: a stream stays a stream.  That instance makes every
check itself (Origin, credentials, session).  A request passed once
carries C{X-Tunnel-Forwarded} and is never passed again.  Over
C{https://}, the owner's certificate is verified against C{[cluster]
advertise_ca} (or the system's CAs) and its name or address checked.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from twisted.internet import defer
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from tunnelgw.errors import Refusal
from tunnelgw.front.requests import _refuse, answerable
from tunnelgw.logs import Logger
from tunnelgw.tls import certificates, client_tls

__all__ = ["FORWARDED", "Forwarder", "InstanceTrust"]

FORWARDED = "X-Tunnel-Forwarded"
# hop-by-hop (RFC 9110 7.6.1), and what the client library sets itself
_NOT_PASSED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"host",
    }
)


class _Relay(Protocol):
    """The owner's answer, relayed to the client as it comes."""

    def __init__(self, request: server.Request, done: defer.Deferred[None]) -> None:
        self._request = request
        self._done = done

    def dataReceived(self, data: bytes) -> None:
        if answerable(self._request):
            self._request.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:  # type: ignore[override]
        self._done.callback(None)


@implementer(IPolicyForHTTPS)
class InstanceTrust:
    """
    An C{https://} owner's certificate: chained to C{authorities} (every
    certificate of C{[cluster] advertise_ca}), or to the system's CAs
    without them, and issued to the host of its C{advertise} URL.
    """

    def __init__(self, authorities: list[x509.Certificate] | None) -> None:
        self.authorities = authorities

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:  # noqa: N802
        return client_tls(hostname.decode("ascii"), self.authorities)


class Forwarder:
    """
    Passes requests to other instances with treq (connections kept for
    the next request), trusting the CAs of C{authority_file} over
    C{https://} (L{InstanceTrust}).

    @raise ConfigError: C{authority_file} cannot be read or holds no
        certificate.
    """

    log = Logger()

    def __init__(self, reactor: Any, authority_file: str | None = None, connect_timeout: float = 5.0) -> None:
        from treq.client import HTTPClient

        from twisted.web.client import Agent, HTTPConnectionPool

        authorities = certificates("cluster.advertise_ca", authority_file) if authority_file else None
        self.trust = InstanceTrust(authorities)
        self._pool = pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        self._client = HTTPClient(
            Agent(reactor, contextFactory=self.trust, connectTimeout=connect_timeout, pool=pool)
        )

    def close(self) -> None:
        """Close the connections kept for the next request (a replaced forwarder)."""
        self._pool.closeCachedConnections()

    def forward(self, request: server.Request, base: str, body: bytes) -> None:
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _NOT_PASSED:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders(FORWARDED, [b"1"])
        url = base.rstrip("/") + request.uri.decode("ascii")
        d = self._client.request("POST", url, headers=headers, data=body, unbuffered=True)
        relay: list[_Relay] = []

        def gone(_: object) -> None:
            d.cancel()
            for r in relay:  # stop reading the owner's answer
                stop = getattr(r.transport, "stopProducing", None)
                if stop is not None:
                    stop()

        request.notifyFinish().addErrback(gone)

        def answered(response: Any) -> defer.Deferred[None]:
            request.setResponseCode(response.code)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in _NOT_PASSED:
                    request.responseHeaders.setRawHeaders(name, values)
            if isinstance(response.length, int):
                request.setHeader("Content-Length", str(response.length))
            done: defer.Deferred[None] = defer.Deferred()
            protocol = _Relay(request, done)
            relay.append(protocol)
            response.deliverBody(protocol)
            return done

        def finish(_: object) -> None:
            if answerable(request):
                request.finish()

        def failed(f: Failure) -> None:
            if f.check(defer.CancelledError):
                return
            self.log.info(
                "fallback request not passed to {owner}: {why}",
                event="fallback_forward_failed",
                owner=base,
                why=f.getErrorMessage(),
            )
            if answerable(request) and not request.startedWriting:
                _refuse(request, Refusal(502, "the instance of this session did not answer"))
            elif answerable(request):
                request.finish()

        d.addCallback(answered).addCallbacks(finish, failed)
