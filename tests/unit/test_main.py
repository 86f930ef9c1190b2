"""
What C{tunnelgw check-config} says of a valid file: every way in (plain
and TLS listeners, link pools, reverse links) and every service.
"""

from __future__ import annotations

from tunnelgw.__main__ import summary
from tunnelgw.config.model import GatewayConfig, PoolConfig, ReverseLink, ServiceConfig, TLSListener


def test_the_summary_names_every_listener_and_link() -> None:
    config = GatewayConfig(
        listen=("tcp:8080",),
        services=(ServiceConfig(name="vnc", path="/vnc", adapter="rfb"),),
        tls_listeners=(TLSListener("tcp:8443", "c.pem", "k.pem"),),
        links=(PoolConfig("inner", "/links/inner", "CN=inner"),),
        reverse_links=(ReverseLink("wss://outer.example:8443/links/inner", tls=None),),  # type: ignore[arg-type]
    )
    assert summary("gw.toml", config) == (
        "gw.toml: valid; listeners: tcp:8080, tcp:8443 (TLS, client certificates);"
        " links: inner (/links/inner); reverse links to: wss://outer.example:8443/links/inner;"
        " services: vnc (/vnc)"
    )


def test_the_summary_names_the_metrics_listener_and_the_audit_stream() -> None:
    from tunnelgw.config.model import MetricsConfig

    config = GatewayConfig(
        listen=("tcp:8080",),
        services=(),
        metrics=MetricsConfig("tcp:9464:interface=127.0.0.1"),
        audit="-",
    )
    assert summary("gw.toml", config) == (
        "gw.toml: valid; listeners: tcp:8080; metrics: tcp:9464:interface=127.0.0.1;"
        " audit: standard output; services: none"
    )
