"""
The authentication step of the admission pipeline: the service's realm
runs its login context on the request's callbacks.

  - the login fails                    → 401 with C{WWW-Authenticate} for the realm
  - the subject has none of the
    service's C{require_roles}         → 403
  - otherwise                          → the subject goes on with the tunnel

The refusal's text never says which module refused or why (that is in the
audit log, for operators): a client learns only that it must authenticate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw.config.model import GatewayConfig, ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAuthenticator
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.security.callbacks import Callbacks
from tunnelgw.security.jaas import LoginContext, LoginFailed
from tunnelgw.security.throttle import NOTHING, LoginGuard, LoginRefused

__all__ = ["RealmAuthenticator"]


@implementer(IAuthenticator)
class RealmAuthenticator:
    log = Logger()

    def __init__(self, config: GatewayConfig, guard: LoginGuard | None = None, reactor: Any = None) -> None:
        self._guard = guard
        self._reactor = reactor
        """Handed to every module (L{Callbacks.reactor})."""
        self.contexts = {
            realm.name: LoginContext(realm.name, realm.modules, realm.revalidate_interval)
            for realm in config.realms
        }
        self._challenges = {realm.name: realm.challenge for realm in config.realms}

    def authenticate(self, request: Any, service: ServiceConfig) -> Subject | defer.Deferred[Subject]:
        """
        See L{IAuthenticator.authenticate}: the subject at once when the
        realm's modules answered at once.
        """
        realm = service.realm
        callbacks = Callbacks.from_request(request, self._reactor)
        guard = self._guard
        attempt = NOTHING
        try:
            if guard is not None:
                attempt = guard.before(request, callbacks)
                if attempt.familiar:
                    callbacks = dataclasses.replace(callbacks, familiar=True)
            subject = self.contexts[realm].attempt(callbacks, request.conn_id)
            if isinstance(subject, defer.Deferred) and guard is not None:
                subject = guard.pending_login(subject, request, attempt)
        except LoginFailed:
            raise self._refusal(realm) from None
        except LoginRefused as e:
            raise self._refused(e) from None
        if isinstance(subject, defer.Deferred):
            return subject.addCallbacks(
                self._logged_in, self._failed, callbackArgs=(request, realm), errbackArgs=(realm,)
            ).addCallback(self._authorized, request, service)
        if guard is not None:
            guard.succeeded(attempt, subject)
        return self._authorized(self._logged_in(subject, request, realm), request, service)

    def _logged_in(self, subject: Subject, request: Any, realm: str) -> Subject:
        subject.attributes.setdefault("address", request.peer_host)
        subject.attributes["realm"] = realm
        return subject

    def _failed(self, f: Failure, realm: str) -> Subject:
        f.trap(LoginFailed)
        raise self._refusal(realm)

    def _refusal(self, realm: str) -> Exception:
        challenge = f'{self._challenges[realm]} realm="{realm}"'
        return Refusal(401, "authentication required", {"WWW-Authenticate": challenge})

    def _refused(self, e: LoginRefused) -> Exception:
        return Refusal(e.status, e.reason, {"Retry-After": str(e.retry_after)})

    def _authorized(self, subject: Subject, request: Any, service: ServiceConfig) -> Subject:
        if service.require_roles and not (service.require_roles & subject.roles):
            self.log.info(
                "authorization {conn_id}: {principal} lacks the roles of {service}",
                event="authorization",
                decision="deny",
                conn_id=request.conn_id,
                transport=request.transport,
                principal=subject.principal,
                service=service.name,
                required=sorted(service.require_roles),
                roles=sorted(subject.roles),
            )
            subject.logout()
            raise Refusal(403, "not allowed to use this service")
        return subject
