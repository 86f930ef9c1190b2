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

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from tunnelgw.config import GatewayConfig, ServiceConfig
from tunnelgw.interfaces import IAuthenticator
from tunnelgw.logs import Logger
from tunnelgw.security import Subject
from tunnelgw.security.callbacks import Callbacks
from tunnelgw.security.jaas import LoginContext, LoginFailed

__all__ = ["RealmAuthenticator"]


@implementer(IAuthenticator)
class RealmAuthenticator:
    log = Logger()

    def __init__(self, config: GatewayConfig) -> None:
        self._contexts = {
            realm.name: LoginContext(realm.name, realm.modules, realm.revalidate_interval)
            for realm in config.realms
        }
        self._challenges = {realm.name: realm.challenge for realm in config.realms}

    def login(self, request: Any, realm: str) -> defer.Deferred[Subject]:
        """
        Run C{realm}'s login on C{request}.

        @return: the subject, or a failure with L{Refusal} 401 carrying the
            realm's challenge.
        """
        from tunnelgw.web.pipeline import Refusal

        d = self._contexts[realm].login(Callbacks.from_request(request), request.conn_id)

        def failed(f: Failure) -> Subject:
            f.trap(LoginFailed)
            challenge = f'{self._challenges[realm]} realm="{realm}"'
            raise Refusal(401, "authentication required", {"WWW-Authenticate": challenge})

        def logged_in(subject: Subject) -> Subject:
            subject.attributes.setdefault("address", request.peer_host)
            subject.attributes["realm"] = realm
            return subject

        return d.addCallbacks(logged_in, failed)

    def authenticate(self, request: Any, service: ServiceConfig) -> defer.Deferred[Subject]:
        from tunnelgw.web.pipeline import Refusal

        def authorized(subject: Subject) -> Subject:
            if service.require_roles and not (service.require_roles & subject.roles):
                self.log.info(
                    "authorization {conn_id}: {principal} lacks the roles of {service}",
                    event="authorization",
                    decision="deny",
                    conn_id=request.conn_id,
                    principal=subject.principal,
                    service=service.name,
                    required=sorted(service.require_roles),
                    roles=sorted(subject.roles),
                )
                subject.logout()
                raise Refusal(403, "not allowed to use this service")
            return subject

        return self.login(request, service.realm).addCallback(authorized)
