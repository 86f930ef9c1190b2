"""
The metrics: counted from the gateway's log events, read from its state
at each scrape, served on a listener of their own.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tunnelgw.config.loader import loads
from tunnelgw.errors import ConfigError
from tunnelgw.metrics import MetricsPage
from tunnelgw.registry import adapter
from tunnelgw.security import Subject
from tunnelgw.service import GatewayService
from tunnelgw.testing import AdapterHarness, public_realm

CONFIG = f"""
[gateway]
listen = ["tcp:8080:interface=127.0.0.1"]
{public_realm()}
[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true
[metrics]
listen = "tcp:9464:interface=127.0.0.1"
"""


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class MetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.service = GatewayService(loads(CONFIG), self.reactor)
        assert self.service.metrics is not None
        self.metrics = self.service.metrics
        self.log = Logger(namespace="tunnelgw.test", observer=self.metrics)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        request = DummyRequest([b"metrics"])
        request.path = b"/metrics"
        body = MetricsPage(self.metrics).render(request)
        self.assertEqual(request.responseHeaders.getRawHeaders("Cache-Control"), ["no-store"])
        return samples(body)

    def test_its_own_listener(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual([port for port, *_ in self.reactor.tcpServers], [8080, 9464])

    def test_never_a_gateway_listener(self) -> None:
        with self.assertRaises(ConfigError) as e:
            loads(CONFIG.replace('"tcp:9464:interface=127.0.0.1"', '"tcp:8080:interface=127.0.0.1"'))
        self.assertIn("metrics.listen", str(e.exception))

    def test_handshakes_and_latency(self) -> None:
        self.log.info("a", event="admission", decision="accept", status=101, service="echo", elapsed=0.004)
        self.log.info("r", event="admission", decision="refuse", status=403, service="echo", elapsed=None)
        self.log.info("n", event="admission", decision="refuse", status=404, service=None, elapsed=None)
        got = self.scrape()
        self.assertEqual(
            got[
                (
                    "tunnelgw_handshakes_total",
                    (("decision", "accept"), ("service", "echo"), ("status", "101")),
                )
            ],
            1,
        )
        self.assertEqual(
            got[("tunnelgw_handshakes_total", (("decision", "refuse"), ("service", ""), ("status", "404")))],
            1,
        )
        self.assertEqual(got[("tunnelgw_handshake_seconds_count", ())], 1)
        self.assertEqual(got[("tunnelgw_handshake_seconds_bucket", (("le", "0.005"),))], 1)
        self.assertEqual(got[("tunnelgw_handshake_seconds_bucket", (("le", "0.0025"),))], 0)

    def test_refusals_logins_reloads_closes(self) -> None:
        self.log.info("c", event="tunnel_cap")
        self.log.info("d", event="authorization", decision="deny")
        self.log.info("m", event="login_module", realm="staff", module="jwt", outcome="failure")
        self.log.info("l", event="reload", outcome="invalid")
        self.log.info(
            "t",
            event="tunnel_close",
            service="echo",
            code=1000,
            bytes_up=10,
            bytes_down=20,
            peak_up=5,
            peak_down=5000,
        )
        self.log.info("v", event="tunnel_revoked")
        got = self.scrape()
        self.assertEqual(got[("tunnelgw_refusals_total", (("reason", "tunnel_cap"),))], 1)
        self.assertEqual(got[("tunnelgw_refusals_total", (("reason", "authorization"),))], 1)
        self.assertEqual(
            got[
                (
                    "tunnelgw_login_modules_total",
                    (("module", "jwt"), ("outcome", "failure"), ("realm", "staff")),
                )
            ],
            1,
        )
        self.assertEqual(got[("tunnelgw_reloads_total", (("outcome", "invalid"),))], 1)
        self.assertEqual(got[("tunnelgw_tunnel_closes_total", (("code", "1000"), ("service", "echo")))], 1)
        self.assertEqual(
            got[("tunnelgw_tunnel_bytes_total", (("direction", "down"), ("service", "echo")))], 20
        )
        self.assertEqual(got[("tunnelgw_tunnels_revoked_total", (("by", "revalidation"),))], 1)
        self.assertEqual(
            got[("tunnelgw_tunnel_buffer_peak_bytes_bucket", (("direction", "down"), ("le", "16384.0")))], 1
        )

    def open_tunnel(self, user: str) -> Any:
        config = self.service.config
        harness = AdapterHarness(adapter("echo"), config.services[0], Subject.of(user, []))
        self.service.site.registry.add(harness.tunnel)
        return harness

    def test_open_tunnels_and_their_bytes_are_read_at_the_scrape(self) -> None:
        harness = self.open_tunnel("alice")
        harness.tunnel.client_message(b"hello", True)
        got = self.scrape()
        self.assertEqual(got[("tunnelgw_tunnels_open", (("service", "echo"),))], 1)
        self.assertEqual(got[("tunnelgw_tunnel_bytes_total", (("direction", "up"), ("service", "echo")))], 5)
        self.assertEqual(got[("tunnelgw_connections_open", ())], 0)
        self.assertEqual(got[("tunnelgw_fallback_sessions_open", ())], 0)
        self.assertFalse([name for name, _ in got if name.startswith("tunnelgw_user")])

    def test_user_labels_are_opt_in_and_capped(self) -> None:
        self.service = GatewayService(loads(CONFIG + "user_labels = true\nmax_users = 2\n"), self.reactor)
        assert self.service.metrics is not None
        self.metrics = self.service.metrics
        for user in ("alice", "alice", "bob", "carol", "dave"):
            self.open_tunnel(user)
        got = {
            labels: v for (name, labels), v in self.scrape().items() if name == "tunnelgw_user_tunnels_open"
        }
        self.assertEqual(got[(("user", "alice"),)], 2)
        self.assertEqual(sum(got.values()), 5)
        self.assertEqual(len(got), 3)
        self.assertEqual(got[(("user", "other"),)], 2)

    def test_anything_but_get_metrics(self) -> None:
        request = DummyRequest([b"other"])
        request.path = b"/other"
        MetricsPage(self.metrics).render(request)
        self.assertEqual(request.responseCode, 404)
        request = DummyRequest([b"metrics"])
        request.path = b"/metrics"
        request.method = b"POST"
        MetricsPage(self.metrics).render(request)
        self.assertEqual(request.responseCode, 405)
