"""
What a tunnel does for its user's session: authorize each operation
through the service's policy, live by the credentials' expiry, revalidate
them, and take refreshed ones.  Mixed into L{tunnelgw.tunnel.relay.Tunnel}.
"""

from __future__ import annotations

from typing import Any

from tunnelgw.errors import CloseCode
from tunnelgw.security import Subject
from tunnelgw.tunnel.timers import State, TunnelPart

__all__ = ["TunnelSession"]


class TunnelSession(TunnelPart):
    __slots__ = ()

    policy: Any
    _adapter: Any

    # TunnelTimers'
    _schedule: Any
    _cancel: Any

    # -- authorization ---------------------------------------------------------

    def permits(self, action: str, resource: str) -> bool:
        allowed = self.policy is not None and self.policy.permits(
            self.subject, self.service.name, action, resource
        )
        if not allowed:
            self.log.info(
                "tunnel {conn_id}: {principal} may not {action} {resource}",
                event="authorization",
                decision="deny",
                conn_id=self.conn_id,
                transport=self.via,
                principal=self.subject.principal,
                service=self.service.name,
                action=action,
                resource=resource,
            )
        return allowed

    # -- credentials ----------------------------------------------------------

    def refresh(self, subject: Subject) -> None:
        """
        The client proved its credentials again (same user): the tunnel
        now lives by the new subject's expiry and login session.
        """
        if self._state is not State.OPEN:
            subject.logout()  # nothing will end this login but us
            return
        old = self.subject.session
        self.subject = subject
        if old is not None and old is not subject.session:
            old.logout()
        self._schedule_expiry()
        self.log.info(
            "tunnel {conn_id} refreshed by {principal}; expires {expires}",
            event="tunnel_refresh",
            conn_id=self.conn_id,
            transport=self.via,
            principal=subject.principal,
            expires=subject.expires,
        )

    def _schedule_expiry(self) -> None:
        expires = self.subject.expires
        if expires is None:
            self._cancel("expiry")
        else:
            self._schedule("expiry", max(0.0, expires - self.reactor.seconds()), self._expired)

    def end(self, code: int, reason: str) -> None:
        """
        The gateway ends the tunnel on its own (a reload no longer allows
        it; its credentials expired or were revoked): the adapter says so
        in its protocol's words if it can (its optional C{end}), then the
        WebSocket closes with C{code}.
        """
        if self._state is not State.OPEN:
            return
        ending = getattr(self._adapter, "end", None)
        if ending is not None:
            ending(code, reason)
        self.fail(code, reason)

    def revoked(self, code: int, reason: str) -> str:
        """
        A revocation names this tunnel: its adapter may keep it in a lesser
        form (its optional C{downgrade()}: RFB's view-only) and the answer
        is C{"downgraded"}; else it ends (L{end}), C{"closed"}.
        """
        downgrade = getattr(self._adapter, "downgrade", None)
        if self._state is State.OPEN and downgrade is not None and downgrade():
            return "downgraded"
        self.end(code, reason)
        return "closed"

    def _expired(self) -> None:
        self.end(CloseCode.POLICY_VIOLATION, "credentials expired")

    def _revalidate(self) -> None:
        session = self.subject.session
        assert session is not None
        d = session.revalidate(self.subject)

        def checked(valid: bool) -> None:
            if self._state is not State.OPEN:
                return
            if valid:
                self._schedule("revalidate", session.revalidate_interval, self._revalidate)
            else:
                self.log.info(
                    "tunnel {conn_id}: credentials of {principal} revoked",
                    event="tunnel_revoked",
                    by="revalidation",
                    conn_id=self.conn_id,
                    transport=self.via,
                    principal=self.subject.principal,
                )
                self.end(CloseCode.POLICY_VIOLATION, "credentials revoked")

        d.addCallback(checked)
