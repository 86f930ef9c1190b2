"""
The signing keys an identity provider publishes at its C{jwks_uri}, for
the C{jwt} module: fetched with treq when first needed, kept for as long
as the answer's C{Cache-Control: max-age} says (C{default_max_age}
without one; at most a day), fetched again at once for a token whose
C{kid} the set lacks (a rotation), at most once per C{refetch_interval}
seconds whatever tokens arrive, and kept when the provider is down (the
last good set serves until it answers again).  Logins waiting for a fetch
share it.  Answers over 256 KiB, or that are not a key set, do not
replace the set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import hyperlink
import jwt as pyjwt

from twisted.internet import defer
from twisted.python.failure import Failure

from tunnelgw.errors import LoginFailed
from tunnelgw.logs import Logger
from tunnelgw.security.modules.base import bounded_body, remote_url_allowed

__all__ = ["RemoteKeySet", "treq_get"]

MAX_ANSWER = 256 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_AGE_CAP = 86400.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
_NO_STORE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


Fetch = Callable[[Any, str, float], "defer.Deferred[tuple[int, str | None, bytes]]"]


def treq_get(
    reactor: Any, url: str, timeout: float, agent: Any = None
) -> defer.Deferred[tuple[int, str | None, bytes]]:
    """
    GET C{url} with treq (TLS verified as browsers do): its status, its
    C{Cache-Control} and its body, at most L{MAX_ANSWER} bytes.  A
    redirect is followed (at most L{MAX_REDIRECTS}) only to a URL the
    C{jwks_uri} itself could be (https, or http to a loopback address):
    keys fetched in the clear would be anyone's to replace.  C{timeout}
    bounds the whole fetch, redirects and bodies included, on C{reactor}'s
    clock.  C{agent}: another L{IAgent} than Twisted's own (tests).
    """
    from treq.client import HTTPClient

    from twisted.web.client import Agent
    from twisted.web.http_headers import Headers

    client = HTTPClient(Agent(reactor) if agent is None else agent)
    accept = Headers({b"Accept": [b"application/jwk-set+json, application/json"]})
    deadline = reactor.seconds() + timeout  # for the fetch, its redirects included

    def get(where: str, redirects: int) -> defer.Deferred[tuple[int, str | None, bytes]]:
        left = max(0.001, deadline - reactor.seconds())
        d = client.get(where, headers=accept, timeout=left, allow_redirects=False, reactor=reactor)
        return d.addCallback(got, where, redirects)

    def got(response: Any, where: str, redirects: int) -> defer.Deferred[tuple[int, str | None, bytes]]:
        control = response.headers.getRawHeaders("Cache-Control", [None])[0]
        location = response.headers.getRawHeaders("Location", [None])[0]
        body = bounded_body(
            response,
            reactor,
            deadline - reactor.seconds(),
            MAX_ANSWER,
            lambda: ValueError(f"the key set is over {MAX_ANSWER} bytes"),
        )
        if response.code in _REDIRECTS and location is not None:
            moved = hyperlink.URL.from_text(where).click(location)
            target = moved.to_text()
            refused = None
            if not remote_url_allowed(target):
                shown = moved.replace(userinfo="").to_text()  # logged: no credentials
                refused = f"redirected to {shown}: https only (http to a loopback address), no credentials"
            elif redirects >= MAX_REDIRECTS:
                refused = f"more than {MAX_REDIRECTS} redirects"
            if refused is not None:
                body.cancel()  # the redirect's own body: not wanted
                body.addErrback(lambda _: None)
                raise ValueError(refused)
            return body.addCallback(lambda _: get(target, redirects + 1))
        return body.addCallback(lambda data: (response.code, control, data))

    return get(url, 0)


class RemoteKeySet:
    """
    One provider's keys, shared by the logins of a realm's C{jwt} module.
    """

    log = Logger()

    def __init__(
        self,
        uri: str,
        refetch_interval: float = 30.0,
        default_max_age: float = 300.0,
        timeout: float = 5.0,
        fetch: Fetch = treq_get,
    ) -> None:
        self.uri = uri
        self.refetch_interval = refetch_interval
        self.default_max_age = default_max_age
        self.timeout = timeout
        self._fetch = fetch
        self.keys: pyjwt.PyJWKSet | None = None
        self._fresh_until = 0.0
        self._fetched_at: float | None = None
        self._waiting: list[defer.Deferred[None]] | None = None

    def key_for(self, kid: str | None, reactor: Any) -> pyjwt.PyJWK | defer.Deferred[pyjwt.PyJWK]:
        """
        The key that signed a token whose header names C{kid}: at once
        when the set is fresh and has it, else once the set is fetched
        (if a fetch is due).

        @raise LoginFailed: (or the Deferred fails with it) no such key.
        """
        now = reactor.seconds()
        if self.keys is not None:
            key = self._find(kid)
            fresh = now < self._fresh_until
            if key is not None and fresh:
                return key
            if not self._may_fetch(now):
                if key is not None:  # stale, and the provider was asked a moment ago
                    return key
                raise LoginFailed("no key of the identity provider matches the token's kid")
        elif not self._may_fetch(now) and self._waiting is None:
            raise LoginFailed("the identity provider's keys are not available")
        return self._fetched(reactor).addCallback(lambda _: self._found(kid))

    def _may_fetch(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self.refetch_interval

    def _find(self, kid: str | None) -> pyjwt.PyJWK | None:
        assert self.keys is not None
        keys = [k for k in self.keys.keys if kid is None or k.key_id == kid]
        return keys[0] if len(keys) == 1 else None

    def _found(self, kid: str | None) -> pyjwt.PyJWK:
        if self.keys is None:
            raise LoginFailed("the identity provider's keys are not available")
        key = self._find(kid)
        if key is None:
            raise LoginFailed("no key of the identity provider matches the token's kid")
        return key

    def _fetched(self, reactor: Any) -> defer.Deferred[None]:
        """A Deferred of the fetch under way, or of one started now."""
        mine: defer.Deferred[None] = defer.Deferred()
        if self._waiting is not None:
            self._waiting.append(mine)
            return mine
        self._waiting = [mine]
        self._fetched_at = reactor.seconds()
        d = defer.maybeDeferred(self._fetch, reactor, self.uri, self.timeout)
        d.addCallbacks(self._answered, self._failed, callbackArgs=(reactor,))
        d.addBoth(self._wake)
        return mine

    def _answered(self, answer: tuple[int, str | None, bytes], reactor: Any) -> None:
        status, control, body = answer
        if status != 200:
            raise ValueError(f"HTTP {status}")
        try:
            keys = pyjwt.PyJWKSet.from_json(body.decode("utf-8"))
        except (pyjwt.PyJWKSetError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"not a key set: {e}") from None
        self.keys = keys
        self._fresh_until = reactor.seconds() + self._max_age(control)
        self.log.info(
            "the identity provider's keys: {kids}",
            event="jwks_fetched",
            uri=self.uri,
            kids=[k.key_id for k in keys.keys],
        )

    def _max_age(self, control: str | None) -> float:
        if control is None:
            return self.default_max_age
        if _NO_STORE.search(control):
            return 0.0
        found = _MAX_AGE.search(control)
        return min(float(found.group(1)), MAX_AGE_CAP) if found else self.default_max_age

    def _failed(self, f: Failure) -> None:
        self.log.warn(
            "fetching the identity provider's keys from {uri} failed ({why}); {kept}",
            event="jwks_failed",
            uri=self.uri,
            why=f.getErrorMessage(),
            kept="the last good set stays" if self.keys is not None else "no key set yet",
        )

    def _wake(self, result: object) -> None:
        if isinstance(result, Failure):  # _answered refused the answer
            self._failed(result)
        waiting, self._waiting = self._waiting or [], None
        for d in waiting:
            d.callback(None)
