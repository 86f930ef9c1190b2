"""
The whole file, validated into L{tunnelgw.config.model}: C{load} and
C{loads}.  Sections that belong to a stage (adapters' options, login
modules, policies, links, TLS listeners) are parsed by that stage, asked
here when the section is read.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import tunnelgw.registry as registry
from tunnelgw.config.model import (
    Flag,
    GatewayConfig,
    Limits,
    LoginLimits,
    ModuleEntry,
    PolicyConfig,
    PoolConfig,
    RealmConfig,
    ReverseLink,
    ServiceConfig,
    TLSListener,
)
from tunnelgw.config.operations import (
    admin_config,
    audit_path,
    cluster_config,
    fallback_config,
    metrics_config,
)
from tunnelgw.config.values import (
    ConfigError,
    KiB,
    Table,
    bool_value,
    count_value,
    origins_value,
    path_value,
    positive_int_value,
    positive_seconds_value,
    seconds_value,
    string_value,
    strings_value,
    subprotocols_value,
)

__all__ = ["load", "loads"]


# the limits that 0 turns off
_OFF_WHEN_ZERO = frozenset({"max_messages_per_second", "max_bytes_per_second"})


def _limits(table: Table) -> Limits:
    defaults = Limits()
    values: dict[str, Any] = {}
    for f in fields(Limits):
        default = getattr(defaults, f.name)
        if f.name in _OFF_WHEN_ZERO:
            values[f.name] = table.take(f.name, count_value, default)
        elif isinstance(default, int):
            values[f.name] = table.take(f.name, positive_int_value, default)
        elif f.name in ("open_handshake_timeout", "connect_timeout", "flush_timeout"):
            values[f.name] = table.take(f.name, positive_seconds_value, default)
        else:
            values[f.name] = table.take(f.name, seconds_value, default)
    table.done()
    limits = Limits(**values)
    if limits.max_frame_size > limits.max_message_size:
        raise ConfigError(f"{table.key('max_frame_size')}: must not exceed max_message_size")
    return limits


def _logins(table: Table) -> LoginLimits:
    defaults = LoginLimits()
    limits = LoginLimits(
        max_pending=table.take("max_pending", positive_int_value, defaults.max_pending),
        max_failures_per_address=table.take(
            "max_failures_per_address", positive_int_value, defaults.max_failures_per_address
        ),
        max_failures_per_user=table.take(
            "max_failures_per_user", positive_int_value, defaults.max_failures_per_user
        ),
        failure_window=table.take("failure_window", positive_seconds_value, defaults.failure_window),
        familiar_for=table.take("familiar_for", seconds_value, defaults.familiar_for),
    )
    table.done()
    return limits


def _service(name: str, table: Table) -> ServiceConfig:
    adapter = table.require("adapter", string_value)
    factory = registry.adapters().get(adapter)
    if factory is None:
        known = ", ".join(sorted(registry.adapters()))
        raise ConfigError(f"{table.key('adapter')}: unknown adapter {adapter!r} (known: {known})")
    upstream = table.take("upstream", string_value, None)
    if factory.needs_upstream and upstream is None:
        raise ConfigError(f"{table.key('upstream')}: adapter {adapter!r} needs an upstream endpoint")
    if not factory.needs_upstream and upstream is not None:
        raise ConfigError(f"{table.key('upstream')}: adapter {adapter!r} takes no upstream")
    if upstream is not None:
        kind = registry.upstream_kind(upstream)
        try:
            kind.check(upstream)
        except ValueError as e:
            raise ConfigError(f"{table.key('upstream')}: {e}") from None
        carries = getattr(factory, "carries", "bytes")
        if kind.carries != carries:
            raise ConfigError(
                f"{table.key('upstream')}: another gateway ({kind.name} upstream) is reached with"
                f' adapter = "chain", which carries its messages; adapter {adapter!r} carries bytes'
                if kind.carries == "messages"
                else f"{table.key('upstream')}: a {kind.name} upstream carries bytes, and adapter"
                f" {adapter!r} relays messages: it reaches only another gateway"
            )
    subprotocols = table.take("subprotocols", subprotocols_value, tuple[str, ...]())
    if factory.subprotocols is not None:
        foreign = [p for p in subprotocols if p not in factory.subprotocols]
        if foreign:
            raise ConfigError(
                f"{table.key('subprotocols')}: adapter {adapter!r} does not speak {', '.join(foreign)}"
                f" (it speaks {', '.join(factory.subprotocols)})"
            )
        # the adapter's preference (STOMP: the highest version first)
        subprotocols = tuple(p for p in factory.subprotocols if p in subprotocols)
    service = ServiceConfig(
        name=name,
        path=table.require("path", path_value),
        adapter=adapter,
        realm=table.require("realm", string_value),
        require_roles=frozenset(table.take("require_roles", strings_value, tuple[str, ...]())),
        policy=table.take("policy", string_value, None),
        upstream=upstream,
        subprotocols=subprotocols,
        allow_no_subprotocol=table.take("allow_no_subprotocol", bool_value, False),
        origins=table.take("origins", origins_value, frozenset()),
        allow_missing_origin=table.take("allow_missing_origin", bool_value, False),
        allow_text=table.take("allow_text", bool_value, False),
        fallback=table.take("fallback", bool_value, False),
        limits=_limits(table.table("limits")),
        adapter_options=factory.parse_options(table.value(adapter, {}), table.key(adapter)),
    )
    table.done()
    check_upstream = getattr(factory, "check_upstream", None)
    if check_upstream is not None and upstream is not None:
        check_upstream(upstream, service.adapter_options, table.key(adapter))
    if factory.needs_policy(service.adapter_options) and service.policy is None:
        raise ConfigError(
            f"{table.key('policy')}: adapter {adapter!r} authorizes operations through a policy here;"
            " name one (deny by default: without a policy nothing would be allowed)"
        )
    if not service.subprotocols and not service.allow_no_subprotocol:
        raise ConfigError(
            f"{table.path}: offers no subprotocol and refuses clients that offer none;"
            " set subprotocols or allow_no_subprotocol = true"
        )
    return service


CHALLENGES = ("Basic", "Bearer")


def _realm(name: str, table: Table) -> RealmConfig:

    login_modules = registry.login_modules()

    challenge = table.choice("challenge", CHALLENGES, "Basic")
    revalidate_interval = table.take("revalidate_interval", seconds_value, 0.0)
    entries = []
    for entry in table.tables("modules", required=True):
        module = entry.require("module", string_value)
        factory = login_modules.get(module)
        if factory is None:
            known = ", ".join(sorted(login_modules))
            raise ConfigError(f"{entry.key('module')}: unknown login module {module!r} (known: {known})")
        flag = Flag(entry.choice("flag", [f.value for f in Flag]))
        raw_options = entry.value("options", {})
        entry.done()
        options = factory.parse_config(raw_options, entry.key("options"))
        entries.append(ModuleEntry(module, factory, flag, options))
    table.done()
    return RealmConfig(name, challenge, tuple(entries), revalidate_interval, source=table.source)


def _tls_listeners(gateway: Table) -> tuple[Any, ...]:

    listeners = []
    for t in gateway.tables("tls_listeners"):
        listener = TLSListener(
            endpoint=t.require("endpoint", string_value),
            certificate=t.require("certificate", string_value),
            private_key=t.require("private_key", string_value),
            client_ca=t.take("client_ca", string_value, None),
            require_client_certificate=t.take("require_client_certificate", bool_value, False),
            session_tickets=t.take("session_tickets", bool_value, True),
        )
        t.done()
        if listener.require_client_certificate and listener.client_ca is None:
            raise ConfigError(f"{t.key('require_client_certificate')}: needs client_ca")
        listeners.append(listener)
    return tuple(listeners)


def _links(name: str, table: Table) -> Any:

    pool = PoolConfig(
        name=name,
        path=table.require("path", path_value),
        certificate_subject=table.require("certificate_subject", string_value),
        wait_timeout=table.take("wait_timeout", positive_seconds_value, 5.0),
        max_idle=table.take("max_idle", positive_int_value, 64),
        ping_interval=table.take("ping_interval", seconds_value, 15.0),
    )
    table.done()
    return pool


def _reverse_links(gateway: Table) -> tuple[Any, ...]:
    from tunnelgw.upstream.chain import check_url, client_tls

    links = []
    for t in gateway.tables("reverse_links"):
        outer = t.require("outer", string_value)
        try:
            check_url(outer)
        except ValueError as e:
            raise ConfigError(f"{t.key('outer')}: {e}") from None
        link = ReverseLink(
            outer=outer,
            tls=client_tls(t),
            pool=t.take("pool", positive_int_value, 4),
            backoff_initial=t.take("backoff_initial", positive_seconds_value, 0.5),
            backoff_max=t.take("backoff_max", positive_seconds_value, 30.0),
            ping_interval=t.take("ping_interval", seconds_value, 15.0),
        )
        t.done()
        if link.backoff_max < link.backoff_initial:
            raise ConfigError(f"{t.key('backoff_max')}: must not be less than backoff_initial")
        links.append(link)
    return tuple(links)


def _policy(name: str, table: Table) -> PolicyConfig:
    factories = registry.policies()
    kind = table.take("policy", string_value, "rules")
    factory = factories.get(kind)
    if factory is None:
        raise ConfigError(
            f"{table.key('policy')}: unknown policy {kind!r} (known: {', '.join(sorted(factories))})"
        )
    options = dict(table._data)
    table._data.clear()
    return PolicyConfig(name, kind, factory.parse_config(options, table.path), source=table.source)


def _from_mapping(data: Mapping[str, Any]) -> GatewayConfig:
    top = Table(data, "")
    gateway = top.table("gateway")
    listen = gateway.take("listen", strings_value, tuple[str, ...]())
    tls_listeners = _tls_listeners(gateway)
    reverse_links = _reverse_links(gateway)
    if not listen and not tls_listeners and not reverse_links:
        raise ConfigError(
            "gateway.listen: at least one listener is needed (or gateway.tls_listeners, or gateway.reverse_links)"
        )
    health_path = gateway.take("health_path", path_value, "/healthz")
    refresh_path = gateway.take("refresh_path", path_value, "/tunnelgw/refresh")
    max_request_body = gateway.take("max_request_body", positive_int_value, 64 * KiB)
    drain_timeout = gateway.take("drain_timeout", seconds_value, 10.0)
    if refresh_path == health_path:
        raise ConfigError("gateway.refresh_path: must differ from gateway.health_path")
    handshake_timeout = gateway.take("handshake_timeout", positive_seconds_value, 10.0)
    max_connections = gateway.take("max_connections", positive_int_value, 10000)
    per_address = gateway.take("max_connections_per_address", positive_int_value, 256)
    tunnels_per_user = gateway.take("max_tunnels_per_user", positive_int_value, 100)
    handshake_rate = gateway.take("handshake_rate_per_address", count_value, 100)
    handshake_burst = gateway.take("handshake_burst_per_address", positive_int_value, 200)
    logins = _logins(gateway.table("logins"))
    gateway.done()

    realms_table = top.table("realms")
    realms = [_realm(name, realms_table.table(name)) for name in list(realms_table._data)]
    realm_names = {realm.name for realm in realms}

    policies_table = top.table("policies")
    policies = [_policy(name, policies_table.table(name)) for name in list(policies_table._data)]
    policy_names = {policy.name for policy in policies}

    links_table = top.table("links")
    links = [_links(name, links_table.table(name)) for name in list(links_table._data)]
    link_names = {pool.name for pool in links}

    services_table = top.table("services")
    services = []
    for name in list(services_table._data):
        services.append(_service(name, services_table.table(name)))
    audit = audit_path(top.table("audit"))
    metrics = metrics_config(top.table("metrics"), listen)
    cluster = cluster_config(top.table("cluster"))
    admin = admin_config(top.table("admin"), listen, realm_names)
    fallback = fallback_config(top.table("fallback"))
    top.done()

    seen: dict[str, str] = {pool.path: f"links.{pool.name}" for pool in links}
    for pool in links:
        if pool.path in (health_path, refresh_path):
            raise ConfigError(f"links.{pool.name}.path: {pool.path} is the health_path or refresh_path")
    for service in services:
        kind = registry.upstream_kind(service.upstream or "")
        links_of = getattr(kind, "links_of", None)
        wanted = links_of(service.upstream) if links_of is not None and service.upstream else None
        if wanted is not None and wanted not in link_names:
            raise ConfigError(f"services.{service.name}.upstream: no [links.{wanted}] is defined")
        if service.realm not in realm_names:
            raise ConfigError(
                f"services.{service.name}.realm: no realm {service.realm!r} is defined in [realms]"
            )
        if service.policy is not None and service.policy not in policy_names:
            raise ConfigError(
                f"services.{service.name}.policy: no policy {service.policy!r} is defined in [policies]"
            )
        if service.path in (health_path, refresh_path):
            raise ConfigError(
                f"services.{service.name}.path: {service.path} is the health_path or refresh_path"
            )
        if service.path in seen:
            raise ConfigError(
                f"services.{service.name}.path: {service.path} is already used by {seen[service.path]}"
            )
        seen[service.path] = f"services.{service.name}"
    return GatewayConfig(
        listen=listen,
        services=tuple(services),
        realms=tuple(realms),
        policies=tuple(policies),
        tls_listeners=tls_listeners,
        handshake_timeout=handshake_timeout,
        max_connections=max_connections,
        max_connections_per_address=per_address,
        max_tunnels_per_user=tunnels_per_user,
        handshake_rate_per_address=handshake_rate,
        handshake_burst_per_address=handshake_burst,
        health_path=health_path,
        refresh_path=refresh_path,
        max_request_body=max_request_body,
        drain_timeout=drain_timeout,
        logins=logins,
        links=tuple(links),
        reverse_links=reverse_links,
        audit=audit,
        metrics=metrics,
        cluster=cluster,
        admin=admin,
        fallback=fallback,
    )


def loads(text: str) -> GatewayConfig:
    """
    Parse and validate configuration text.

    @raise ConfigError: with the key and the reason.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"TOML syntax: {e}") from None
    return _from_mapping(data)


def load(path: str) -> GatewayConfig:
    """
    Read, parse and validate a configuration file.

    @raise ConfigError: with the key and the reason.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return loads(text)
