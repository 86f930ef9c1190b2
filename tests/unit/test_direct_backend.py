"""
A backend at an address literal is connected with the reactor's
connectTCP, its leg the connection's own protocol (no endpoint wrapper);
names, other kinds and an injected endpoint_for go through endpoints.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener, ISSLTransport
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from tunnelgw import registry
from tunnelgw.config.loader import loads
from tunnelgw.testing import HalfCloseStringTransport, cyclic_garbage
from tunnelgw.tunnel.legs import BackendProtocol
from tunnelgw.upstream import address_of
from tunnelgw.upstream.direct import connect_backend
from tunnelgw.upstream.kinds import UpstreamRequest

BACKEND = IPv4Address("TCP", "127.0.0.1", 5900)


def _made(reactor: MemoryReactor, index: int = 0) -> tuple[Any, StringTransport]:
    """The index-th connection attempt succeeds: its protocol and transport."""
    factory = reactor.tcpClients[index][2]
    protocol = factory.buildProtocol(BACKEND)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class AddressTests(SynchronousTestCase):
    def test_literals_and_not(self) -> None:
        self.assertEqual(address_of("tcp:127.0.0.1:5900"), ("127.0.0.1", 5900))
        self.assertEqual(address_of("tcp:host=127.0.0.1:port=5900"), ("127.0.0.1", 5900))
        self.assertEqual(address_of(r"tcp:host=\:\:1:port=5900"), ("::1", 5900))
        self.assertEqual(address_of(r"tcp:host=[\:\:1]:port=5900"), ("::1", 5900))
        self.assertIsNone(address_of("tcp:vnc.internal:5900"))
        self.assertIsNone(address_of("unix:path=/run/vnc.sock"))
        self.assertIsNone(address_of("tls:127.0.0.1:5900"))
        self.assertIsNone(address_of("tcp:127.0.0.1:nope"))


class ConnectTests(SynchronousTestCase):
    def test_connects_with_the_timeout_and_fires_with_the_leg_itself(self) -> None:
        reactor = MemoryReactor()
        d = connect_backend(reactor, ("127.0.0.1", 5900), 7)
        self.assertEqual([(h, p, t) for h, p, _, t, _ in reactor.tcpClients], [("127.0.0.1", 5900, 7)])
        self.assertNoResult(d)
        protocol, transport = _made(reactor)
        self.assertIsInstance(protocol, BackendProtocol)
        self.assertIs(self.successResultOf(d), protocol)
        self.assertIs(protocol.transport, transport)
        # the connection's protocol is the leg: a half-close reaches it as one
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        self.assertFalse(IHandshakeListener.providedBy(protocol))  # no TLS under it
        self.assertNotIn("made", vars(protocol))  # nothing kept per tunnel
        self.assertIsNone(protocol.made)
        # the connector keeps its factory while the connection lives: the
        # factory keeps nothing the Deferred's callbacks may return
        factory = reactor.tcpClients[0][2]
        self.assertEqual((factory.result, factory.connector), (None, None))

    def test_a_refusal_or_a_timeout_fails_it_with_its_error(self) -> None:
        for reason in (error.ConnectionRefusedError(), error.TimeoutError()):
            reactor = MemoryReactor()
            d = connect_backend(reactor, ("127.0.0.1", 5900), 7)
            factory, connector = reactor.tcpClients[0][2], reactor.connectors[0]
            factory.clientConnectionFailed(connector, Failure(reason))
            self.failureResultOf(d, type(reason))

    def test_cancelling_stops_the_attempt(self) -> None:
        reactor = MemoryReactor()
        d = connect_backend(reactor, ("127.0.0.1", 5900), 7)
        connector = reactor.connectors[0]
        d.cancel()
        self.failureResultOf(d, error.ConnectingCancelledError)
        self.assertTrue(connector.stoppedConnecting)
        # what Twisted reports after stopConnecting finds it failed already
        reactor.tcpClients[0][2].clientConnectionFailed(connector, Failure(error.UserError()))

    def test_cancelling_once_connected_leaves_the_leg(self) -> None:
        reactor = MemoryReactor()
        d = connect_backend(reactor, ("127.0.0.1", 5900), 7)
        protocol, _ = _made(reactor)
        d.cancel()
        self.assertIs(self.successResultOf(d), protocol)
        self.assertFalse(reactor.connectors[0].stoppedConnecting)

    def test_a_reactor_that_refuses_the_connect_fails_it(self) -> None:
        class Broken(MemoryReactor):
            def connectTCP(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
                raise OSError("no sockets left")

        self.failureResultOf(connect_backend(Broken(), ("127.0.0.1", 5900), 7), OSError)


class _Pending:
    """An endpoint whose connect never completes."""

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        return defer.Deferred()


def _request(upstream: str, reactor: MemoryReactor, **kwargs: Any) -> UpstreamRequest:
    config = loads(
        "[gateway]\nlisten = ['tcp:8080']\n[realms.public]\n[[realms.public.modules]]\n"
        "module = 'anonymous'\nflag = 'required'\n[services.raw]\npath = '/raw'\n"
        f"adapter = 'raw'\nrealm = 'public'\nupstream = '{upstream}'\nsubprotocols = ['binary']\n[services.raw.limits]\nconnect_timeout = 3\n"
    )
    service = config.services[0]
    return UpstreamRequest(reactor, service, None, None, None, {}, **kwargs)


class KindTests(SynchronousTestCase):
    def test_an_address_literal_is_connected_without_an_endpoint(self) -> None:
        reactor = MemoryReactor()
        upstream = "tcp:127.0.0.1:5900"
        d = registry.upstream_kind(upstream).connect(_request(upstream, reactor))
        factory = reactor.tcpClients[0][2]
        self.assertEqual(type(factory).__module__, "tunnelgw.upstream.direct")
        self.assertEqual(reactor.tcpClients[0][3], 3)  # the service's connect_timeout
        protocol, _ = _made(reactor)
        self.assertIs(self.successResultOf(d), protocol)

    def test_an_injected_endpoint_for_is_asked_for_names_and_literals(self) -> None:
        # a plugin's or a test's own endpoints stay theirs (a name never
        # has an address_of: it goes to the default endpoint_for)
        for upstream in ("tcp:vnc.internal:5900", "tcp:127.0.0.1:5900"):
            reactor = MemoryReactor()
            seen: list[str] = []

            def recording(r: Any, description: str, timeout: float, seen: list[str] = seen) -> Any:
                seen.append(description)
                return _Pending()

            d = registry.upstream_kind(upstream).connect(_request(upstream, reactor, endpoint_for=recording))
            self.assertEqual(seen, [upstream])
            self.assertNoResult(d)
            self.assertEqual(reactor.tcpClients, [])


class EndpointLegTests(SynchronousTestCase):
    """
    A leg connected through an endpoint (a name, a UNIX socket, a plugin's
    endpoint) is wrapped by Twisted; the wrapper must still pass on the
    service's half-close, and a TLS layer its handshake.
    """

    def _connected(self, upstream: str, reactor: MemoryReactor, connections: list[Any], **kwargs: Any) -> Any:
        d = registry.upstream_kind(upstream).connect(_request(upstream, reactor, **kwargs))
        wrapper = connections[0][1 if upstream.startswith("unix:") else 2].buildProtocol(BACKEND)
        wrapper.makeConnection(HalfCloseStringTransport())
        leg = self.successResultOf(d)
        self.assertIsInstance(leg, BackendProtocol)
        return wrapper, leg

    def test_a_half_close_through_the_wrapper_reaches_the_leg(self) -> None:
        named = MemoryReactor()
        tcp = self._connected(
            "tcp:vnc.internal:5900",
            named,
            named.tcpClients,
            endpoint_for=lambda r, d, t: TCP4ClientEndpoint(named, "127.0.0.1", 5900, t),
        )
        unix = MemoryReactor()
        for wrapper, leg in (tcp, self._connected("unix:path=/run/vnc.sock", unix, unix.unixClients)):
            # what Twisted's TCP and UNIX connections ask at the service's EOF
            half_closeable = IHalfCloseableProtocol(wrapper, None)
            self.assertIsNotNone(half_closeable)
            half_closeable.readConnectionLost()
            self.assertTrue(leg.eof)
            self.assertIsNone(leg.lost)

    def test_a_leg_over_tls_hears_its_handshake(self) -> None:
        leg = BackendProtocol()
        transport = HalfCloseStringTransport()
        directlyProvides(transport, ISSLTransport)
        leg.makeConnection(transport)
        self.assertTrue(IHandshakeListener.providedBy(leg))
        self.assertTrue(IHalfCloseableProtocol.providedBy(leg))
        d = leg.secured()
        leg.handshakeCompleted()
        self.assertIs(self.successResultOf(d), leg)
        self.assertFalse(IHandshakeListener.providedBy(BackendProtocol()))  # only that one


class NoCycleTests(SynchronousTestCase):
    def test_a_connect_that_is_over_leaves_no_cycle(self) -> None:
        # the attempt's Deferred cancels through the attempt that holds it:
        # a cycle until it fires, when Twisted drops the canceller
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        for outcome in ("made", "refused", "cancelled"):
            before = {id(o) for o in gc.get_objects()}
            reactor = MemoryReactor()
            d = connect_backend(reactor, ("127.0.0.1", 5900), 7)
            if outcome == "made":
                protocol, _ = _made(reactor)
                protocol.connectionLost(Failure(error.ConnectionDone()))
                del protocol
            elif outcome == "refused":
                reactor.tcpClients[0][2].clientConnectionFailed(
                    reactor.connectors[0], Failure(error.ConnectionRefusedError())
                )
            else:
                d.cancel()
            d.addErrback(lambda f: None)
            del d, reactor
            self.assertEqual(cyclic_garbage(before, ("tunnelgw", "twisted")), [], outcome)
