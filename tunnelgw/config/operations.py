"""
The operational tables: C{[audit]}, C{[metrics]}, C{[cluster]}, C{[admin]},
C{[fallback]}.
"""

from __future__ import annotations

import os
import socket

import hyperlink

from tunnelgw.config.model import AdminConfig, ClusterConfig, FallbackConfig, MetricsConfig
from tunnelgw.config.values import (
    ConfigError,
    Table,
    bool_value,
    count_value,
    file_text,
    positive_int_value,
    positive_seconds_value,
    string_value,
    strings_value,
)
from tunnelgw.tls import certificates

__all__ = ["admin_config", "audit_path", "cluster_config", "fallback_config", "metrics_config"]


def audit_path(table: Table) -> str | None:
    path = table.take("path", string_value, None)
    table.done()
    return path


def metrics_config(table: Table, listen: tuple[str, ...]) -> MetricsConfig | None:
    endpoint = table.take("listen", string_value, None)
    user_labels = table.take("user_labels", bool_value, False)
    max_users = table.take("max_users", positive_int_value, 100)
    table.done()
    if endpoint is None:
        return None
    if endpoint in listen:
        raise ConfigError(
            f"metrics.listen: {endpoint!r} is a gateway listener; metrics need one of their own"
        )
    return MetricsConfig(endpoint, user_labels, max_users)


def cluster_config(table: Table) -> ClusterConfig | None:
    redis = table.take("redis", string_value, None)
    password_file = table.take("password_file", string_value, None)
    username = table.take("username", string_value, None)
    ca = table.take("ca", string_value, None)
    prefix = table.take("prefix", string_value, "tunnelgw")
    instance = table.take("instance", string_value, "") or f"{socket.gethostname()}-{os.getpid()}"
    lease_ttl = table.take("lease_ttl", positive_seconds_value, 15.0)
    when_down = table.choice("when_down", ("refuse", "local"), "refuse")
    grace = table.take("grace", positive_seconds_value, 30.0)
    advertise = table.take("advertise", string_value, None)
    advertise_ca = table.take("advertise_ca", string_value, None)
    table.done()
    if redis is None:
        return None
    url = hyperlink.URL.from_text(redis)
    if url.scheme not in ("redis", "rediss") or not url.host:
        raise ConfigError(f"cluster.redis: expected redis://HOST:PORT or rediss://HOST:PORT, got {redis!r}")
    if url.userinfo:
        raise ConfigError(
            "cluster.redis: put the password in password_file, not in the URL (URLs get logged)"
        )
    password = file_text("cluster.password_file", password_file).strip() if password_file else None
    for name, path in (("cluster.ca", ca), ("cluster.advertise_ca", advertise_ca)):
        if path is not None:
            certificates(name, path)  # named now if it cannot be read or holds no certificate
    if advertise is not None:
        where = hyperlink.URL.from_text(advertise)
        if (
            where.scheme not in ("http", "https")
            or not where.host
            or where.path not in ((), ("",))
            or where.userinfo
            or where.query
        ):
            raise ConfigError(
                f"cluster.advertise: expected http://HOST:PORT or https://HOST:PORT, got {advertise!r}"
            )
    return ClusterConfig(
        redis, password, username, ca, prefix, instance, lease_ttl, when_down, grace, advertise, advertise_ca
    )


def admin_config(table: Table, listen: tuple[str, ...], realms: set[str]) -> AdminConfig | None:
    endpoint = table.take("listen", string_value, None)
    realm = table.take("realm", string_value, None)
    default_roles: tuple[str, ...] = ("admin",)
    roles = frozenset(table.take("require_roles", strings_value, default_roles))
    table.done()
    if endpoint is None:
        return None
    if endpoint in listen:
        raise ConfigError(
            f"admin.listen: {endpoint!r} is a gateway listener; the admin API needs one of its own"
        )
    if realm is None:
        raise ConfigError("admin.realm: required: the realm admins log in with")
    if realm not in realms:
        raise ConfigError(f"admin.realm: no realm {realm!r} is defined in [realms]")
    if not roles:
        raise ConfigError("admin.require_roles: at least one role")
    return AdminConfig(endpoint, realm, roles)


def fallback_config(table: Table) -> FallbackConfig:
    default = FallbackConfig()
    config = FallbackConfig(
        max_sessions=table.take("max_sessions", positive_int_value, default.max_sessions),
        idle_timeout=table.take("idle_timeout", positive_seconds_value, default.idle_timeout),
        heartbeat=table.take("heartbeat", positive_seconds_value, default.heartbeat),
        stream_time=table.take("stream_time", positive_seconds_value, default.stream_time),
        stream_bytes=table.take("stream_bytes", positive_int_value, default.stream_bytes),
        poll_time=table.take("poll_time", positive_seconds_value, default.poll_time),
        padding=table.take("padding", count_value, default.padding),
    )
    table.done()
    if config.heartbeat >= config.idle_timeout:
        raise ConfigError("fallback.heartbeat: must be shorter than fallback.idle_timeout")
    return config
