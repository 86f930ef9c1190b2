"""
An example tunnelgw upstream kind, found through twisted.plugin:
C{failover:tcp:HOST:PORT,tcp:HOST:PORT,...} connects the first backend
that answers, in order, each within the service's C{connect_timeout}.

Nothing here imports the reactor: plugin modules are imported while the
plugin cache is built, possibly before a reactor is chosen.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw.interfaces import IUpstreamKind
from tunnelgw.upstream import check_tcp
from tunnelgw.upstream.kinds import BYTES, UpstreamRequest, connect_stream

PREFIX = "failover:"


@implementer(IPlugin, IUpstreamKind)
class FailoverKind:
    name = "failover"
    carries = BYTES
    bounds_itself = True  # each TCP attempt fails by itself after connect_timeout

    def claims(self, description: str) -> bool:
        return description.startswith(PREFIX)

    def backends(self, description: str) -> list[str]:
        return [part.strip() for part in description[len(PREFIX) :].split(",") if part.strip()]

    def check(self, description: str) -> None:
        backends = self.backends(description)
        if len(backends) < 2:
            raise ValueError("failover: needs two tcp: backends or more, separated by commas")
        for backend in backends:
            if not backend.startswith("tcp:"):
                raise ValueError(f"failover: {backend!r} is not a tcp: backend")
            check_tcp(backend)

    def connect(self, upstream: UpstreamRequest) -> defer.Deferred[Any]:
        backends = self.backends(upstream.description)

        def attempt(index: int) -> defer.Deferred[Any]:
            endpoint = upstream.endpoint_for(upstream.reactor, backends[index], upstream.timeout)
            d = connect_stream(endpoint, upstream)
            if index + 1 < len(backends):

                def next_one(f: Failure) -> defer.Deferred[Any] | Failure:
                    if f.check(defer.CancelledError):
                        return f  # the client went away
                    return attempt(index + 1)

                d.addErrback(next_one)
            return d

        return attempt(0)


failover = FailoverKind()
