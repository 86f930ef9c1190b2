"""
Open tunnels judged again when a reload changes the configuration: each
is held to what would admit it now, in the admission pipeline's order.

  service   gone                                     1001 "service removed"
            adapter, upstream or subprotocols changed 1001 "service changed"
            path changed, or the fallback no longer
            allowed, for a fallback session          1001 "service changed"
  origin    no longer on the allow-list              1008
  realm     another realm, or its modules changed
            and they no longer admit the subject     1008
  roles     the service's C{require_roles} unmet      1008
  policy    changed: per operation, the new one from
            the next operation; one that decides per
            session (L{ISessionPolicy}) decides again 1008 on a refusal

A tunnel that stays keeps its limits and adapter options (those it was
opened with) and its bytes; its subject's roles are those its realm gives
now, and its policy the service's new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from tunnelgw.config.model import GatewayConfig, ServiceConfig
from tunnelgw.errors import CloseCode, Refusal
from tunnelgw.interfaces import ISessionPolicy
from tunnelgw.logs import Logger

__all__ = ["Verdict", "judge_all", "rejudge"]


@dataclass(frozen=True)
class Verdict:
    """Why a tunnel ends after a reload."""

    code: int
    reason: str
    """What the client is told (its close frame, its protocol's error)."""
    change: str
    """Which change ended it, for the audit event."""


def _closed(code: int, reason: str, change: str) -> Verdict:
    return Verdict(code, f"configuration changed: {reason}", change)


def rejudge(
    tunnel: Any,
    old: GatewayConfig | None,
    new: GatewayConfig,
    realms: Mapping[str, Any],
    reactor: Any,
) -> Verdict | None | defer.Deferred[Verdict | None]:
    """
    Judge C{tunnel} (a L{tunnelgw.tunnel.relay.Tunnel}) under C{new}, the
    configuration that replaces C{old} (C{None}: unknown, every realm and
    policy counts as changed).  A tunnel that stays gets its new roles and
    policy here.

    @param realms: the new configuration's login contexts, by realm.
    @return: C{None} (it stays) or the L{Verdict} that ends it; a Deferred
        of either when the service's policy decides per session.
    """
    before: ServiceConfig = tunnel.service
    name = before.name
    service = new.service_named(name)
    if service is None:
        return _closed(CloseCode.GOING_AWAY, "service removed", f"service {name} removed")
    if (service.adapter, service.upstream) != (before.adapter, before.upstream):
        return _closed(
            CloseCode.GOING_AWAY, "service changed", f"service {name}: adapter or upstream changed"
        )
    if getattr(tunnel, "via", "websocket") == "fallback" and (
        not service.fallback or service.path != before.path
    ):
        # its requests would no longer reach it
        return _closed(
            CloseCode.GOING_AWAY, "service changed", f"service {name}: fallback withdrawn or path moved"
        )
    if service.subprotocols != before.subprotocols and tunnel.subprotocol not in service.subprotocols:
        if tunnel.subprotocol is not None or not service.allow_no_subprotocol:
            return _closed(CloseCode.GOING_AWAY, "service changed", f"service {name}: subprotocol withdrawn")
    origin = tunnel.origin
    if origin is None and not service.allow_missing_origin:
        return _closed(
            CloseCode.POLICY_VIOLATION, "origin not allowed", f"service {name}: Origin now required"
        )
    if origin is not None and origin not in service.origins:
        return _closed(
            CloseCode.POLICY_VIOLATION, "origin not allowed", f"service {name}: origin {origin} removed"
        )
    realm = service.realm
    if realm != before.realm:
        return _closed(
            CloseCode.POLICY_VIOLATION, "realm changed", f"service {name}: realm {before.realm} → {realm}"
        )
    subject = tunnel.subject
    if old is None or _source(old, realm) != _source(new, realm):
        now = realms[realm].reconfirm(subject, reactor)
        if now is None:
            return _closed(
                CloseCode.POLICY_VIOLATION,
                "credentials no longer accepted",
                f"realm {realm}: modules changed",
            )
        subject.principals = now.principals
    if service.require_roles and not (service.require_roles & subject.roles):
        return _closed(
            CloseCode.POLICY_VIOLATION, "not allowed to use this service", f"service {name}: roles"
        )
    if old is not None and service.policy == before.policy:
        if old.policy_source(service.policy) == new.policy_source(service.policy):
            return None
    return _repolicy(tunnel, service, new, reactor)


_log = Logger()


def judge_all(
    tunnels: list[Any],
    old: GatewayConfig | None,
    new: GatewayConfig,
    realms: Mapping[str, Any],
    reactor: Any,
    closing: Callable[[Any, Verdict], None] = lambda tunnel, verdict: None,
) -> defer.Deferred[int]:
    """
    L{rejudge} each of C{tunnels}; end each that may not stay (its
    adapter's goodbye, its close code) with an audit event
    (C{event=tunnel_rejudged}) naming the change, after C{closing(tunnel,
    verdict)}.

    @return: a Deferred firing, once every tunnel is judged, with how many
        were closed.
    """
    closed = 0
    pending = []

    def judged(verdict: Verdict | None, tunnel: Any) -> None:
        nonlocal closed
        if verdict is None:
            return
        closed += 1
        closing(tunnel, verdict)
        _log.info(
            "tunnel {conn_id} of {principal} closed by the reload: {change}",
            event="tunnel_rejudged",
            decision="close",
            conn_id=tunnel.conn_id,
            transport=tunnel.via,
            principal=tunnel.subject.principal,
            service=tunnel.service.name,
            change=verdict.change,
            code=verdict.code,
            reason=verdict.reason,
        )
        tunnel.end(verdict.code, verdict.reason)

    for tunnel in tunnels:
        verdict = rejudge(tunnel, old, new, realms, reactor)
        if isinstance(verdict, defer.Deferred):
            pending.append(verdict.addCallback(judged, tunnel))
        else:
            judged(verdict, tunnel)
    return defer.gatherResults(pending).addCallback(lambda _: closed)


def _source(config: GatewayConfig, realm: str) -> object:
    try:
        return config.realm(realm).source
    except KeyError:
        return None


def _repolicy(
    tunnel: Any, service: ServiceConfig, new: GatewayConfig, reactor: Any
) -> Verdict | None | defer.Deferred[Verdict | None]:
    """
    The service's policy changed: a per-operation one is the tunnel's from
    its next operation; one that decides per session decides again.
    """
    policy = new.policy(service.policy)
    if not ISessionPolicy.providedBy(policy):
        tunnel.policy = policy
        return None
    d = defer.maybeDeferred(policy.start_session, tunnel.subject, service, tunnel.subprotocol, reactor)
    d.addTimeout(service.limits.connect_timeout, reactor)

    def decided(chosen: Any) -> None:
        tunnel.policy = chosen
        return None

    def refused(f: Failure) -> Verdict:
        why = "refused" if f.check(Refusal) and getattr(f.value, "status", None) == 403 else "did not decide"
        return _closed(
            CloseCode.POLICY_VIOLATION, "not allowed by the policy", f"policy {service.policy} {why}"
        )

    return d.addCallbacks(decided, refused)
