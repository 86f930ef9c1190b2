"""
Configuration: defaults, and errors that name the key and say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelgw.config.loader import load, loads
from tunnelgw.config.model import DEFAULT_CONFIG, Limits
from tunnelgw.config.values import ConfigError, normalize_origin

REPO = Path(__file__).resolve().parents[2]

REALM = """
[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"
"""

BASE = (
    """
[gateway]
listen = ["tcp:8080"]
"""
    + REALM
    + """
[services.s]
path = "/s"
adapter = "raw"
realm = "public"
upstream = "tcp:127.0.0.1:5900"
allow_no_subprotocol = true
"""
)


def error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        loads(text)
    return str(e.value)


def test_embedded_default() -> None:
    config = loads(DEFAULT_CONFIG)
    assert config.listen == ("tcp:8080:interface=127.0.0.1",)
    (echo,) = config.services
    assert (echo.path, echo.adapter, echo.upstream) == ("/echo", "echo", None)
    assert config.health_path == "/healthz"


def test_example_file_loads() -> None:
    config = load(str(REPO / "etc" / "tunnelgw.toml"))
    vnc = config.service_at("/vnc")
    assert vnc is not None and vnc.origins == frozenset({"https://desktop.example.com"})
    assert vnc.limits.idle_timeout == 3600


def test_defaults() -> None:
    (service,) = loads(BASE).services
    assert service.limits == Limits()
    assert service.limits.high_water == 65536
    assert service.allow_missing_origin is False and service.origins == frozenset()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[services.s.limits]\nmax_frame_size = -1\n",
            "services.s.limits.max_frame_size: expected a positive integer",
        ),
        (
            "[services.s.limits]\nmax_frame_size = 2_000_000\n",
            "services.s.limits.max_frame_size: must not exceed",
        ),
        (
            "[services.s.limits]\nidle_timeout = 'soon'\n",
            "services.s.limits.idle_timeout: expected a number of seconds",
        ),
        (
            "[services.s.limits]\nconnect_timeout = 0\n",
            "services.s.limits.connect_timeout: must be greater than 0",
        ),
        ("[services.s.limits]\nbogus = 1\n", "services.s.limits.bogus: unknown key"),
        ("[gateway.tls]\n", "gateway.tls: unknown key"),
        ("[other]\n", "other: unknown key"),
    ],
)
def test_errors_name_the_key(extra: str, message: str) -> None:
    assert message in error(BASE + extra)


def test_service_key_errors() -> None:
    assert error(BASE.replace('adapter = "raw"', 'adapter = "nope"')).startswith(
        "services.s.adapter: unknown adapter 'nope'"
    )
    assert "services.s.upstream: adapter 'raw' needs" in error(
        BASE.replace('upstream = "tcp:127.0.0.1:5900"', "")
    )
    assert "services.s.upstream: port must be a number" in error(BASE.replace("5900", "vnc"))
    assert "services.s.path: expected an absolute URL path" in error(BASE.replace('"/s"', '"s"'))
    assert "services.s.path: required key is missing" in error(BASE.replace('path = "/s"', ""))
    assert "services.s: offers no subprotocol" in error(BASE.replace("allow_no_subprotocol = true", ""))
    assert "services.s.origins[0]: not an origin" in error(BASE + 'origins = ["https://a.example/path"]\n')
    assert "not a valid subprotocol token" in error(BASE + 'subprotocols = ["a b"]\n')
    assert "duplicate" in error(BASE + 'subprotocols = ["a", "a"]\n')
    echo_with_upstream = BASE.replace('adapter = "raw"', 'adapter = "echo"')
    assert "services.s.upstream: adapter 'echo' takes no upstream" in error(echo_with_upstream)


def test_gateway_errors() -> None:
    assert "gateway.listen: at least one listener is needed" in error("[gateway]\n")
    assert "gateway.listen: at least one listener" in error("[gateway]\nlisten = []\n")
    assert "gateway.max_connections: expected a positive integer" in error(
        BASE.replace('listen = ["tcp:8080"]', 'listen = ["tcp:8080"]\nmax_connections = 0')
    )
    assert "TOML syntax" in error("[gateway\n")
    duplicate = (
        BASE + '[services.t]\npath = "/s"\nadapter = "echo"\nrealm = "public"\nallow_no_subprotocol = true\n'
    )
    assert "services.t.path: /s is already used by services.s" in error(duplicate)
    health = BASE.replace('path = "/s"', 'path = "/healthz"')
    assert "is the health_path or refresh_path" in error(health)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load("/nonexistent/tunnelgw.toml")


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", "null"),
    ],
)
def test_normalize_origin(origin: str, normalized: str) -> None:
    assert normalize_origin(origin) == normalized


@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,2}", fullmatch=True),
    st.integers(1, 65535),
)
def test_normalize_origin_idempotent(scheme: str, host: str, port: int) -> None:
    once = normalize_origin(f"{scheme}://{host.upper()}:{port}")
    assert normalize_origin(once) == once
    assert once.startswith(f"{scheme}://{host}")


def test_realm_and_listener_errors() -> None:
    no_modules = BASE.replace(REALM, "[realms.public]\n")
    assert "realms.public.modules: at least one [[realms.public.modules]] entry is needed" in error(
        no_modules
    )
    bad_flag = BASE.replace('flag = "required"', 'flag = "mandatory"')
    assert (
        "realms.public.modules[0].flag: expected one of required, requisite, sufficient, optional"
        in error(bad_flag)
    )
    bad_module = BASE.replace('module = "anonymous"', 'module = "kerberos"')
    assert "realms.public.modules[0].module: unknown login module 'kerberos'" in error(bad_module)
    bad_challenge = BASE.replace("[realms.public]\n", '[realms.public]\nchallenge = "Digest"\n')
    assert "realms.public.challenge: expected one of Basic, Bearer, got 'Digest'" in error(bad_challenge)
    no_realm = BASE.replace('realm = "public"', 'realm = "staff"')
    assert "services.s.realm: no realm 'staff' is defined in [realms]" in error(no_realm)
    tls = BASE.replace('listen = ["tcp:8080"]', 'listen = ["tcp:8080"]\ntls_listeners = "ssl:443"')
    assert "gateway.tls_listeners: expected [[gateway.tls_listeners]] tables" in error(tls)
    tls = BASE.replace(
        'listen = ["tcp:8080"]',
        'listen = ["tcp:8080"]\n[[gateway.tls_listeners]]\nendpoint = "tcp:1"\ncertificate = "c"\n'
        'private_key = "k"\nrequire_client_certificate = true\n',
    )
    assert "gateway.tls_listeners[0].require_client_certificate: needs client_ca" in error(tls)


@pytest.mark.parametrize(
    "advertise",
    [
        "ftp://10.0.0.5:8080",
        "http://10.0.0.5:8080/path",
        "https://user:secret@10.0.0.5:8443",
        "http://10.0.0.5?x=1",
    ],
)
def test_cluster_advertise_is_a_bare_http_url(advertise: str) -> None:
    """An instance's address for the others: scheme, host and port only (it is logged and shared)."""
    from tunnelgw.config.operations import cluster_config
    from tunnelgw.config.values import Table

    with pytest.raises(
        ConfigError, match="^cluster.advertise: expected http://HOST:PORT or https://HOST:PORT"
    ):
        cluster_config(Table({"redis": "redis://127.0.0.1:6379", "advertise": advertise}, "cluster"))
