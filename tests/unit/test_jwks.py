"""
Keys from an identity provider's jwks_uri: fetched when first needed,
kept per Cache-Control, fetched again for an unknown kid at a bounded
rate, the last good set kept while the provider is down.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import rsa

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.errors import ConfigError, LoginFailed
from tunnelgw.security.jaas import LoginContext
from tunnelgw.security.modules.jwks import MAX_ANSWER, MAX_REDIRECTS, RemoteKeySet, treq_get
from tunnelgw.security.modules.jwt import JWTFactory
from tunnelgw.testing import callbacks

URI = "https://idp.example/jwks"


def key_pair(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public.update(kid=kid, alg="RS256", use="sig")
    return private, public


K1, K1_PUBLIC = key_pair("k1")
K2, K2_PUBLIC = key_pair("k2")


class Provider:
    """A fake jwks_uri: each fetch waits for the test to answer it."""

    def __init__(self) -> None:
        self.fetches: list[defer.Deferred[tuple[int, str | None, bytes]]] = []

    def __call__(
        self, reactor: Any, url: str, timeout: float
    ) -> defer.Deferred[tuple[int, str | None, bytes]]:
        assert url == URI
        d: defer.Deferred[tuple[int, str | None, bytes]] = defer.Deferred()
        self.fetches.append(d)
        return d

    def answer(self, *keys: dict[str, Any], control: str | None = None, status: int = 200) -> None:
        self.fetches[-1].callback((status, control, json.dumps({"keys": list(keys)}).encode()))


class RemoteKeySetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.provider = Provider()
        self.keys = RemoteKeySet(URI, refetch_interval=30, default_max_age=300, fetch=self.provider)

    def test_fetched_when_first_needed_then_kept(self) -> None:
        d = self.keys.key_for("k1", self.clock)
        assert isinstance(d, defer.Deferred)
        self.provider.answer(K1_PUBLIC)
        self.assertEqual(self.successResultOf(d).key_id, "k1")
        self.assertEqual(self.keys.key_for("k1", self.clock).key_id, "k1")  # type: ignore[union-attr]
        self.assertEqual(len(self.provider.fetches), 1)

    def test_logins_waiting_share_one_fetch(self) -> None:
        waiting = [self.keys.key_for("k1", self.clock) for _ in range(3)]
        self.assertEqual(len(self.provider.fetches), 1)
        self.provider.answer(K1_PUBLIC)
        self.assertEqual([self.successResultOf(d).key_id for d in waiting], ["k1"] * 3)  # type: ignore[union-attr]

    def test_an_unknown_kid_is_fetched_again_at_a_bounded_rate(self) -> None:
        self.keys.key_for("k1", self.clock)
        self.provider.answer(K1_PUBLIC)
        self.clock.advance(30)
        d = self.keys.key_for("k2", self.clock)  # rotated
        self.provider.answer(K2_PUBLIC, K1_PUBLIC)
        self.assertEqual(self.successResultOf(d).key_id, "k2")  # type: ignore[union-attr]
        self.clock.advance(1)
        with self.assertRaises(LoginFailed):
            self.keys.key_for("k3", self.clock)  # a flood of unknown kids fetches nothing
        self.assertEqual(len(self.provider.fetches), 2)

    def test_cache_control_max_age(self) -> None:
        self.keys.key_for("k1", self.clock)
        self.provider.answer(K1_PUBLIC, control="public, max-age=60")
        self.clock.advance(59)
        self.keys.key_for("k1", self.clock)
        self.assertEqual(len(self.provider.fetches), 1)
        self.clock.advance(1)
        d = self.keys.key_for("k1", self.clock)
        self.assertEqual(len(self.provider.fetches), 2)
        self.provider.answer(K1_PUBLIC)
        self.successResultOf(d)

    def test_no_store_is_fetched_again_when_next_needed_at_the_bounded_rate(self) -> None:
        self.keys.key_for("k1", self.clock)
        self.provider.answer(K1_PUBLIC, control="no-store")
        self.keys.key_for("k1", self.clock)  # stale, but asked a moment ago
        self.assertEqual(len(self.provider.fetches), 1)
        self.clock.advance(30)
        self.keys.key_for("k1", self.clock)
        self.assertEqual(len(self.provider.fetches), 2)

    def test_the_last_good_set_serves_while_the_provider_is_down(self) -> None:
        self.keys.key_for("k1", self.clock)
        self.provider.answer(K1_PUBLIC, control="max-age=10")
        self.clock.advance(60)
        d = self.keys.key_for("k1", self.clock)
        self.provider.fetches[-1].errback(ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d).key_id, "k1")  # type: ignore[union-attr]
        for bad in ((500, None, b"{}"), (200, None, b"not json"), (200, None, b'{"keys": "x"}')):
            self.clock.advance(30)
            d = self.keys.key_for("k1", self.clock)
            self.provider.fetches[-1].callback(bad)
            self.assertEqual(self.successResultOf(d).key_id, "k1")  # type: ignore[union-attr]

    def test_no_set_yet_refuses(self) -> None:
        d = self.keys.key_for("k1", self.clock)
        self.provider.fetches[-1].errback(ConnectionRefusedError())
        self.failureResultOf(d, LoginFailed)
        with self.assertRaises(LoginFailed):
            self.keys.key_for("k1", self.clock)  # not asked again before the interval


class JWTWithJwksUriTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.provider = Provider()
        self.factory = JWTFactory(fetch=self.provider)
        self.options = {"jwks_uri": URI, "algorithms": ["RS256"], "audience": "gw", "roles_claim": "scope"}

    def token(self, key: Any, kid: str, **claims: Any) -> str:
        body = {"sub": "svc", "aud": "gw", "exp": time.time() + 300, "scope": "tunnel", **claims}
        return pyjwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

    def login(self, token: str) -> defer.Deferred[Any]:
        from tunnelgw.config.model import Flag, ModuleEntry

        parsed = self.factory.parse_config(dict(self.options), "options")
        context = LoginContext("idp", [ModuleEntry("jwt", self.factory, Flag.REQUIRED, parsed)])
        return context.login(callbacks(bearer=token))

    def test_a_token_of_the_providers_key(self) -> None:
        d = self.login(self.token(K1, "k1"))
        self.provider.answer(K1_PUBLIC)
        subject = self.successResultOf(d)
        self.assertEqual((subject.user, subject.roles), ("svc", frozenset({"tunnel"})))

    def test_a_token_of_another_key(self) -> None:
        d = self.login(self.token(K2, "k1"))  # signed by a key that is not k1
        self.provider.answer(K1_PUBLIC)
        self.assertIn("invalid token", str(self.failureResultOf(d, LoginFailed).value))

    def test_only_https_or_loopback(self) -> None:
        for uri in ("http://idp.example/jwks", "ftp://idp.example/jwks", "jwks.json"):
            with self.assertRaises(ConfigError):
                self.factory.parse_config({**self.options, "jwks_uri": uri}, "options")
        self.factory.parse_config({**self.options, "jwks_uri": "http://127.0.0.1:9000/jwks"}, "options")

    def test_exactly_one_key_source(self) -> None:
        with self.assertRaises(ConfigError):
            self.factory.parse_config({**self.options, "key_file": "/dev/null"}, "options")


class JtiTests(SynchronousTestCase):
    def test_the_tokens_id_is_kept_for_revocations(self) -> None:
        from tunnelgw.testing import log_in

        secret = Path(tempfile.mkdtemp()) / "secret"
        secret.write_text("s" * 32)
        token = pyjwt.encode(
            {"sub": "a", "aud": "gw", "exp": time.time() + 60, "jti": "t-1"}, "s" * 32, "HS256"
        )
        options = {"key_file": str(secret), "algorithms": ["HS256"], "audience": "gw"}
        subject = log_in(JWTFactory(), options, callbacks(bearer=token))
        self.assertEqual(subject.attributes["jti"], "t-1")


def _in_memory(resource: Any) -> Any:
    """treq's in-memory agent, serving C{resource}."""
    import warnings

    with warnings.catch_warnings():
        # treq 23.11 (the declared floor) imports cgi, which Python 3.11 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        from treq.testing import RequestTraversalAgent
    return RequestTraversalAgent(resource)


