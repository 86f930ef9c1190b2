"""
C{introspection}: an opaque session cookie (or bearer token) of an existing
web app, checked by asking the app (or its identity provider) over HTTP,
asynchronously, in the manner of OAuth 2.0 token introspection (RFC 7662):
C{POST} of C{token=<value>} as a form, answered with JSON whose C{active}
is C{true} for a valid session.

Options: C{url} (required; https, verified with service-identity, or http
to a loopback address only),
C{source} (C{cookie}, default, or C{bearer}), C{cookie} (the cookie's name,
for that source), C{timeout} (seconds, default 5), C{user_field} (default
C{sub}; C{username} is tried next), C{roles_field} (default C{roles}: a
list or a space-separated string), C{authorization_file} (a file holding
the value of the C{Authorization} header the gateway sends to the
introspection endpoint, for its own client authentication).

An C{exp} in the answer becomes the subject's expiry; revalidation asks
again, so a session ended in the web app ends its tunnels.  Answers over
64 KiB, non-JSON answers, errors and timeouts refuse the login.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, protocol
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tunnelgw.config.values import ConfigError, Table, positive_seconds_value, string_value
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal, Subject
from tunnelgw.security.modules.base import BaseModule, asked_within, bounded_body, check_remote_url, roles_of

MAX_ANSWER = 64 * 1024


@implementer(IBodyProducer)
class _Form:
    """
    A request body written whole at once: a form of one field, short (a
    FileBodyProducer would write it a turn later, through a cooperator on
    the global reactor).
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


@dataclass(frozen=True)
class IntrospectionOptions:
    url: str
    source: str
    cookie: str | None
    timeout: float
    user_field: str
    roles_field: str
    authorization: str | None
    factory: IntrospectionFactory


@implementer(ILoginModule)
class IntrospectionModule(BaseModule):
    def _token(self) -> str:
        o = self.options
        token = self.callbacks.bearer if o.source == "bearer" else self.callbacks.cookies.get(o.cookie)
        if not token:
            raise LoginFailed(f"no {o.source}" + (f" {o.cookie}" if o.cookie else ""))
        return str(token)

    def authenticate(self) -> defer.Deferred[dict[str, Any]]:
        token = self._token()
        self.shared.setdefault("introspected_token", token)
        self._token_value = token
        return self.options.factory.introspect(self.options, token, self.reactor)

    def principals(self, answer: dict[str, Any]) -> tuple[set[Principal], dict[str, Any]]:
        o = self.options
        user = answer.get(o.user_field) or answer.get("username")
        roles = answer.get(o.roles_field, [])
        if isinstance(roles, str):
            roles = roles.split()
        found = roles_of(r for r in roles if isinstance(r, str))
        found.add(Principal("user", str(user)))
        attributes: dict[str, Any] = {"method": f"introspection-{o.source}"}
        if isinstance(answer.get("exp"), (int, float)):
            attributes["expires"] = float(answer["exp"])
        return found, attributes

    def revalidate(self, subject: Subject) -> defer.Deferred[bool]:
        d = self.options.factory.introspect(self.options, self._token_value, self.reactor)
        return d.addCallbacks(lambda answer: True, lambda failure: False)


@implementer(ILoginModuleFactory)
class IntrospectionFactory:
    name = "introspection"

    def __init__(self, agent: Any = None, clock: Any = None) -> None:
        self._agent = agent
        self._clock = clock

    def _reactor_parts(self, reactor: Any) -> tuple[Any, Any]:
        if self._agent is None:
            # at first use: configuration is loaded before twistd installs
            # a reactor; the login hands over the gateway's
            self._agent = Agent(reactor)
            self._clock = reactor
        return self._agent, self._clock

    def introspect(
        self, options: IntrospectionOptions, token: str, reactor: Any
    ) -> defer.Deferred[dict[str, Any]]:
        agent, clock = self._reactor_parts(reactor)
        headers = Headers(
            {b"Content-Type": [b"application/x-www-form-urlencoded"], b"Accept": [b"application/json"]}
        )
        if options.authorization:
            headers.addRawHeader(b"Authorization", options.authorization.encode("latin-1"))
        body = _Form(urlencode({"token": token}).encode("ascii"))
        deadline = clock.seconds() + options.timeout
        d = agent.request(b"POST", options.url.encode("ascii"), headers, body)

        def got_response(response: Any) -> defer.Deferred[bytes]:
            if response.code != 200:
                response.deliverBody(protocol.Protocol())
                raise LoginFailed(f"introspection answered HTTP {response.code}")
            return bounded_body(
                response,
                clock,
                deadline - clock.seconds(),
                MAX_ANSWER,
                lambda: LoginFailed("introspection answer too large"),
            )

        def parse(data: bytes) -> dict[str, Any]:
            try:
                answer = json.loads(data)
            except ValueError:
                raise LoginFailed("introspection answer is not JSON") from None
            if not isinstance(answer, dict) or answer.get("active") is not True:
                raise LoginFailed("session is not active")
            if not (answer.get(options.user_field) or answer.get("username")):
                raise LoginFailed(f"introspection answer has no {options.user_field}")
            return answer

        d.addCallback(got_response).addCallback(parse)
        return asked_within(d, options.timeout, clock, "introspection")

    def parse_config(self, options: dict[str, Any], key: str) -> IntrospectionOptions:
        t = Table(options, key)
        url = t.require("url", string_value)
        check_remote_url(t.key("url"), url)
        source = t.choice("source", ("cookie", "bearer"), "cookie")
        cookie = t.require("cookie", string_value) if source == "cookie" else None
        authorization = None
        authorization_file = t.take("authorization_file", string_value, None)
        if authorization_file is not None:
            try:
                with open(authorization_file, encoding="utf-8") as f:
                    authorization = f.read().strip()
            except OSError as e:
                raise ConfigError(
                    f"{t.key('authorization_file')}: {authorization_file}: {e.strerror}"
                ) from None
        parsed = IntrospectionOptions(
            url=url,
            source=source,
            cookie=cookie,
            timeout=t.take("timeout", positive_seconds_value, 5.0),
            user_field=t.take("user_field", string_value, "sub"),
            roles_field=t.take("roles_field", string_value, "roles"),
            authorization=authorization,
            factory=self,
        )
        t.done()
        return parsed

    def create(self) -> IntrospectionModule:
        return IntrospectionModule()
