"""
An example tunnelgw authorization policy, found through twisted.plugin:
C{remote} asks a decision point over HTTP once per tunnel, at its start,
and answers that tunnel's per-operation checks from the answer, in
memory.

The gateway POSTs C{{"user", "roles", "service", "subprotocol"}} as JSON
to C{url}; the decision point answers C{{"allow": true, "grants":
{"ACTION": ["RESOURCE", ...]}}} (a resource C{"*"} grants every one) or
C{{"allow": false}}.  A refusal is a 403; an unreachable, slow or garbled
decision point refuses too (the gateway answers 503 and logs it): deny
by default.

Nothing here imports the reactor: plugin modules are imported while the
plugin cache is built, possibly before a reactor is chosen; the gateway
hands its reactor to C{start_session}.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet import defer
from twisted.plugin import IPlugin
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from zope.interface import implementer

from tunnelgw.config import ConfigError, Table, positive_int_value, string_value
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAuthorizationPolicy, IPolicyFactory, ISessionPolicy


@implementer(IAuthorizationPolicy)
class Granted:
    """One tunnel's grants, as the decision point answered."""

    def __init__(self, grants: dict[str, frozenset[str]]) -> None:
        self.grants = grants

    def permits(self, subject: Any, service: str, action: str, resource: str) -> bool:
        allowed = self.grants.get(action, frozenset())
        return "*" in allowed or resource in allowed


@implementer(IAuthorizationPolicy, ISessionPolicy)
class RemotePolicy:
    def __init__(self, url: str, max_answer: int) -> None:
        self.url = url
        self.max_answer = max_answer
        self.agents: dict[int, Agent] = {}

    def permits(self, subject: Any, service: str, action: str, resource: str) -> bool:
        return False  # only a session's own grants allow anything

    def start_session(self, subject: Any, service: Any, subprotocol: str | None, reactor: Any) -> Any:
        agent = self.agents.setdefault(id(reactor), Agent(reactor))
        question = {
            "user": subject.user,
            "roles": sorted(subject.roles),
            "service": service.name,
            "subprotocol": subprotocol,
        }
        body = FileBodyProducer(io.BytesIO(json.dumps(question).encode("utf-8")))
        headers = Headers({b"Content-Type": [b"application/json"], b"Accept": [b"application/json"]})
        d = agent.request(b"POST", self.url.encode("ascii"), headers, body)
        return d.addCallback(self.read).addCallback(self.decide)

    def read(self, response: Any) -> defer.Deferred[bytes]:
        if response.code != 200:
            raise ValueError(f"the decision point answered HTTP {response.code}")
        length = response.length
        if isinstance(length, int) and length > self.max_answer:
            raise ValueError(f"the decision point's answer is over {self.max_answer} bytes")
        return readBody(response)

    def decide(self, body: bytes) -> Granted:
        if len(body) > self.max_answer:
            raise ValueError(f"the decision point's answer is over {self.max_answer} bytes")
        answer = json.loads(body)
        if not isinstance(answer, dict) or answer.get("allow") is not True:
            raise Refusal(403, "the policy refused this session")
        grants = answer.get("grants", {})
        if not isinstance(grants, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(r, str) for r in v)
            for k, v in grants.items()
        ):
            raise ValueError("the decision point's grants are not {action: [resource, ...]}")
        return Granted({action: frozenset(resources) for action, resources in grants.items()})


@implementer(IPlugin, IPolicyFactory)
class RemotePolicyFactory:
    name = "remote"

    def parse_config(self, options: dict[str, Any], key: str) -> RemotePolicy:
        table = Table(options, key)
        url = table.require("url", string_value)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{table.key('url')}: expected an http:// or https:// URL")
        max_answer = table.take("max_answer", positive_int_value, 65536)
        table.done()
        return RemotePolicy(url, max_answer)


remote = RemotePolicyFactory()
