"""
Reload in memory: what a new configuration does to listeners, to new
requests and to each open tunnel (L{tunnelgw.rejudge}).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.config.loader import loads
from tunnelgw.config.model import GatewayConfig
from tunnelgw.errors import CloseCode, ConfigError, Refusal
from tunnelgw.registry import adapter
from tunnelgw.rejudge import rejudge
from tunnelgw.security import Subject
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.service import GatewayService
from tunnelgw.testing import AdapterHarness, public_realm

ORIGIN = "https://app.example"


def config(
    *,
    listen: str = '"tcp:8080:interface=127.0.0.1"',
    roles: tuple[str, ...] = ("ops",),
    require: str = '["ops"]',
    origins: str = f'["{ORIGIN}"]',
    services: str = "",
    policy_resources: str = '["/queue/a"]',
    adapter_name: str = "raw",
) -> GatewayConfig:
    return loads(
        f"""
[gateway]
listen = [{listen}]
{public_realm("staff", roles)}
[policies.p]
[[policies.p.rules]]
roles = ["*"]
actions = ["send"]
resources = {policy_resources}
[services.ssh]
path = "/ssh"
adapter = "{adapter_name}"
upstream = "tcp:127.0.0.1:22"
realm = "staff"
require_roles = {require}
policy = "p"
origins = {origins}
allow_no_subprotocol = true
{services}
"""
    )


def tunnel(cfg: GatewayConfig, origin: str | None = ORIGIN, roles: tuple[str, ...] = ("ops",)) -> Any:
    service = cfg.services[0]
    subject = Subject.of(None, roles, method="anonymous", address="192.0.2.1", realm="staff")
    return SimpleNamespace(
        service=service, subprotocol=None, origin=origin, subject=subject, policy=cfg.policy("p")
    )


def judge(tunnel: Any, old: GatewayConfig | None, new: GatewayConfig) -> Any:
    contexts = RealmAuthenticator(new).contexts
    return rejudge(tunnel, old, new, contexts, MemoryReactorClock())


class RejudgeTests(SynchronousTestCase):
    def test_unchanged_stays(self) -> None:
        old = config()
        t = tunnel(old)
        policy = t.policy
        self.assertIsNone(judge(t, old, config()))
        self.assertIs(t.policy, policy)  # the same policy table: the same object

    def test_service_removed_is_1001(self) -> None:
        old = config()
        new = loads('[gateway]\nlisten = ["tcp:8080"]\n' + public_realm())
        verdict = judge(tunnel(old), old, new)
        self.assertEqual(verdict.code, CloseCode.GOING_AWAY)
        self.assertEqual(verdict.change, "service ssh removed")

    def test_adapter_changed_is_1001(self) -> None:
        old = config()
        verdict = judge(tunnel(old), old, GatewayConfig(**_without_upstream(old)))
        self.assertEqual(verdict.code, CloseCode.GOING_AWAY)

    def test_a_fallback_session_whose_service_no_longer_allows_it_is_1001(self) -> None:
        old = config(services="fallback = true")
        t = tunnel(old)
        t.via = "fallback"
        self.assertIsNone(judge(t, old, config(services="fallback = true")))
        verdict = judge(t, old, config())
        self.assertEqual(verdict.code, CloseCode.GOING_AWAY)
        self.assertEqual(verdict.change, "service ssh: fallback withdrawn or path moved")
        t.via = "websocket"
        self.assertIsNone(judge(t, old, config()))

    def test_origin_withdrawn_is_1008(self) -> None:
        old = config()
        verdict = judge(tunnel(old), old, config(origins='["https://other.example"]'))
        self.assertEqual((verdict.code, verdict.change), (1008, f"service ssh: origin {ORIGIN} removed"))

    def test_missing_origin_no_longer_allowed(self) -> None:
        old = config(services="allow_missing_origin = true")
        verdict = judge(tunnel(old, origin=None), old, config())
        self.assertEqual(verdict.code, 1008)
        self.assertIsNone(judge(tunnel(old, origin=None), old, old))

    def test_required_roles_changed(self) -> None:
        old = config()
        verdict = judge(tunnel(old), old, config(require='["admin"]'))
        self.assertEqual((verdict.code, verdict.change), (1008, "service ssh: roles"))

    def test_realm_roles_changed(self) -> None:
        """The realm no longer gives the role the service requires."""
        old = config()
        t = tunnel(old)
        verdict = judge(t, old, config(roles=("viewer",)))
        self.assertEqual(verdict.code, 1008)
        self.assertEqual(t.subject.roles, {"viewer"})

    def test_realm_roles_changed_but_still_allowed(self) -> None:
        old = config()
        t = tunnel(old)
        self.assertIsNone(judge(t, old, config(roles=("ops", "viewer"))))
        self.assertEqual(t.subject.roles, {"ops", "viewer"})

    def test_realm_whose_modules_cannot_reconfirm_closes(self) -> None:
        from dataclasses import replace

        from tunnelgw.config.model import Flag, ModuleEntry

        old = config()
        blind = SimpleNamespace(create=object)  # a module without reconfirm
        realm = replace(old.realms[0], modules=(ModuleEntry("blind", blind, Flag.REQUIRED, None),), source={})
        new = replace(old, realms=(realm,))
        verdict = judge(tunnel(old), old, new)
        self.assertEqual((verdict.code, verdict.change), (1008, "realm staff: modules changed"))

    def test_policy_changed_is_the_tunnels_from_its_next_operation(self) -> None:
        old = config()
        t = tunnel(old)
        new = config(policy_resources='["/queue/b"]')
        self.assertIsNone(judge(t, old, new))
        self.assertIs(t.policy, new.policy("p"))
        self.assertFalse(t.policy.permits(t.subject, "ssh", "send", "/queue/a"))
        self.assertTrue(t.policy.permits(t.subject, "ssh", "send", "/queue/b"))

    def test_unknown_old_configuration_judges_everything(self) -> None:
        new = config()
        t = tunnel(new)
        self.assertIsNone(judge(t, None, new))
        self.assertIs(t.policy, new.policy("p"))


class SessionPolicyTests(SynchronousTestCase):
    def test_a_session_policy_decides_again(self) -> None:
        from zope.interface import directlyProvides

        from tunnelgw.interfaces import ISessionPolicy

        old = config()
        new = config(policy_resources='["/queue/b"]')
        answers: list[defer.Deferred[Any]] = []
        policy = new.policy("p")
        assert policy is not None
        directlyProvides(policy, ISessionPolicy)

        def start_session(*args: Any) -> defer.Deferred[Any]:
            answers.append(defer.Deferred())
            return answers[-1]

        policy.start_session = start_session  # type: ignore[attr-defined]
        t = tunnel(old)
        d = judge(t, old, new)
        self.assertIsInstance(d, defer.Deferred)
        answers[0].errback(Refusal(403, "no"))
        verdict = self.successResultOf(d)
        self.assertEqual((verdict.code, verdict.change), (1008, "policy p refused"))


def _without_upstream(cfg: GatewayConfig) -> dict[str, Any]:
    from dataclasses import fields, replace

    service = replace(cfg.services[0], adapter="echo", upstream=None)
    values = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    values["services"] = (service,)
    return values


STOMP = f"""
[gateway]
listen = ["tcp:8080:interface=127.0.0.1"]
{public_realm("staff", ("ops",))}
[policies.p]
[[policies.p.rules]]
roles = ["*"]
actions = ["connect", "send"]
resources = ["/", "/queue/a"]
[services.broker]
path = "/stomp"
adapter = "stomp"
upstream = "tcp:127.0.0.1:61613"
realm = "staff"
policy = "p"
subprotocols = ["v12.stomp"]
allow_missing_origin = true
"""


def open_stomp_tunnel(
    service: GatewayService, cfg: GatewayConfig | None = None, user: str = "alice"
) -> AdapterHarness:
    """
    A STOMP tunnel of C{user} (role ops, realm staff) on the first service
    of C{cfg} (the service's configuration by default), in memory, in the
    service's registry.
    """
    cfg = cfg or service.config
    subject = Subject.of(user, ["ops"], method="anonymous", address="192.0.2.1", realm="staff")
    harness = AdapterHarness(adapter("stomp"), cfg.services[0], subject, "v12.stomp", cfg.policy("p"))
    service.site.registry.add(harness.tunnel)
    return harness


class ServiceReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.reactor = MemoryReactorClock()
        self.config = loads(STOMP)
        self.service = GatewayService(self.config, self.reactor)
        self.service.startService()

    def open_tunnel(self, cfg: GatewayConfig, user: str = "alice") -> AdapterHarness:
        return open_stomp_tunnel(self.service, cfg, user)

    def events_of(self, event: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == event]

    def test_listeners_opened_and_stopped(self) -> None:
        new = loads(STOMP.replace('"tcp:8080:interface=127.0.0.1"', '"tcp:8081:interface=127.0.0.1"'))
        d = self.service.reload(new)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual([port for port, *_ in self.reactor.tcpServers], [8080, 8081])
        self.assertEqual(list(self.service.listeners.open), [(False, False, "tcp:8081:interface=127.0.0.1")])
        self.assertEqual(self.service.reloads["applied"], 1)
        [event] = self.events_of("reload")
        self.assertEqual(
            (event["opened"], event["stopped"]),
            (["tcp:8081:interface=127.0.0.1"], ["tcp:8080:interface=127.0.0.1"]),
        )

    def test_the_count_of_waiting_logins_outlives_the_configuration(self) -> None:
        guard = self.service.site.authenticator._guard
        self.assertIs(guard.waiting, self.service.waiting)
        self.service.reload(loads(STOMP.replace('path = "/stomp"', 'path = "/queue"')))
        renewed = self.service.site.authenticator._guard
        self.assertIsNot(renewed, guard)
        self.assertIs(renewed.waiting, self.service.waiting)

    def test_new_requests_see_the_new_services(self) -> None:
        new = loads(STOMP.replace('path = "/stomp"', 'path = "/queue"'))
        self.service.reload(new)
        self.assertEqual(list(self.service.site.upgrades), [b"/queue"])
        self.assertIs(self.service.site.config, new)

    def test_removed_service_closes_its_tunnels_in_stomp_words(self) -> None:
        harness = self.open_tunnel(self.config)
        new = loads(STOMP.replace("[services.broker]", "[services.other]"))
        d = self.service.reload(new)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(harness.client.closed, (1001, "configuration changed: service removed"))
        [(frame, _)] = harness.client.messages
        self.assertEqual(
            frame.split(b"\n")[:2], [b"ERROR", b"message:configuration changed\\c service removed"]
        )
        [audit] = self.events_of("tunnel_rejudged")
        self.assertEqual(
            (audit["principal"], audit["change"], audit["transport"]),
            ("alice", "service broker removed", "websocket"),
        )
        self.assertEqual(self.service.reloads["closed"], 1)

    def test_a_tunnel_still_allowed_goes_on_with_the_new_policy(self) -> None:
        harness = self.open_tunnel(self.config)
        new = loads(STOMP.replace('"/queue/a"]', '"/queue/b"]'))
        self.assertEqual(self.successResultOf(self.service.reload(new)), 0)
        self.assertIsNone(harness.client.closed)
        self.assertIs(harness.tunnel.policy, new.policy("p"))

    def test_a_configuration_that_does_not_load_changes_nothing(self) -> None:
        def broken() -> GatewayConfig:
            raise ConfigError("services.x.path: required key is missing")

        self.service.source = broken
        self.assertIsNone(self.service.reread())
        self.assertIs(self.service.site.config, self.config)
        self.assertEqual(self.service.reloads["invalid"], 1)
        [event] = self.events_of("reload")
        self.assertEqual(
            (event["outcome"], event["reason"]), ("invalid", "services.x.path: required key is missing")
        )

    def test_the_embedded_default_has_nothing_to_reload(self) -> None:
        self.assertIsNone(self.service.reread())
        self.assertEqual(self.service.reloads["invalid"], 1)

    def test_a_tls_file_that_cannot_be_read_changes_nothing(self) -> None:
        new = loads(STOMP)
        from dataclasses import replace

        from tunnelgw.config.model import TLSListener

        new = replace(new, tls_listeners=(TLSListener("tcp:8443", "/nonexistent.pem", "/nonexistent.key"),))
        self.assertIsNone(self.service.reload(new))
        self.assertEqual(self.service.reloads["failed"], 1)
        self.assertIs(self.service.site.config, self.config)

    def test_a_tunnel_admitted_under_the_old_configuration_is_judged_when_it_starts(self) -> None:
        new = loads(STOMP.replace("[services.broker]", "[services.other]"))
        self.service.reload(new)
        harness = self.open_tunnel(self.config)
        self.service.site.registry.started(harness.tunnel)
        self.assertEqual(harness.client.closed, (1001, "configuration changed: service removed"))


class AuditTests(SynchronousTestCase):
    def setUp(self) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "audit.jsonl"
        self.reactor = MemoryReactorClock()
        self.config = loads(STOMP + f'\n[audit]\npath = "{self.path}"\n')
        self.service = GatewayService(self.config, self.reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service._follow, None)

    def lines(self, path: Path | None = None) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (path or self.path).read_text().splitlines()]

    def test_only_security_events_with_the_schema(self) -> None:
        log = Logger(namespace="tunnelgw.test")
        log.info(
            "x {conn_id}", event="admission", decision="refuse", status=403, conn_id="c1", peer="192.0.2.1"
        )
        log.info("y", event="link_open", outer="wss://o")
        log.info("z")
        [record] = self.lines()
        self.assertEqual(record["schema"], "tunnelgw.audit/1")
        self.assertEqual(
            {k: record[k] for k in ("event", "decision", "status", "conn_id", "peer", "level")},
            {
                "event": "admission",
                "decision": "refuse",
                "status": 403,
                "conn_id": "c1",
                "peer": "192.0.2.1",
                "level": "info",
            },
        )
        self.assertNotIn("msg", record)

    def test_a_reload_opens_the_file_again_and_is_audited(self) -> None:
        rotated = self.dir / "audit.jsonl.1"
        self.path.rename(rotated)
        self.service.reload(loads(STOMP + f'\n[audit]\npath = "{self.path}"\n'))
        [reload] = self.lines()
        self.assertEqual((reload["event"], reload["outcome"]), ("reload", "applied"))
        self.assertEqual(self.lines(rotated), [])

    def test_an_audit_file_that_cannot_be_opened_refuses_the_reload(self) -> None:
        new = loads(STOMP + '\n[audit]\npath = "/nonexistent/audit.jsonl"\n')
        self.assertIsNone(self.service.reload(new))
        self.assertIs(self.service.site.config, self.config)
        [record] = self.lines()
        self.assertEqual(
            (record["outcome"], record["reason"]),
            ("failed", "audit.path: cannot open /nonexistent/audit.jsonl: No such file or directory"),
        )

    def test_stopping_closes_the_trail_after_the_drain(self) -> None:
        self.successResultOf(self.service.stopService())
        self.assertIsNone(self.service.audit)


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.config = loads(STOMP.replace("[gateway]\n", "[gateway]\ndrain_timeout = 30\n"))
        self.service = GatewayService(self.config, self.reactor)

    def test_health_and_admission_answer_503_tunnels_close_after_the_timeout(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        from tunnelgw.front.site import HealthResource

        harness = open_stomp_tunnel(self.service, self.config)
        drained = self.service.drain()
        request = DummyRequest([b""])
        body = HealthResource(self.service.site).render_GET(request)
        self.assertEqual((request.responseCode, json.loads(body)["status"]), (503, "draining"))
        self.assertTrue(self.service.site.pipeline.draining)
        self.reactor.advance(29)
        self.assertIsNone(harness.client.closed)
        self.reactor.advance(1)
        self.assertEqual(harness.client.closed, (1001, "gateway draining"))
        [(frame, _)] = harness.client.messages  # STOMP's words first
        self.assertTrue(frame.startswith(b"ERROR\n"))
        self.assertNoResult(drained)  # until the tunnel is gone

    def test_a_reload_while_draining_keeps_draining(self) -> None:
        self.service.drain()
        self.service.reload(loads(STOMP))
        self.assertTrue(self.service.site.pipeline.draining)
        self.assertEqual(self.service.dialers, [])

    def test_nothing_open_is_drained_at_once(self) -> None:
        self.successResultOf(self.service.drain())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
