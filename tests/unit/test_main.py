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


def test_durations_on_the_command_line() -> None:
    import argparse

    import pytest

    from tunnelgw.admin_cli import duration

    assert [duration(t) for t in ("90", "90s", "30m", "1h", "2d", "1.5h")] == [
        90,
        90,
        1800,
        3600,
        172800,
        5400,
    ]
    for bad in ("", "0", "-1h", "1w", "h", "1 hour"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
