"""
Prometheus metrics, on a listener of their own (C{[metrics] listen}),
C{GET /metrics}.

Counters come from the gateway's log events (L{GatewayMetrics} is a log
observer: the relay path does no work for them); what is open now (tunnels,
bytes of open tunnels, connections, reverse links) is read from the
gateway's state at each scrape.  Every label is bounded: services come
from the configuration, statuses and close codes are numbers, outcomes
and reasons are the gateway's own words; user names appear only with
C{user_labels}, at most C{max_users} of them.  docs/operations.md,
"Metrics", lists every series.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from twisted.logger import ILogObserver, LogEvent
from twisted.web import resource, server
from zope.interface import implementer

from tunnelgw.config.model import MetricsConfig

__all__ = ["GatewayMetrics", "MetricsPage", "QuietSite"]

REFUSALS = frozenset(
    {
        "handshake_timeout",
        "login_throttled",
        "login_busy",
        "tunnel_cap",
        "policy_error",
        "authorization",
        "stomp_refused",
        "xmpp_refused",
        "rfb_refused",
    }
)
"""The events counted as C{tunnelgw_refusals_total{reason=EVENT}}."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUFFER_BUCKETS = tuple(float(1 << n) for n in range(10, 25, 2))  # 1 KiB .. 16 MiB


