"""
What C{tunnelgw check-config} says of a valid file: every way in (plain
and TLS listeners, link pools, reverse links) and every service.
"""

from __future__ import annotations

from typing import Any

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


def test_the_admin_commands_follow_no_redirect(capsys: Any) -> None:
    """
    A redirect from the admin URL is an error: urllib would follow it with
    the Authorization header, to whatever host it names.
    """
    import email.message
    import io
    import urllib.request
    import urllib.response
    from unittest import mock

    from tunnelgw import admin_cli

    asked: list[tuple[str, str | None]] = []

    class Redirecting(urllib.request.BaseHandler):
        handler_order = 100  # ahead of urllib's own HTTP handler

        def http_open(self, request: urllib.request.Request) -> Any:
            asked.append((request.full_url, request.get_header("Authorization")))
            headers = email.message.Message()
            headers["Location"] = "http://elsewhere.example/api/tunnels"
            response = urllib.response.addinfourl(io.BytesIO(b""), headers, request.full_url, 302)
            response.msg = "Found"  # type: ignore[attr-defined]
            return response

    def opener(ca: str | None = None) -> urllib.request.OpenerDirector:
        built = real(ca)
        built.add_handler(Redirecting())
        return built

    real = admin_cli.opener
    with mock.patch.object(admin_cli, "opener", opener):
        assert admin_cli.main("tunnels", ["--admin", "http://127.0.0.1:9465"]) == 1
    assert asked == [("http://127.0.0.1:9465/api/tunnels", None)]
    assert capsys.readouterr().err == (
        "tunnelgw tunnels: HTTP 302 a redirect to http://elsewhere.example/api/tunnels,"
        " not followed: give the admin listener's own URL\n"
    )
