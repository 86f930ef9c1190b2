"""
The C{introspection} module's call to the web app or identity provider,
over treq's in-memory agent on a memory clock: an answer, one too large,
and one that stops coming, each within the module's timeout.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.unit.test_jwks import _in_memory
from tunnelgw.errors import LoginFailed
from tunnelgw.security.modules.introspection import MAX_ANSWER, IntrospectionFactory


class Provider(Resource):
    """Answers each POST with C{body}, or with a part of it and then nothing (C{stall})."""

    isLeaf = True

    def __init__(self, body: bytes, stall: bool = False) -> None:
        super().__init__()
        self.body = body
        self.stall = stall
        self.lost: list[Any] = []

    def render_POST(self, request: Any) -> Any:  # noqa: N802
        request.setHeader(b"Content-Type", b"application/json")
        if not self.stall:
            return self.body
        request.write(self.body[:5])
        request.notifyFinish().addErrback(self.lost.append)
        return NOT_DONE_YET


class IntrospectTests(SynchronousTestCase):
    def introspect(self, provider: Provider) -> Any:
        self.clock = Clock()
        self.agent = _in_memory(provider)
        factory = IntrospectionFactory(agent=self.agent, clock=self.clock)
        options = factory.parse_config(
            {"url": "https://app.example/introspect", "source": "bearer", "timeout": 5}, "opts"
        )
        d = factory.introspect(options, "opaque", self.clock)
        for _ in range(3):
            self.agent.flush()
        return d

    def test_an_answer(self) -> None:
        answer = {"active": True, "sub": "alice"}
        got = self.successResultOf(self.introspect(Provider(json.dumps(answer).encode())))
        self.assertEqual(got, answer)

    def test_an_answer_too_large(self) -> None:
        d = self.introspect(Provider(b" " * (MAX_ANSWER + 1)))
        self.assertEqual(str(self.failureResultOf(d, LoginFailed).value), "introspection answer too large")

    def test_an_answer_that_stops_coming(self) -> None:
        """
        Part of the body, then nothing: the login fails at the timeout, and
        the connection to the provider is closed (it was left open).
        """
        provider = Provider(json.dumps({"active": True, "sub": "alice"}).encode(), stall=True)
        d = self.introspect(provider)
        self.assertNoResult(d)
        self.clock.advance(5)
        failure = self.failureResultOf(d, LoginFailed)
        self.assertEqual(str(failure.value), "introspection did not answer within 5s")
        self.agent.flush()
        self.assertEqual(len(provider.lost), 1)
