"""
The configuration, typed and frozen: what the loader makes of the file and
what every stage reads.  The embedded default configuration too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from tunnelgw.config.values import KiB, MiB
from tunnelgw.interfaces import IAuthorizationPolicy, ILoginModuleFactory

__all__ = [
    "AdminConfig",
    "ClusterConfig",
    "DEFAULT_CONFIG",
    "Flag",
    "GatewayConfig",
    "Limits",
    "LoginLimits",
    "MetricsConfig",
    "ModuleEntry",
    "PolicyConfig",
    "PoolConfig",
    "RealmConfig",
    "ReverseLink",
    "ServiceConfig",
    "TLSListener",
]

DEFAULT_CONFIG = """\
# Embedded default: used when tunnelgw starts without --config.
[gateway]
listen = ["tcp:8080:interface=127.0.0.1"]
health_path = "/healthz"

# Public: everyone is admitted, explicitly.
[realms.public]
[[realms.public.modules]]
module = "anonymous"
flag = "required"

[services.echo]
path = "/echo"
adapter = "echo"
realm = "public"
allow_no_subprotocol = true
allow_missing_origin = true
origins = ["http://127.0.0.1:8080", "http://localhost:8080"]
"""


@dataclass(frozen=True)
class Limits:
    """
    Resource bounds of one service's tunnels.  Sizes are bytes, times are
    seconds; 0 disables a timer where the reference says so.
    """

    max_frame_size: int = 1 * MiB
    max_message_size: int = 1 * MiB
    max_fragments: int = 1024
    open_handshake_timeout: float = 10.0
    close_handshake_timeout: float = 5.0
    ping_interval: float = 30.0
    ping_timeout: float = 15.0
    idle_timeout: float = 600.0
    high_water: int = 64 * KiB
    connect_timeout: float = 10.0
    flush_timeout: float = 30.0
    max_tunnels_per_user: int = 100
    max_messages_per_second: int = 20000
    message_burst: int = 40000
    max_bytes_per_second: int = 0
    byte_burst: int = 4 * MiB


@dataclass(frozen=True)
class LoginLimits:
    """
    Bounds on logins, gateway-wide (C{[gateway.logins]}).  A login that
    presents credentials (an C{Authorization} header) is counted against
    its client address and its user name before it runs, and taken back if
    it succeeds: past C{max_failures_per_address} or
    C{max_failures_per_user} in C{failure_window} seconds, logins are
    refused with 429 until the window ends; the per-user limit does not
    apply from an address the user logged in from in the last
    C{familiar_for} seconds.  At most C{max_pending} logins
    wait for an asynchronous answer (a password hash, an HTTP call) at once;
    beyond, 503.
    """

    max_pending: int = 64
    max_failures_per_address: int = 20
    max_failures_per_user: int = 10
    failure_window: float = 300.0
    familiar_for: float = 86400.0


class Flag(enum.Enum):
    """A login module's JAAS control flag."""

    REQUIRED = "required"
    REQUISITE = "requisite"
    SUFFICIENT = "sufficient"
    OPTIONAL = "optional"


@dataclass(frozen=True)
class ModuleEntry:
    """
    One configured module of a realm.
    """

    name: str
    factory: ILoginModuleFactory
    flag: Flag
    options: object
    """What the factory's C{parse_config} made of the module's options."""


@dataclass(frozen=True)
class RealmConfig:
    """
    A realm: how clients are challenged and which login modules run, in
    order, with their JAAS flags (L{tunnelgw.security.jaas.ModuleEntry}).
    """

    name: str
    challenge: str
    modules: tuple[ModuleEntry, ...]
    revalidate_interval: float = 0.0
    source: object = field(default=None, compare=False, repr=False)
    """Its table as the file had it: a reload re-judges the realm's tunnels when it changed."""


@dataclass(frozen=True)
class PolicyConfig:
    """
    A named authorization policy (an L{IAuthorizationPolicy}).
    """

    name: str
    kind: str
    policy: IAuthorizationPolicy
    source: object = field(default=None, compare=False, repr=False)
    """Its table as the file had it: a reload gives open tunnels the new policy when it changed."""


@dataclass(frozen=True)
class ServiceConfig:
    """
    One service: a URL path, what it offers and where it leads.
    """

    name: str
    path: str
    adapter: str
    realm: str = "public"
    require_roles: frozenset[str] = frozenset()
    policy: str | None = None
    upstream: str | None = None
    subprotocols: tuple[str, ...] = ()
    allow_no_subprotocol: bool = False
    origins: frozenset[str] = frozenset()
    allow_missing_origin: bool = False
    allow_text: bool = False
    fallback: bool = False
    """Clients may come by the HTTP fallback transport too (L{tunnelgw.front.fallback})."""
    limits: Limits = field(default_factory=Limits)
    adapter_options: object = None
    """
    What the adapter's C{parse_options} made of C{[services.NAME.ADAPTER]}
    (each adapter knows its own type).
    """


@dataclass(frozen=True)
class TLSListener:
    """C{[[gateway.tls_listeners]]}: a TLS listener that asks for client certificates."""

    endpoint: str
    certificate: str
    private_key: str
    client_ca: str | None = None
    require_client_certificate: bool = False
    session_tickets: bool = True
    """Resume TLS sessions by ticket (RFC 5077; TLS 1.3's tickets): a returning client skips the full handshake."""


@dataclass(frozen=True)
class PoolConfig:
    """
    C{[links.NAME]}: where inner gateways dial in, and who may.
    """

    name: str
    path: str
    certificate_subject: str
    wait_timeout: float = 5.0
    max_idle: int = 64
    ping_interval: float = 15.0


