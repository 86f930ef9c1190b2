"""
The rules policy: deny by default, roles, actions and resource patterns;
its configuration errors name the key; the tunnel asks it and logs denials.
"""

from __future__ import annotations

import pytest

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tunnelgw.config.loader import loads
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.interfaces import IAuthorizationPolicy, IPolicyFactory
from tunnelgw.registry import adapter as adapter_factory
from tunnelgw.security import Subject
from tunnelgw.security.policy import RulesPolicyFactory
from tunnelgw.testing import public_realm
from tunnelgw.tunnel.registry import TunnelRegistry
from tunnelgw.tunnel.relay import Tunnel

RULES = {
    "rules": [
        {"roles": ["traders"], "actions": ["subscribe", "send"], "resources": ["/topic/public.*"]},
        {"roles": ["ops"], "actions": ["*"], "resources": ["/queue/*"]},
        {"roles": ["*"], "actions": ["subscribe"], "resources": ["/topic/news"]},
    ]
}


def policy():  # type: ignore[no-untyped-def]
    return RulesPolicyFactory().parse_config(RULES, "policies.p")


@pytest.mark.parametrize(
    ("roles", "action", "resource", "allowed"),
    [
        (["traders"], "subscribe", "/topic/public.prices", True),
        (["traders"], "send", "/topic/public.prices", True),
        (["traders"], "subscribe", "/queue/secret", False),
        (["traders"], "ack", "/topic/public.prices", False),
        (["traders"], "subscribe", "/topic/PUBLIC.prices", False),
        (["ops"], "ack", "/queue/secret", True),
        ([], "subscribe", "/topic/news", True),
        ([], "send", "/topic/news", False),
        ([], "subscribe", "/topic/public.prices", False),
    ],
)
def test_rules(roles: list[str], action: str, resource: str, allowed: bool) -> None:
    assert policy().permits(Subject.of("u", roles), "svc", action, resource) is allowed


def test_decisions_are_remembered_by_roles_action_resource_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tunnelgw.security.policy as module

    p = policy()
    trader, ops = Subject.of("a", roles=["traders"]), Subject.of("b", roles=["ops"])
    for _ in range(2):  # the second time, from memory: the same answers
        assert p.permits(trader, "s", "send", "/topic/public.x")
        assert not p.permits(ops, "s", "send", "/topic/public.x")
        assert p.permits(ops, "s", "send", "/queue/a")
        assert not p.permits(trader, "s", "send", "/queue/a")
    monkeypatch.setattr(module, "DECISIONS_KEPT", 3)
    for i in range(10):
        assert p.permits(ops, "s", "ack", f"/queue/{i}")
        assert len(p._decided) <= 3


def test_interfaces() -> None:
    assert verifyObject(IPolicyFactory, RulesPolicyFactory())
    assert verifyObject(IAuthorizationPolicy, policy())


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"policies.p.rules: at least one \[\[policies.p.rules\]\] entry"):
        RulesPolicyFactory().parse_config({}, "policies.p")
    with pytest.raises(ConfigError, match=r"policies.p.rules\[0\].resources: required"):
        RulesPolicyFactory().parse_config({"rules": [{"roles": ["a"], "actions": ["b"]}]}, "policies.p")
    with pytest.raises(ConfigError, match=r"policies.p.rules\[0\].colour: unknown key"):
        RulesPolicyFactory().parse_config(
            {"rules": [{"roles": ["a"], "actions": ["b"], "resources": ["c"], "colour": 1}]}, "policies.p"
        )
    base = (
        """
[gateway]
listen = ["tcp:1"]
"""
        + public_realm("r")
        + """[services.s]
path = "/s"
adapter = "echo"
realm = "r"
allow_no_subprotocol = true
"""
    )
    with pytest.raises(ConfigError, match="services.s.policy: no policy 'nope'"):
        loads(base + 'policy = "nope"\n')
    with pytest.raises(ConfigError, match="policies.p.policy: unknown policy 'magic'"):
        loads(base + '[policies.p]\npolicy = "magic"\n')


def test_tunnel_asks_the_policy_and_denies_without_one() -> None:
    def tunnel(p: object) -> Tunnel:
        return Tunnel(
            reactor=Clock(),
            service=ServiceConfig(name="s", path="/s", adapter="echo", allow_no_subprotocol=True),
            subprotocol=None,
            conn_id="c",
            peer="p",
            subject=Subject.of("alice", ["traders"]),
            adapter_factory=adapter_factory("echo"),
            backend=None,
            registry=TunnelRegistry(),
            policy=p,  # type: ignore[arg-type]
        )

    assert tunnel(policy()).permits("subscribe", "/topic/public.x")
    assert not tunnel(policy()).permits("subscribe", "/queue/secret")
    assert not tunnel(None).permits("subscribe", "/topic/public.x")
