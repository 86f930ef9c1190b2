"""
Every zope.interface of tunnelgw, documented.

Implementations declare C{@implementer(...)} and each has a
C{verifyObject} test.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

__all__ = [
    "IAdapter",
    "IAuthorizationPolicy",
    "IPolicyFactory",
    "ISessionPolicy",
    "ILoginModule",
    "ILoginModuleFactory",
    "IAdapterFactory",
    "IUpstreamKind",
    "IAuthenticator",
    "ITunnel",
    "ILimitStore",
]


class ITunnel(Interface):
    """
    What an adapter may do with the tunnel it serves: the relay between the
    client's WebSocket and the backend's byte stream.  The tunnel owns flow
    control and the closing rules; adapters only translate.
    """

    service = Attribute("The L{tunnelgw.config.model.ServiceConfig} of this tunnel.")
    subject = Attribute("The authenticated L{tunnelgw.security.Subject}.")
    subprotocol = Attribute("The negotiated subprotocol, or C{None}.")
    conn_id = Attribute("The connection id used in every log event of this tunnel.")
    via = Attribute(
        'How the client came: C{"websocket"} or C{"fallback"} (the C{transport} of its log events).'
    )

    def send_client(payload: bytes, is_binary: bool) -> None:
        """
        Send one WebSocket message to the client.
        """

    def send_backend(data: bytes) -> None:
        """
        Write bytes to the backend connection.
        """

    def send_backend_message(payload: bytes, is_binary: bool) -> None:
        """
        Send one WebSocket message to a message-oriented backend (a chained
        gateway); messages from it reach the client as they are.
        """

    def fail(code: int, reason: str) -> None:
        """
        End the tunnel: close the WebSocket with C{code} (a RFC 6455 close
        code such as 1003 or 1008) and C{reason}, log why, and close the
        backend after what it was already sent.
        """

    def start_backend_tls(creator: Any) -> None:
        """
        Start TLS on the backend connection now (a protocol's STARTTLS),
        with C{creator} (an C{IOpenSSLClientConnectionCreator}, such as
        C{optionsForClientTLS}, which verifies the server's certificate and
        name).  What is sent to the backend afterwards is encrypted; a
        failed verification loses the backend connection (1011).
        """

    def permits(action: str, resource: str) -> bool:
        """
        May this tunnel's subject perform C{action} on C{resource}?  Asks
        the service's policy; without one, nothing is permitted (deny by
        default).  A denial is logged as an authorization event.
        """


class IAdapter(Interface):
    """
    The protocol logic of one tunnel: it turns the client's messages into
    backend bytes and the backend's bytes into client messages, and may
    inspect, refuse or rewrite either (deep packet inspection).

    Optional, read with C{getattr}: C{end(code, reason)}, called when the
    gateway ends the tunnel on its own (a reload no longer allows it, its
    credentials expired or were revoked) to tell the client in the
    protocol's words (a STOMP C{ERROR}, an XMPP stream error); the tunnel
    then closes with C{code}.
    """

    def client_message(payload: bytes, is_binary: bool) -> None:
        """
        One complete WebSocket message arrived from the client (already
        unmasked, UTF-8 validated when text, within the size limits).
        """

    def backend_data(data: bytes) -> None:
        """
        Bytes arrived from the backend, in order, cut anywhere.
        """


class IAdapterFactory(Interface):
    """
    A named kind of adapter (C{raw}, C{echo}, ...), chosen per service by
    the configuration key C{adapter}.

    Two optional members, read with C{getattr}: C{carries} (C{"messages"}
    if the adapter relays WebSocket messages to an upstream kind that
    carries them, as C{chain} does; otherwise, and when absent,
    C{"bytes"}), and C{check_upstream(description, options, key)}, which
    refuses at start-up (L{tunnelgw.config.ConfigError}, naming C{key}) an
    upstream these parsed options do not go with.
    """

    name = Attribute("The name used in the configuration (C{str}).")
    needs_upstream = Attribute(
        "C{True} when the tunnel connects to a backend before the upgrade; "
        "C{False} when the adapter answers by itself (C{echo})."
    )
    subprotocols = Attribute(
        "The subprotocols the adapter speaks, most preferred first (a C{tuple} of "
        "C{str}); a service's C{subprotocols} must be among them and are offered in "
        "this order.  C{None}: the adapter carries any subprotocol."
    )

    def parse_options(options: dict[str, Any], key: str) -> Any:
        """
        Validate the adapter's own table of a service (C{[services.NAME.ADAPTER]},
        an empty dict when absent) at start-up.

        @param key: the dotted configuration key of the table, for errors.
        @return: the parsed options, found by adapters as
            C{tunnel.service.adapter_options}.
        @raise tunnelgw.config.ConfigError: naming the key and why.
        """

    def needs_policy(options: Any) -> bool:
        """
        Does the adapter, with these parsed options, authorize operations
        through the service's policy (C{ITunnel.permits})?  Then a service
        without one is a configuration error rather than a service that
        refuses everything.
        """

    def build(tunnel: ITunnel) -> IAdapter:
        """
        Create the adapter of one tunnel.
        """


class IUpstreamKind(Interface):
    """
    One kind of upstream description (C{tcp:...}, C{wss://...}): checked at
    start-up, connected per admitted client (L{tunnelgw.upstream.kinds};
    others as plugins, L{tunnelgw.registry}).
    """

    name = Attribute("The kind's name (C{str}): unique among kinds, used in messages.")
    carries = Attribute(
        'C{"bytes"} (a byte stream: every adapter but C{chain}) or C{"messages"}'
        " (WebSocket messages as they are: C{chain}); must match the adapter's."
    )
    bounds_itself = Attribute(
        "C{True} if what C{connect} returns fails by itself within a bound; C{False}"
        " and the pipeline fails it after the service's C{limits.connect_timeout}."
    )

    def claims(description: str) -> bool:
        """Whether C{description} is of this kind (by its scheme or prefix)."""

    def check(description: str) -> None:
        """
        Validate C{description} at start-up.

        @raise ValueError: why it cannot be connected.
        """

    def connect(upstream: Any) -> Any:
        """
        Connect one admitted client's backend.

        @param upstream: a L{tunnelgw.upstream.kinds.UpstreamRequest} (reactor,
            service, subject, subprotocol, request).
        @return: a Deferred firing with the backend leg
            (L{tunnelgw.tunnel.legs.BackendLeg}; for a byte stream,
            L{tunnelgw.upstream.kinds.connect_stream} makes one from an
            endpoint), or failing with a L{tunnelgw.errors.Refusal} or a
            connection error (the pipeline answers 502, or 504 on a timeout).
        """


class IAuthenticator(Interface):
    """
    The authentication step of the admission pipeline: turn what the
    upgrade request carries into a subject, or refuse.
    """

    def authenticate(request: Any, service: Any) -> Any:
        """
        Authenticate an L{tunnelgw.admission.pipeline.AdmissionRequest} for a
        L{tunnelgw.config.model.ServiceConfig}.

        @return: the authenticated L{tunnelgw.security.Subject} (at once:
            a Deferred is a noticeable part of a handshake), or a Deferred
            of it.
        @raise tunnelgw.errors.Refusal: (401 or 403), or the Deferred fails with it.
        """


class ILoginModule(Interface):
    """
    One step of a login, after JAAS's C{LoginModule}: the login context
    calls C{initialize}, then C{login}; then C{commit} on every module it
    ran if the whole login succeeded, or C{abort} if it failed.
    """

    def initialize(subject: Any, callbacks: Any, shared_state: dict[str, Any], options: Any) -> None:
        """
        Prepare for one login.

        @param subject: the L{tunnelgw.security.Subject} being built; add
            principals to it in C{commit}, not in C{login}.
        @param callbacks: the L{tunnelgw.security.callbacks.Callbacks} of the
            request (credentials, cookies, certificate, address, origin).
        @param shared_state: a dict shared by the modules of this login.
        @param options: what this module's factory returned from
            C{parse_config} for its configured options.
        """

    def login() -> Any:
        """
        Authenticate.

        @return: a Deferred (or a value) of C{True} (this module
            authenticated the request) or C{False} (this module does not
            apply: it is ignored); fail with
            L{tunnelgw.security.jaas.LoginFailed} to refuse.
        """

    def commit() -> Any:
        """
        The whole login succeeded: add this module's principals and
        attributes to the subject if its own login succeeded.  May return a
        Deferred.
        """

    def abort() -> Any:
        """
        The whole login failed: forget any state.  May return a Deferred.
        """

    def logout() -> Any:
        """
        The login ended: its tunnel closed, or no tunnel came of it (refused
        after the login, backend unreachable, client gone).  Release what
        this module holds for the subject.  Called once per committed login.
        """

    def revalidate(subject: Any) -> Any:
        """
        Is the subject still authorized?  Return (a Deferred of) C{True} or
        C{False}; modules without a notion of revocation return C{True}.
        """


class ILoginModuleFactory(Interface):
    """
    A named kind of login module (C{password_file}, C{jwt}, ...), chosen in
    a realm's configuration by C{module = "name"}.
    """

    name = Attribute("The name used in the configuration (C{str}).")

    def parse_config(options: dict[str, Any], key: str) -> Any:
        """
        Validate the module's configured C{options} at start-up.

        @param key: the dotted configuration key of the options, for error
            messages.
        @return: the parsed options, passed to each module's C{initialize}.
        @raise tunnelgw.config.ConfigError: naming the key and why.
        """

    def create() -> ILoginModule:
        """
        A fresh module for one login.
        """


class IAuthorizationPolicy(Interface):
    """
    Fine-grained authorization inside a protocol (STOMP destinations, XMPP
    addresses, RFB input), asked by adapters for each operation.
    """

    def permits(subject: Any, service: str, action: str, resource: str) -> bool:
        """
        May C{subject} perform C{action} (C{send}, C{subscribe}, C{input}...)
        on C{resource} (a destination, an address...) in C{service}?
        """


class ISessionPolicy(Interface):
    """
    A policy (beside L{IAuthorizationPolicy}) that decides once per tunnel,
    at its start and possibly asynchronously (a remote decision point), the
    policy that answers the tunnel's per-operation checks synchronously.
    """

    def start_session(subject: Any, service: Any, subprotocol: str | None, reactor: Any) -> Any:
        """
        Decide for one admitted client, after its login and the service's
        role check, before its backend is connected; and for each open
        tunnel again when a reload changes the service's policy.

        @param service: the L{tunnelgw.config.model.ServiceConfig}.
        @param reactor: the gateway's reactor (its clock; its connections).
        @return: the tunnel's L{IAuthorizationPolicy} (or a Deferred of it);
            a L{tunnelgw.errors.Refusal} (403) refuses the tunnel; a failure
            or no answer within C{limits.connect_timeout} is a 503.
        """


class IPolicyFactory(Interface):
    """
    A named kind of authorization policy (C{rules}, or a plugin's), chosen
    in configuration by C{[policies.NAME] policy = "kind"}.
    """

    name = Attribute("The name used in the configuration (C{str}).")

    def parse_config(options: dict[str, Any], key: str) -> IAuthorizationPolicy:
        """
        Build the policy from the keys of its configuration table (all but
        C{policy}).

        @raise tunnelgw.config.ConfigError: naming the key and why.
        """


class ILimitStore(Interface):
    """
    Where the gateway's abuse limits keep their counts, by key (C{"addr:"}
    plus a client address, C{"user:"} plus a user name, ...): failures in
    a time window (login throttling), token buckets (rates) and held
    places (connection and tunnel caps).

    Calls answer at once, without a Deferred: they sit on the path of every
    handshake.  The in-memory store (L{tunnelgw.limits.MemoryLimitStore})
    is one process's; a store shared by several instances answers from its
    own view and brings it up to date with the others asynchronously.
    Every store bounds the keys it keeps.
    """

    def hit(key: str, window: float) -> tuple[int, float]:
        """
        Count one event for C{key} in its current window of C{window}
        seconds (a window starts at the key's first event).

        @return: the count in the window, this event included, and the
            seconds until the window ends.
        """

    def peek(key: str) -> tuple[int, float]:
        """
        The count of C{key}'s current window and the seconds until it ends;
        C{(0, 0.0)} if it has none.
        """

    def refund(key: str) -> None:
        """Take back one event of C{key}'s window (counted in advance, it went well)."""

    def take(key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """
        Take C{cost} tokens from C{key}'s bucket, which holds at most
        C{burst} tokens and refills at C{rate} per second.

        @return: C{0.0} if they were there (and are taken); otherwise the
            seconds until they would be (nothing is taken).
        """

    def acquire(key: str, limit: int) -> bool:
        """
        Hold one of C{limit} places of C{key}.

        @return: C{False} (nothing held) if all C{limit} are held already.
        """

    def release(key: str) -> None:
        """Give back a place of C{key} held with L{acquire}."""

    def held(key: str) -> int:
        """How many places of C{key} are held."""
