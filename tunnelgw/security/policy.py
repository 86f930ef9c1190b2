"""
Fine-grained authorization: the C{rules} policy.

A policy answers "may this subject perform this action on this resource in
this service?" for adapters that inspect a protocol (STOMP SEND/SUBSCRIBE
destinations, XMPP addresses, RFB input).  Deny by default: an operation is
allowed only if a rule allows it.

    [policies.brokers]
    policy = "rules"
    [[policies.brokers.rules]]
    roles = ["traders"]          # any of these roles; "*" matches every subject
    actions = ["subscribe", "send"]   # "*" matches every action
    resources = ["/topic/public.*"]   # shell-style patterns, case-sensitive
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from zope.interface import implementer

from tunnelgw.config.values import Table, strings_value
from tunnelgw.interfaces import IAuthorizationPolicy, IPolicyFactory
from tunnelgw.security import Subject

__all__ = ["Rule", "RulesPolicy", "RulesPolicyFactory", "POLICIES"]


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    actions: frozenset[str]
    resources: tuple[str, ...]

    def allows(self, subject: Subject, action: str, resource: str) -> bool:
        return self.allows_roles(subject.roles, action, resource)

    def allows_roles(self, roles: frozenset[str], action: str, resource: str) -> bool:
        if "*" not in self.roles and not (self.roles & roles):
            return False
        if "*" not in self.actions and action not in self.actions:
            return False
        return any(fnmatchcase(resource, pattern) for pattern in self.resources)


DECISIONS_KEPT = 4096
"""The decisions a rules policy remembers (roles, action, resource); then it starts over."""


@implementer(IAuthorizationPolicy)
class RulesPolicy:
    """
    The rules, and the decisions they made: a STOMP tunnel asks once a
    message, mostly about the same few destinations, and the answer
    depends on the roles, the action and the resource only (the rules
    never change: a reload makes a new policy).
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._decided: dict[tuple[frozenset[str], str, str], bool] = {}

    def permits(self, subject: Subject, service: str, action: str, resource: str) -> bool:
        key = (subject.roles, action, resource)
        decided = self._decided.get(key)
        if decided is None:
            decided = any(rule.allows_roles(key[0], action, resource) for rule in self.rules)
            if len(self._decided) >= DECISIONS_KEPT:
                self._decided.clear()
            self._decided[key] = decided
        return decided


@implementer(IPolicyFactory)
class RulesPolicyFactory:
    name = "rules"

    def parse_config(self, options: dict[str, Any], key: str) -> RulesPolicy:
        table = Table(options, key)
        entries = table.tables("rules", required=True)
        table.done()
        rules = []
        for rule in entries:
            rules.append(
                Rule(
                    roles=frozenset(rule.require("roles", strings_value)),
                    actions=frozenset(rule.require("actions", strings_value)),
                    resources=rule.require("resources", strings_value),
                )
            )
            rule.done()
        return RulesPolicy(tuple(rules))


POLICIES: dict[str, IPolicyFactory] = {"rules": RulesPolicyFactory()}
