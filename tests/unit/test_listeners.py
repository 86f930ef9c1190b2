"""
The reuseport: listener: parsed from an endpoint description, bound with
SO_REUSEPORT so that several processes share a port, adopted by the
reactor (a memory reactor here).
"""

from __future__ import annotations

import socket

from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.listeners import ReusePortEndpoint, bound_socket


class ReusePortTests(SynchronousTestCase):
    def test_description(self) -> None:
        endpoint = serverFromString(MemoryReactor(), "reuseport:8080:interface=127.0.0.1:backlog=4096")
        self.assertIsInstance(endpoint, ReusePortEndpoint)

    def test_two_sockets_share_a_port(self) -> None:
        first = bound_socket("127.0.0.1", 0, 5)
        self.addCleanup(first.close)
        port = first.getsockname()[1]
        second = bound_socket("127.0.0.1", port, 5)
        self.addCleanup(second.close)
        self.assertEqual(second.getsockname(), first.getsockname())

    def test_a_port_held_without_reuseport_cannot_be_shared(self) -> None:
        plain = socket.socket()
        self.addCleanup(plain.close)
        plain.bind(("127.0.0.1", 0))
        plain.listen(1)
        with self.assertRaises(CannotListenError):
            bound_socket("127.0.0.1", plain.getsockname()[1], 5)

    def test_listen_adopts_the_socket(self) -> None:
        reactor = MemoryReactor()
        factory = Factory()
        d = serverFromString(reactor, "reuseport:0:interface=127.0.0.1").listen(factory)
        self.assertIsNotNone(self.successResultOf(d))
        ((fileno, family, adopted),) = reactor.adoptedPorts
        self.assertEqual(family, socket.AF_INET)
        self.assertIs(adopted, factory)

    def test_ipv6_interface(self) -> None:
        reactor = MemoryReactor()
        d = ReusePortEndpoint(reactor, 0, "::1").listen(Factory())
        self.successResultOf(d)
        self.assertEqual(reactor.adoptedPorts[0][1], socket.AF_INET6)

    def test_bind_failure_fails_the_listen(self) -> None:
        plain = socket.socket()
        self.addCleanup(plain.close)
        plain.bind(("127.0.0.1", 0))
        plain.listen(1)
        d = ReusePortEndpoint(MemoryReactor(), plain.getsockname()[1], "127.0.0.1").listen(Factory())
        self.failureResultOf(d, CannotListenError)

    def test_unknown_option_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            serverFromString(MemoryReactor(), "reuseport:8080:interfce=127.0.0.1")


class BacklogTests(SynchronousTestCase):
    def test_a_listener_without_a_backlog_gets_the_gateways(self) -> None:
        from tunnelgw.listeners import DEFAULT_BACKLOG, with_backlog

        self.assertEqual(DEFAULT_BACKLOG, 1024)
        for description in (
            "tcp:8080:interface=127.0.0.1",
            "ssl:8443:privateKey=k.pem:certKey=c.pem",
            "unix:/run/tunnelgw.sock",
            "reuseport:8080",
        ):
            self.assertEqual(with_backlog(description), description + ":backlog=1024")
        for kept in ("tcp:8080:backlog=64", "systemd:domain=INET:index=0", "8080"):
            self.assertEqual(with_backlog(kept), kept)

    def test_the_gateways_listeners_listen_with_it(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from tunnelgw.config.loader import loads
        from tunnelgw.service import GatewayService
        from tunnelgw.testing import public_realm

        reactor = MemoryReactorClock()
        config = loads(
            '[gateway]\nlisten = ["tcp:8080:interface=127.0.0.1", "tcp:8081:backlog=7"]\n' + public_realm()
        )
        service = GatewayService(config, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(
            [(port, backlog) for port, _, backlog, _ in reactor.tcpServers], [(8080, 1024), (8081, 7)]
        )


class SystemdListenerTests(SynchronousTestCase):
    def test_a_socket_not_passed_is_named(self) -> None:
        from tunnelgw.errors import ConfigError
        from tunnelgw.listeners import check_listener

        with self.assertRaises(ConfigError) as e:
            check_listener("gateway.listen[0]", "systemd:domain=INET:name=web")
        self.assertEqual(
            str(e.exception),
            "gateway.listen[0]: 'systemd:domain=INET:name=web': the service manager passed no such socket"
            ' (passed: none); see docs/operations.md, "systemd"',
        )

    def test_check_config_checks_the_syntax_only(self) -> None:
        from tunnelgw.errors import ConfigError
        from tunnelgw.listeners import check_listener

        check_listener("k", "systemd:domain=INET:name=web", passed=False)
        check_listener("k", "systemd:domain=INET6:index=0", passed=False)
        for wrong, why in (
            ("systemd:domain=INET", "give exactly one of index= or name="),
            ("systemd:domain=INET:index=0:name=web", "give exactly one of index= or name="),
            ("systemd:domain=FOO:name=web", "domain= must be INET, INET6 or UNIX"),
        ):
            with self.assertRaises(ConfigError) as e:
                check_listener("k", wrong, passed=False)
            self.assertIn(why, str(e.exception))


class ProxyProtocolListenerTests(SynchronousTestCase):
    def test_the_wrapped_listener_gets_the_backlog(self) -> None:
        from tunnelgw.listeners import with_backlog

        self.assertEqual(with_backlog("haproxy:tcp:8080"), "haproxy:tcp:8080:backlog=1024")
        self.assertEqual(with_backlog("haproxy:tcp:8080:backlog=7"), "haproxy:tcp:8080:backlog=7")