@implementer(ILogObserver)
class GatewayMetrics:
    """
    The gateway's metrics: a log observer that counts, and a collector
    that reads C{state} at each scrape (the L{tunnelgw.service.GatewayService}:
    its site, its links).
    """

    def __init__(self, state: Any, config: MetricsConfig) -> None:
        self.state = state
        self.config = config
        self.registry = registry = CollectorRegistry()
        self.handshakes = Counter(
            "tunnelgw_handshakes",
            "Admission decisions: accept (101), refuse (its status), abandon (499).",
            ["service", "decision", "status"],
            registry=registry,
        )
        self.handshake_seconds = Histogram(
            "tunnelgw_handshake_seconds",
            "From the request head to the 101 of an admitted upgrade.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "tunnelgw_refusals",
            "Refusals and denials by reason (the event that logged them).",
            ["reason"],
            registry=registry,
        )
        self.closes = Counter(
            "tunnelgw_tunnel_closes",
            "Tunnels ended, by service and close code.",
            ["service", "code"],
            registry=registry,
        )
        self.logins = Counter(
            "tunnelgw_login_modules",
            "Login module decisions: success, failure, ignored.",
            ["realm", "module", "outcome"],
            registry=registry,
        )
        self.reloads = Counter(
            "tunnelgw_reloads", "Reloads: applied, invalid, failed.", ["outcome"], registry=registry
        )
        self.revocations = Counter(
            "tunnelgw_tunnels_revoked",
            "Open tunnels ended by a revalidation, a revocation or a reload.",
            ["by"],
            registry=registry,
        )
        self.peaks = Histogram(
            "tunnelgw_tunnel_buffer_peak_bytes",
            "The most a tunnel held in memory, per direction, at its end.",
            ["direction"],
            buckets=BUFFER_BUCKETS,
            registry=registry,
        )
        self._closed_bytes: Tally[tuple[str, str]] = Tally()
        self._handlers: dict[str, Callable[[LogEvent], None]] = {
            "admission": self._admission,
            "tunnel_close": self._tunnel_close,
            "login_module": self._login_module,
            "reload": self._reload,
            "tunnel_revoked": lambda e: self.revocations.labels(str(e.get("by", "revalidation"))).inc(),
            "tunnel_rejudged": lambda e: self.revocations.labels("reload").inc(),
        }
        registry.register(_Live(self))

    # -- the log observer ---------------------------------------------------------

    def __call__(self, event: LogEvent) -> None:
        kind = event.get("event")
        if kind is None:
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(event)
        elif kind in REFUSALS and event.get("decision", "deny") == "deny":
            self.refusals.labels(kind).inc()

    def _admission(self, event: LogEvent) -> None:
        decision = str(event.get("decision"))
        self.handshakes.labels(str(event.get("service") or ""), decision, str(event.get("status"))).inc()
        elapsed = event.get("elapsed")
        if decision == "accept" and isinstance(elapsed, float):
            self.handshake_seconds.observe(elapsed)

    def _tunnel_close(self, event: LogEvent) -> None:
        service = str(event.get("service"))
        self.closes.labels(service, str(event.get("code"))).inc()
        self._closed_bytes[(service, "up")] += int(event.get("bytes_up") or 0)
        self._closed_bytes[(service, "down")] += int(event.get("bytes_down") or 0)
        self.peaks.labels("up").observe(float(event.get("peak_up") or 0))
        self.peaks.labels("down").observe(float(event.get("peak_down") or 0))

    def _login_module(self, event: LogEvent) -> None:
        self.logins.labels(str(event.get("realm")), str(event.get("module")), str(event.get("outcome"))).inc()

    def _reload(self, event: LogEvent) -> None:
        self.reloads.labels(str(event.get("outcome"))).inc()

    # -- the scrape ---------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live:
    """What is open now, read at each scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        site = metrics.state.site
        tunnels = GaugeMetricFamily("tunnelgw_tunnels_open", "Open tunnels by service.", labels=["service"])
        moved = CounterMetricFamily(
            "tunnelgw_tunnel_bytes",
            "Bytes relayed by tunnels, by service and direction (up: client to backend).",
            labels=["service", "direction"],
        )
        open_by_service: Tally[str] = Tally()
        by_user: Tally[str] = Tally()
        totals = Tally(metrics._closed_bytes)
        for tunnel in list(site.registry.tunnels):
            name = tunnel.service.name
            open_by_service[name] += 1
            totals[(name, "up")] += tunnel.bytes_up
            totals[(name, "down")] += tunnel.bytes_down
            if metrics.config.user_labels:
                by_user[tunnel.subject.principal] += 1
        for name in sorted({s.name for s in site.config.services} | set(open_by_service)):
            tunnels.add_metric([name], open_by_service[name])
        for (name, direction), value in sorted(totals.items()):
            moved.add_metric([name, direction], value)
        yield tunnels
        yield moved
        limiter = site.limiter
        yield GaugeMetricFamily("tunnelgw_connections_open", "Open client connections.", value=limiter.total)
        yield CounterMetricFamily(
            "tunnelgw_connections", "Client connections accepted.", value=limiter.accepted
        )
        yield GaugeMetricFamily(
            "tunnelgw_fallback_sessions_open", "Open sessions of the HTTP fallback.", value=len(site.fallback)
        )
        links = GaugeMetricFamily(
            "tunnelgw_reverse_links_idle",
            "Idle reverse links: those this gateway dialled (inner, by outer URL) and those dialled in (outer, by pool).",
            labels=["side", "name"],
        )
        for dialer in metrics.state.dialers:
            links.add_metric(["inner", dialer.link.outer], len(dialer.idle))
        for name, pool in sorted(site.pipeline.links.items()):
            links.add_metric(["outer", name], len(pool.idle))
        yield links
        if metrics.config.user_labels:
            users = GaugeMetricFamily(
                "tunnelgw_user_tunnels_open",
                f"Open tunnels by user (the {metrics.config.max_users} with most; the rest as other).",
                labels=["user"],
            )
            ranked = by_user.most_common()
            for user, count in ranked[: metrics.config.max_users]:
                users.add_metric([user], count)
            rest = sum(count for _, count in ranked[metrics.config.max_users :])
            if rest:
                users.add_metric(["other"], rest)
            yield users


class MetricsPage(resource.Resource):
    """
    The metrics listener's site root: C{GET /metrics}, rendered on the
    reactor's thread (the state it reads is the reactor's); anything else 404.
    """

    isLeaf = True

    def __init__(self, metrics: GatewayMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render(self, request: server.Request) -> bytes:
        request.setHeader("Cache-Control", "no-store")
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader("Allow", "GET, HEAD")
            return b""
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return self._metrics.render()


class QuietSite(server.Site):
    """The metrics listener's site: no access log line per scrape."""

    noisy = False

    def log(self, request: Any) -> None:
        pass
