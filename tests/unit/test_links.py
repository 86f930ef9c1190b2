"""
Reverse links in memory: the outer's pool hands idle links to waiting
clients and refuses with 503 after the wait; the inner's dialer keeps its
pool full and backs off exponentially, capped, while the outer is away.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.config.loader import loads
from tunnelgw.config.values import ConfigError
from tunnelgw.errors import Refusal
from tunnelgw.testing import naming, public_realm
from tunnelgw.upstream.dialer import LinkDialer
from tunnelgw.upstream.links import LinkPool, PoolConfig, ReverseLink


class FakeLink:
    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class LinkPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = LinkPool(
            PoolConfig("inner-1", "/link", "CN=inner-1", wait_timeout=5, max_idle=2), self.clock
        )

    def test_idle_link_taken_at_once(self) -> None:
        link: Any = FakeLink()
        self.pool.offer(link)
        self.assertIs(self.successResultOf(self.pool.take()), link)
        self.assertEqual(len(self.pool.idle), 0)

    def test_a_waiting_client_gets_the_next_link(self) -> None:
        d = self.pool.take()
        self.assertNoResult(d)
        self.clock.advance(4)
        link: Any = FakeLink()
        self.pool.offer(link)
        self.assertIs(self.successResultOf(d), link)
        self.clock.advance(10)  # its timer was cancelled

    def test_no_link_within_the_wait_is_503(self) -> None:
        d = self.pool.take()
        self.clock.advance(5)
        refusal = self.failureResultOf(d, Refusal).value
        self.assertEqual(refusal.status, 503)
        self.assertIn("Retry-After", refusal.headers)
        link: Any = FakeLink()
        self.pool.offer(link)  # goes idle, not to the expired client
        self.assertEqual(list(self.pool.idle), [link])

    def test_a_client_that_leaves_stops_waiting(self) -> None:
        d = self.pool.take()
        d.cancel()
        self.failureResultOf(d)
        link: Any = FakeLink()
        self.pool.offer(link)
        self.assertEqual(list(self.pool.idle), [link])

    def test_idle_links_are_bounded(self) -> None:
        links: list[Any] = [FakeLink() for _ in range(3)]
        for link in links:
            self.pool.offer(link)
        self.assertEqual(list(self.pool.idle), links[:2])
        self.assertEqual(links[2].closed, (1013, "enough idle links"))
        self.pool.forget(links[0])
        self.assertEqual(list(self.pool.idle), [links[1]])


class LinkRefusalTests(SynchronousTestCase):
    """
    The inner's refusal of a session reaches the client as a forward
    chain's would (L{tunnelgw.upstream.chain.refusal_of}).
    """

    def answer(self, reply: dict[str, Any]) -> Refusal:
        import json

        from twisted.internet import defer

        from tunnelgw.upstream.links import LinkServerProtocol

        link = LinkServerProtocol()
        closed: list[tuple[int, str]] = []
        link.close = lambda code, reason: closed.append((code, reason))  # type: ignore[method-assign]
        link._answer = defer.Deferred()
        answer = link._answer
        link.onMessage(json.dumps(reply).encode(), False)
        self.assertEqual(closed, [(1000, "session refused")])
        return self.failureResultOf(answer, Refusal).value  # type: ignore[return-value]

    def test_statuses(self) -> None:
        refused = self.answer({"refuse": 401, "reason": "who"})
        self.assertEqual((refused.status, refused.reason), (403, "the inner gateway refused: 401 who"))
        busy = self.answer({"refuse": 429, "reason": "slow down"})
        self.assertEqual((busy.status, busy.headers), (503, {"Retry-After": "5"}))
        self.assertEqual(self.answer({"refuse": 404, "reason": "no such service"}).status, 502)


class LinkDialerTests(SynchronousTestCase):
    def test_keeps_the_pool_full_and_backs_off(self) -> None:
        reactor = naming(MemoryReactorClock())
        link = ReverseLink("wss://10.0.2.1:9443/link", tls=None, pool=2, backoff_initial=0.5, backoff_max=2)
        dialer = LinkDialer(link, reactor, admit=lambda link, request: None)
        dialer._endpoint = failing = _FailingEndpoint()  # type: ignore[assignment]  # the outer is unreachable
        dialer.startService()
        self.assertEqual(failing.attempts, 2)  # the whole pool, at once
        delays = []
        for _ in range(5):
            call = dialer._retry
            assert call is not None
            delays.append(call.getTime() - reactor.seconds())
            reactor.advance(delays[-1])
        self.assertEqual(delays, [0.5, 1.0, 2.0, 2.0, 2.0])  # doubling, capped
        dialer.stopService()
        self.assertFalse(dialer._retry is not None and dialer._retry.active())


class _FailingEndpoint:
    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory: Any) -> Any:
        from twisted.internet import defer
        from twisted.internet.error import ConnectionRefusedError

        self.attempts += 1
        return defer.fail(ConnectionRefusedError())


def test_config_checks(tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "assertion.key"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    chain = f'[services.s.chain]\nassertion_key = "{key}"\nissuer = "o"\naudience = "i"\n'
    base = (
        """
[gateway]
listen = ["tcp:1"]
"""
        + public_realm("r")
        + """[services.s]
path = "/s"
adapter = "chain"
realm = "r"
allow_no_subprotocol = true
"""
    )
    import pytest

    with pytest.raises(ConfigError, match=r"services.s.upstream: no \[links.nope\] is defined"):
        loads(base + 'upstream = "reverse:nope"\n' + chain)
    with pytest.raises(
        ConfigError, match="services.s.chain: client_certificate, client_key, ca and server_name are needed"
    ):
        loads(base + 'upstream = "wss://inner:8443/s"\n' + chain)
    with pytest.raises(ConfigError, match="services.s.upstream: another gateway"):
        loads(base.replace('adapter = "chain"', 'adapter = "raw"') + 'upstream = "wss://inner:8443/s"\n')
    with pytest.raises(ConfigError, match="gateway.reverse_links\\[0\\].outer: expected wss://"):
        loads('[gateway]\n[[gateway.reverse_links]]\nouter = "http://x/"\n')


def test_assertion_key_checked_at_load(tmp_path: Any) -> None:
    """
    An assertion key that cannot sign the configured algorithm, or is
    encrypted, is refused with the configuration, not at the first session.
    """
    import pytest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tunnelgw.upstream.chain import ChainAdapterFactory

    private = ec.generate_private_key(ec.SECP256R1())
    plain, encrypted = tmp_path / "plain.key", tmp_path / "encrypted.key"
    plain.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    options = {"assertion_key": str(plain), "issuer": "o", "audience": "i"}
    assert ChainAdapterFactory().parse_options(options, "s.chain").signer.algorithm == "ES256"
    with pytest.raises(
        ConfigError, match=f"^s.chain.assertion_key: {plain}: an EC secp256r1 key cannot sign RS256"
    ):
        ChainAdapterFactory().parse_options({**options, "assertion_algorithm": "RS256"}, "s.chain")
    with pytest.raises(
        ConfigError, match=f"^s.chain.assertion_key: {encrypted}: not an unencrypted PEM private key"
    ):
        ChainAdapterFactory().parse_options({**options, "assertion_key": str(encrypted)}, "s.chain")
