"""
The admission pipeline: one place where every transport (WebSocket
upgrade today; fallback transport and gateway links later) is admitted or
refused, in this order:

  1. limits       connection caps                       503 / 429
  2. transport    the transport's own syntax (upgrade)  400 / 405 / 426 / 505
  3. origin       exact allow-list per service          403
  4. subprotocol  one the client offered and we offer   400
  5. authenticate IAuthenticator                        401 / 403
  6. upstream     connect the backend before accepting  502 / 504

Each decision is logged once with who (connection id, peer, principal),
what (service, subprotocol) and why (status, reason).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

import tunnelgw.registry as registry
from tunnelgw.admission.checks import check_limits, check_origin, choose_subprotocol
from tunnelgw.admission.request import Admission, AdmissionRequest
from tunnelgw.config.model import GatewayConfig, ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAuthenticator, ILimitStore, ISessionPolicy
from tunnelgw.limits import Places, hold
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.tunnel.legs import BackendLeg
from tunnelgw.upstream import endpoint_for
from tunnelgw.upstream.kinds import UpstreamRequest

__all__ = ["AdmissionPipeline"]


def _then(d: defer.Deferred[Any] | None, step: Callable[[], Any]) -> defer.Deferred[Any] | None:
    """C{step()} now if nothing is pending, else once C{d} has fired."""
    if d is None:
        result = step()
        return result if isinstance(result, defer.Deferred) else None
    return d.addCallback(lambda _: step())


def _timed_out(result: Any, timeout: float) -> Any:
    """
    A connect our timer cancelled failed with a timeout, whatever its
    endpoint says of a cancelled connect (Twisted's: C{ConnectingCancelledError},
    which otherwise means the client went away).
    """
    if isinstance(result, Failure):
        raise defer.TimeoutError(f"no connection within {timeout:g}s")
    return result


class AdmissionPipeline:
    """
    Admits or refuses requests for services; see the module docstring.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorCore,
        authenticator: IAuthenticator,
        endpoint_for: Callable[[IReactorCore, str, float], IStreamClientEndpoint] = endpoint_for,
        links: Mapping[str, Any] | None = None,
        store: ILimitStore | None = None,
        gateway: GatewayConfig | None = None,
    ) -> None:
        self._reactor = reactor
        self._authenticator = authenticator
        self._endpoint_for = endpoint_for
        self.links: Mapping[str, Any] = links or {}
        """The L{tunnelgw.upstream.links.LinkPool}s of C{reverse:NAME} upstreams, by name."""
        self._store = store
        """Where the handshake rates and the users' tunnels are counted (no limits without one)."""
        self._gateway = gateway
        self.draining = False
        """Set when the gateway drains: every request is refused with 503."""
        self.engine: Any = None
        """The cluster engine (L{tunnelgw.cluster.engine}): may admissions go on, and whom revocations name."""

    def admit(
        self,
        request: AdmissionRequest,
        service: ServiceConfig,
        check_transport: Callable[[AdmissionRequest], None],
    ) -> defer.Deferred[Admission]:
        """
        Run the pipeline.

        @return: a Deferred firing with an L{Admission} (logged as accepted by
            the caller once the transport is handed over) or failing with
            L{Refusal} (already logged).
        """
        # Plain calls and callbacks, not inlineCallbacks: the checks and
        # most logins answer at once, and a handshake is short enough that
        # a coroutine's machinery would be a tenth of its cost.  Cancelling
        # the returned Deferred cancels the step it waits on (Twisted
        # forwards cancel() to a chained Deferred).
        try:
            if self.draining:
                raise Refusal(503, "the gateway is draining", {"Retry-After": "5"})
            if self.engine is not None:
                self.engine.admitting()
            check_limits(request)
            self._check_rate(request)
            check_transport(request)
            origin = check_origin(request, service)
            subprotocol = choose_subprotocol(request.subprotocols, service)
            subject = self._authenticator.authenticate(request, service)
            if isinstance(subject, defer.Deferred):
                d: defer.Deferred[Any] = subject.addCallback(
                    self._upstream, request, service, subprotocol, origin
                )
            else:
                admitted = self._upstream(subject, request, service, subprotocol, origin)
                d = admitted if isinstance(admitted, defer.Deferred) else defer.succeed(admitted)
        except Exception:
            d = defer.fail()
        d.addErrback(self._refused, request, service)
        return d

    def _upstream(
        self,
        subject: Subject,
        request: AdmissionRequest,
        service: ServiceConfig,
        subprotocol: str | None,
        origin: str | None = None,
    ) -> Admission | defer.Deferred[Admission]:
        # logged in: if no tunnel comes of it, nothing else will end the login
        admission: Admission | None = None
        places: Places | None = None
        try:
            self._check_revoked(subject, request)
            factory = registry.adapters()[service.adapter]
            places = self._hold_places(subject, service, request)
            admission = Admission(
                request, service, subprotocol, subject, factory, places=places, origin=origin
            )
            admitted = admission
            d = self._hold_shared(admitted, request)
            d = _then(d, lambda: self._decide_into(admitted, service, subject, subprotocol))
            if factory.needs_upstream:
                d = _then(d, lambda: self._connect(service, subject, subprotocol, request))
            if d is None:
                return admission
        except Exception:
            held = admission.places if admission is not None else places
            if held is not None:
                held.release()
            subject.logout()
            raise

        def connected(backend: BackendLeg | None) -> Admission:
            admitted.backend = backend
            return admitted

        def not_connected(f: Failure) -> Failure:
            if admitted.places is not None:
                admitted.places.release()
            subject.logout()
            return f

        return d.addCallbacks(connected, not_connected)

    def _decide_into(
        self, admission: Admission, service: ServiceConfig, subject: Subject, subprotocol: str | None
    ) -> defer.Deferred[None] | None:
        decided = self._decide(service, subject, subprotocol)
        if decided is None:
            return None

        def chosen(policy: Any) -> None:
            admission.policy = policy

        return decided.addCallback(chosen)

    def _hold_shared(self, admission: Admission, request: AdmissionRequest) -> defer.Deferred[None] | None:
        """
        The places the tunnel holds here, held across instances too when an
        engine shares them (L{tunnelgw.cluster.engine}).

        @return: C{None} when nothing is shared; else a Deferred failing
            with a L{Refusal} (429) when a cap is reached elsewhere.
        """
        places, engine = admission.places, self.engine
        if places is None or engine is None:
            return None
        shared = engine.hold(places.wanted, request.conn_id)
        if shared is None:
            return None

        def held(lease: Any) -> None:
            if lease is None:
                self.log.info(
                    "tunnel cap {conn_id}: {principal} has all the tunnels allowed, across instances",
                    event="tunnel_cap",
                    conn_id=request.conn_id,
                    transport=request.transport,
                    principal=admission.subject.principal,
                    service=admission.service.name,
                    shared=True,
                )
                raise Refusal(429, "too many tunnels open for this user", {"Retry-After": "5"})
            places.also(lease)

        return shared.addCallback(held)

    def _decide(
        self, service: ServiceConfig, subject: Subject, subprotocol: str | None
    ) -> defer.Deferred[Any] | None:
        """
        The decision of the service's policy for this tunnel when it
        decides per session (L{ISessionPolicy}): a Deferred firing with the
        tunnel's policy, failing with a L{Refusal} (403 as the policy
        answered; 503 when it failed or did not answer within the service's
        C{connect_timeout}).  C{None} when the policy decides per operation
        only.
        """
        gateway = self._gateway
        policy = gateway.policy(service.policy) if gateway is not None else None
        if not ISessionPolicy.providedBy(policy):
            return None
        timeout = service.limits.connect_timeout
        d = defer.maybeDeferred(policy.start_session, subject, service, subprotocol, self._reactor)
        d.addTimeout(timeout, self._reactor)  # type: ignore[arg-type]

        def failed(f: Failure) -> Failure:
            if f.check(Refusal, defer.CancelledError) and not f.check(defer.TimeoutError):
                return f
            self.log.warn(
                "the policy {policy} of {service} did not decide: {reason}",
                event="policy_error",
                policy=service.policy,
                service=service.name,
                reason=f.getErrorMessage(),
            )
            raise Refusal(503, "the authorization policy did not decide", {"Retry-After": "5"})

        return d.addErrback(failed)

    def _check_revoked(self, subject: Subject, request: AdmissionRequest) -> None:
        """
        @raise Refusal: (403) a revocation in force names the subject.
        """
        revocation = self.engine.revoking(subject) if self.engine is not None else None
        if revocation is not None:
            self.log.info(
                "authorization {conn_id}: {principal} is revoked ({kind} {value})",
                event="authorization",
                decision="deny",
                conn_id=request.conn_id,
                transport=request.transport,
                principal=subject.principal,
                kind=revocation.kind,
                value=revocation.value,
                revocation=revocation.id,
            )
            raise Refusal(403, "revoked")

    def _check_rate(self, request: AdmissionRequest) -> None:
        """
        @raise Refusal: (429) the client's address opens handshakes faster
            than C{gateway.handshake_rate_per_address} (a token bucket of
            C{handshake_burst_per_address}).
        """
        gateway, store = self._gateway, self._store
        if gateway is None or store is None or gateway.handshake_rate_per_address == 0:
            return
        wait = store.take(
            f"handshakes:{request.peer_host}",
            gateway.handshake_rate_per_address,
            gateway.handshake_burst_per_address,
        )
        if wait > 0:
            raise Refusal(
                429, "too many handshakes from your address", {"Retry-After": str(max(1, math.ceil(wait)))}
            )

    def _hold_places(
        self, subject: Subject, service: ServiceConfig, request: AdmissionRequest
    ) -> Places | None:
        """
        The places of the tunnel to be against its user's caps
        (C{gateway.max_tunnels_per_user}, the service's
        C{limits.max_tunnels_per_user}); none for an anonymous subject,
        bounded by its address's connections instead.

        @raise Refusal: (429) the user has that many tunnels already.
        """
        gateway, store = self._gateway, self._store
        if gateway is None or store is None or subject.attributes.get("method") == "anonymous":
            return None
        user = subject.user
        if user is None:
            return None
        overall, here = gateway.max_tunnels_per_user, service.limits.max_tunnels_per_user
        places = hold(store, ((f"tunnels:{user}", overall), (f"tunnels:{service.name}:{user}", here)))
        if places is None:
            self.log.info(
                "tunnel cap {conn_id}: {principal} has {held} tunnels open ({service}: {held_here})",
                event="tunnel_cap",
                conn_id=request.conn_id,
                transport=request.transport,
                principal=user,
                service=service.name,
                held=store.held(f"tunnels:{user}"),
                held_here=store.held(f"tunnels:{service.name}:{user}"),
                limit=overall,
                service_limit=here,
            )
            raise Refusal(429, "too many tunnels open for this user", {"Retry-After": "5"})
        return places

    def _connect(
        self, service: ServiceConfig, subject: Subject, subprotocol: str | None, request: AdmissionRequest
    ) -> defer.Deferred[BackendLeg]:
        assert service.upstream is not None
        timeout = service.limits.connect_timeout
        kind = registry.upstream_kind(service.upstream)
        d: defer.Deferred[Any] = kind.connect(
            UpstreamRequest(
                self._reactor, service, subject, subprotocol, request, self.links, self._endpoint_for
            )
        )
        if not kind.bounds_itself:
            assert IReactorTime.providedBy(self._reactor)
            d.addTimeout(timeout, self._reactor, onTimeoutCancel=_timed_out)  # type: ignore[arg-type]

        def failed(f: Failure) -> Failure:
            if f.check(defer.CancelledError, error.ConnectingCancelledError):
                # the client went away (Twisted's endpoints say a cancelled
                # connect with the latter): not the backend's fault
                return Failure(defer.CancelledError())
            if f.check(defer.TimeoutError, error.TimeoutError):
                raise Refusal(504, f"the backend did not answer within {timeout:g}s")
            if f.check(Refusal):
                return f
            raise Refusal(502, f"the backend refused the connection: {f.getErrorMessage()}")

        d.addErrback(failed)
        return d

    def _refused(self, f: Failure, request: AdmissionRequest, service: ServiceConfig) -> Failure:
        if f.check(defer.CancelledError):
            # 499, as web servers log a request its client abandoned
            self.log_decision(request, service.name, None, "abandon", 499, "the client went away")
            return f
        if not f.check(Refusal):
            self.log.failure(
                "admission error for {conn_id}", f, conn_id=request.conn_id, event="admission_error"
            )
            f = Failure(Refusal(500, "internal error"))
        refusal = cast(Refusal, f.value)
        self.log_decision(request, service.name, None, "refuse", refusal.status, refusal.reason)
        return f

    def log_decision(
        self,
        request: AdmissionRequest,
        service: str | None,
        subprotocol: str | None,
        decision: str,
        status: int,
        reason: str,
        principal: str | None = None,
        elapsed: float | None = None,
    ) -> None:
        """
        Log one decision (C{event=admission}); C{elapsed}: seconds from the
        request head to an accepted upgrade's decision.
        """
        self.log.info(
            "admission {decision} {conn_id} from {peer} for {path}: {status} {reason}",
            event="admission",
            decision=decision,
            conn_id=request.conn_id,
            peer=request.peer_host,
            path=request.path,
            transport=request.transport,
            service=service,
            subprotocol=subprotocol,
            principal=principal,
            status=status,
            reason=reason,
            elapsed=elapsed,
        )