class TreqGetTests(SynchronousTestCase):
    """
    L{treq_get} over treq's in-memory agent: the key set's answer, and
    redirects followed only where the jwks_uri itself could point.
    """

    def fetch(self, routes: dict[bytes, tuple[int, dict[bytes, bytes], bytes]], url: str) -> Any:
        """C{treq_get} of C{url} from a site answering C{routes}."""
        from twisted.web.resource import Resource

        asked: list[bytes] = []

        class Site(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                asked.append(request.uri)
                code, headers, body = routes[request.uri]
                request.setResponseCode(code)
                for name, value in headers.items():
                    request.setHeader(name, value)
                return body

        self.agent = agent = _in_memory(Site())
        self.clock = Clock()
        d = treq_get(self.clock, url, 5.0, agent=agent)
        for _ in range(MAX_REDIRECTS + 2):
            agent.flush()
        self.asked = asked
        return d

    def test_an_answer(self) -> None:
        routes = {b"/keys": (200, {b"Cache-Control": b"max-age=60"}, b'{"keys": []}')}
        got = self.successResultOf(self.fetch(routes, "https://idp.example/keys"))
        self.assertEqual(got, (200, "max-age=60", b'{"keys": []}'))

    def test_a_redirect_to_https_is_followed(self) -> None:
        routes = {
            b"/keys": (301, {b"Location": b"https://idp.example/v2/keys"}, b""),
            b"/v2/keys": (200, {}, b'{"keys": []}'),
        }
        got = self.successResultOf(self.fetch(routes, "https://idp.example/keys"))
        self.assertEqual(got, (200, None, b'{"keys": []}'))
        self.assertEqual(self.asked, [b"/keys", b"/v2/keys"])

    def test_a_redirect_to_http_is_not(self) -> None:
        routes = {b"/keys": (302, {b"Location": b"http://idp.example/keys"}, b"")}
        failure = self.failureResultOf(self.fetch(routes, "https://idp.example/keys"), ValueError)
        self.assertEqual(
            str(failure.value),
            "redirected to http://idp.example/keys: https only (http to a loopback address), no credentials",
        )
        self.assertEqual(self.asked, [b"/keys"])

    def test_redirects_are_bounded(self) -> None:
        routes = {b"/keys": (307, {b"Location": b"/keys"}, b"")}
        failure = self.failureResultOf(self.fetch(routes, "https://idp.example/keys"), ValueError)
        self.assertEqual(str(failure.value), f"more than {MAX_REDIRECTS} redirects")
        self.assertEqual(len(self.asked), MAX_REDIRECTS + 1)

    def test_a_redirect_with_credentials_is_not(self) -> None:
        """Nor one with credentials in the URL, which the refusal (logged) leaves out."""
        routes = {b"/keys": (302, {b"Location": b"https://user:secret@idp.example/keys"}, b"")}
        failure = self.failureResultOf(self.fetch(routes, "https://idp.example/keys"), ValueError)
        self.assertNotIn("secret", str(failure.value))
        self.assertIn("redirected to https://idp.example/keys", str(failure.value))

    def test_one_timeout_for_the_fetch_and_its_redirects(self) -> None:
        """The timeout bounds the whole fetch on the reactor's clock, not each redirect anew."""
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET

        held: list[Any] = []

        class Site(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                held.append(request)  # answered by hand below, or never
                return NOT_DONE_YET

        agent = _in_memory(Site())
        clock = Clock()
        d = treq_get(clock, "https://idp.example/keys", 5.0, agent=agent)
        clock.advance(3.0)
        first = held.pop()
        first.setResponseCode(302)
        first.setHeader(b"Location", b"/slow")
        first.finish()  # the redirect, 3 s in
        for _ in range(3):
            agent.flush()
        self.assertEqual([r.uri for r in held], [b"/slow"])
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)  # 5 s since the fetch began
        self.failureResultOf(d)

    def test_a_body_that_stops_coming(self) -> None:
        """Headers and part of the body, then nothing: the fetch ends at its timeout, the connection closed."""
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET

        lost: list[Any] = []

        class Site(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                request.write(b'{"keys": [')
                request.notifyFinish().addErrback(lost.append)
                return NOT_DONE_YET

        agent = _in_memory(Site())
        clock = Clock()
        d = treq_get(clock, "https://idp.example/keys", 5.0, agent=agent)
        for _ in range(3):
            agent.flush()
        self.assertNoResult(d)
        clock.advance(5.0)
        self.failureResultOf(d, defer.TimeoutError)
        agent.flush()
        self.assertEqual(len(lost), 1)  # the connection to the provider is closed

    def test_a_body_over_the_bound(self) -> None:
        routes: dict[bytes, tuple[int, dict[bytes, bytes], bytes]] = {
            b"/keys": (200, {}, b"x" * (MAX_ANSWER + 1))
        }
        failure = self.failureResultOf(self.fetch(routes, "https://idp.example/keys"), ValueError)
        self.assertEqual(str(failure.value), f"the key set is over {MAX_ANSWER} bytes")