@dataclass(frozen=True)
class ReverseLink:
    """
    C{[[gateway.reverse_links]]}: an outer gateway to dial out to.
    """

    outer: str
    tls: IOpenSSLClientConnectionCreator
    pool: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    ping_interval: float = 15.0


@dataclass(frozen=True)
class MetricsConfig:
    """
    C{[metrics]}: Prometheus metrics on a listener of their own (never a
    gateway listener), C{GET /metrics}.
    """

    listen: str
    user_labels: bool = False
    """Label per-user series with the user name (at most C{max_users} users; the rest as C{"other"})."""
    max_users: int = 100


@dataclass(frozen=True)
class ClusterConfig:
    """
    C{[cluster]}: the engine several instances share (Redis): tunnels per
    user across instances, pushed revocations, the cluster-wide tunnel list.
    """

    redis: str
    """C{redis://HOST:PORT[/DB]} or C{rediss://...} (TLS)."""
    password: str | None = None
    username: str | None = None
    ca: str | None = None
    """PEM: the CAs a C{rediss://} server's certificate must chain to (default: the system's)."""
    prefix: str = "tunnelgw"
    instance: str = ""
    """This instance's name in the cluster (default: host name and process id)."""
    lease_ttl: float = 15.0
    when_down: str = "refuse"
    """After C{grace} seconds without Redis: C{refuse} (503) or C{local} (this process's limits only)."""
    grace: float = 30.0
    advertise: str | None = None
    """
    This instance's gateway listener as the others reach it (C{http://10.0.0.5:8080}):
    requests of its fallback sessions that land elsewhere are passed to it.
    """
    advertise_ca: str | None = None
    """PEM: the CAs the other instances' C{https://} C{advertise} certificates must chain to (default: the system's)."""


@dataclass(frozen=True)
class AdminConfig:
    """
    C{[admin]}: the admin API and page, on a listener of their own, for
    subjects of C{realm} holding one of C{require_roles}.
    """

    listen: str
    realm: str
    require_roles: frozenset[str] = frozenset({"admin"})


@dataclass(frozen=True)
class FallbackConfig:
    """
    C{[fallback]}: the HTTP fallback transport of the services that allow
    it (C{fallback = true}): how many sessions, how long one may go
    without a request, and how its down responses are kept alive.
    """

    max_sessions: int = 1000
    idle_timeout: float = 30.0
    """A session with no request for this long is lost (its tunnel closes as after a 1006)."""
    heartbeat: float = 10.0
    """Seconds between heartbeats on a stream (proxies close idle responses)."""
    stream_time: float = 25.0
    """A stream ends after this long, and the client asks for the next."""
    stream_bytes: int = 4 * MiB
    """A stream ends after this many bytes (a proxy may buffer a response whole)."""
    poll_time: float = 20.0
    """A poll with nothing to carry ends after this long, with a heartbeat."""
    padding: int = 2 * KiB
    """Bytes of padding first on a stream, so that buffering proxies pass its start on."""


@dataclass(frozen=True)
class GatewayConfig:
    """
    The whole gateway.
    """

    listen: tuple[str, ...]
    services: tuple[ServiceConfig, ...]
    tls_listeners: tuple[TLSListener, ...] = ()
    realms: tuple[RealmConfig, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    handshake_timeout: float = 10.0
    max_connections: int = 10000
    max_connections_per_address: int = 256
    max_tunnels_per_user: int = 100
    handshake_rate_per_address: int = 100
    handshake_burst_per_address: int = 200
    health_path: str | None = "/healthz"
    refresh_path: str = "/tunnelgw/refresh"
    max_request_body: int = 64 * KiB
    drain_timeout: float = 10.0
    logins: LoginLimits = field(default_factory=LoginLimits)
    links: tuple[PoolConfig, ...] = ()
    """C{[links.NAME]}: pools of reverse links inner gateways dial in to."""
    reverse_links: tuple[ReverseLink, ...] = ()
    """C{[[gateway.reverse_links]]}: outer gateways to dial out to."""
    audit: str | None = None
    """C{[audit] path}: where the audit stream goes (C{"-"}: standard output); C{None}: nowhere."""
    metrics: MetricsConfig | None = None
    """C{[metrics]}: the Prometheus listener; C{None}: none."""
    cluster: ClusterConfig | None = None
    """C{[cluster]}: the engine shared with other instances; C{None}: this process alone."""
    admin: AdminConfig | None = None
    """C{[admin]}: the admin listener; C{None}: none."""
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    """C{[fallback]}: the fallback transport's bounds (services opt in with C{fallback = true})."""

    def realm(self, name: str) -> RealmConfig:
        for realm in self.realms:
            if realm.name == name:
                return realm
        raise KeyError(name)

    def policy(self, name: str | None) -> IAuthorizationPolicy | None:
        """
        The L{IAuthorizationPolicy} called C{name}, or C{None} for no name.
        """
        for policy in self.policies:
            if policy.name == name:
                return policy.policy
        return None

    def service_named(self, name: str) -> ServiceConfig | None:
        for service in self.services:
            if service.name == name:
                return service
        return None

    def policy_source(self, name: str | None) -> object:
        """The table of the policy called C{name} as the file had it (C{None} for none)."""
        for policy in self.policies:
            if policy.name == name:
                return policy.source
        return None

    def service_at(self, path: str) -> ServiceConfig | None:
        for service in self.services:
            if service.path == path:
                return service
        return None
