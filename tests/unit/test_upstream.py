"""
Upstream endpoints from descriptions: TCP by address or name, built once
per description; others as Twisted parses them.
"""

from __future__ import annotations

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw import registry
from tunnelgw.testing import naming
from tunnelgw.upstream import endpoint_for


class EndpointTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        reactor = naming(MemoryReactor())
        self.assertIsInstance(endpoint_for(reactor, "tcp:127.0.0.1:5900", 5), TCP4ClientEndpoint)
        self.assertIsInstance(endpoint_for(reactor, r"tcp:host=\:\:1:port=5900", 5), TCP6ClientEndpoint)
        self.assertIsInstance(endpoint_for(reactor, "tcp:vnc.internal:5900", 5), HostnameEndpoint)
        self.assertIsInstance(endpoint_for(reactor, "unix:path=/run/vnc.sock", 5), UNIXClientEndpoint)
        # the TCP endpoint fails by itself after its timeout; others get one
        self.assertTrue(registry.upstream_kind("tcp:127.0.0.1:5900").bounds_itself)
        self.assertFalse(registry.upstream_kind("unix:path=/run/vnc.sock").bounds_itself)

    def test_naming_gives_an_older_memory_reactor_names_that_resolve_to_none(self) -> None:
        from twisted.internet.error import DNSLookupError
        from twisted.internet.interfaces import IReactorPluggableNameResolver, IReactorTCP, IReactorTime
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import MemoryReactorClock
        from zope.interface import implementer_only

        @implementer_only(IReactorTCP, IReactorTime)
        class Older(MemoryReactorClock):  # as an older Twisted's
            pass

        reactor = Older()
        self.assertFalse(IReactorPluggableNameResolver.providedBy(reactor))
        self.assertIs(naming(reactor), reactor)
        self.assertTrue(IReactorPluggableNameResolver.providedBy(reactor))
        endpoint = HostnameEndpoint(reactor, "vnc.internal", 5900)
        self.assertEqual(self.flushWarnings(), [])
        self.failureResultOf(endpoint.connect(Factory()), DNSLookupError)
        current = MemoryReactorClock()
        if IReactorPluggableNameResolver.providedBy(current):  # a newer Twisted's
            resolver = current.nameResolver
            self.assertIs(naming(current).nameResolver, resolver)  # left as it is

    def test_each_description_has_its_kind(self) -> None:
        kinds = {
            "tcp:127.0.0.1:5900": "tcp",
            "wss://inner.example:8443/app": "gateway",
            "ws://inner.example/app": "gateway",  # refused by its check
            "reverse:inner": "reverse",
            "unix:path=/run/vnc.sock": "endpoint",
            "tls:vnc.internal:5901": "endpoint",
        }
        for description, name in kinds.items():
            self.assertEqual(registry.upstream_kind(description).name, name, description)
        self.assertEqual([k.name for k in registry.upstream_kinds()][-1], "endpoint")

    def test_every_kind_provides_its_interface(self) -> None:
        from zope.interface.verify import verifyObject

        from tunnelgw.interfaces import IUpstreamKind

        kinds = registry.upstream_kinds()
        for kind in kinds:
            self.assertTrue(verifyObject(IUpstreamKind, kind))
            self.assertIn(kind.carries, ("bytes", "messages"))
        self.assertEqual(len({kind.name for kind in kinds}), len(kinds))

    def test_tcp_endpoint_is_built_once_and_connects_each_time(self) -> None:
        reactor = MemoryReactor()
        first = endpoint_for(reactor, "tcp:127.0.0.1:5901", 3)
        self.assertIs(endpoint_for(reactor, "tcp:127.0.0.1:5901", 3), first)
        self.assertIsNot(endpoint_for(reactor, "tcp:127.0.0.1:5901", 4), first)  # another timeout
        self.assertIsNot(endpoint_for(MemoryReactor(), "tcp:127.0.0.1:5901", 3), first)
        from twisted.internet.protocol import Factory

        first.connect(Factory())
        first.connect(Factory())
        self.assertEqual(
            [(host, port, timeout) for host, port, _, timeout, _ in reactor.tcpClients],
            [("127.0.0.1", 5901, 3)] * 2,
        )
