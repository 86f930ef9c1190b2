"""
Who is on the other end of a tunnel: the L{Subject}, its principals, and
the pass-through authenticator for code that needs none.

Authentication proper (login modules with JAAS control flags, realms) is in
L{tunnelgw.security.jaas} and L{tunnelgw.security.realm}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zope.interface import implementer

from tunnelgw.interfaces import IAuthenticator

__all__ = ["Principal", "Subject", "PassThroughAuthenticator"]


@dataclass(frozen=True, slots=True)
class Principal:
    """
    One identity of a subject: C{kind} is C{user}, C{role} or C{group}.
    """

    kind: str
    name: str


@dataclass(slots=True)
class Subject:
    """
    The authenticated party of a tunnel: principals (one user, roles,
    groups) and attributes (authentication method, client address,
    certificate subject, expiry, gateways traversed...).
    """

    principals: set[Principal] = field(default_factory=set)
    attributes: dict[str, Any] = field(default_factory=dict)
    session: Any = field(default=None, repr=False, compare=False)
    """The L{tunnelgw.security.jaas.LoginSession} that produced this subject, if any."""

    @classmethod
    def of(cls, user: str | None = None, roles: Any = (), **attributes: Any) -> Subject:
        subject = cls(attributes=dict(attributes))
        if user is not None:
            subject.principals.add(Principal("user", user))
        for role in roles:
            subject.principals.add(Principal("role", role))
        return subject

    def names(self, kind: str) -> frozenset[str]:
        return frozenset([p.name for p in self.principals if p.kind == kind])

    @property
    def user(self) -> str | None:
        return min(self.names("user"), default=None)

    @property
    def roles(self) -> frozenset[str]:
        return self.names("role")

    @property
    def groups(self) -> frozenset[str]:
        return self.names("group")

    @property
    def expires(self) -> float | None:
        """
        When the credentials stop being valid (seconds since the epoch), if
        they say so.
        """
        value = self.attributes.get("expires")
        return float(value) if value is not None else None

    def logout(self) -> None:
        """
        End the login session that produced this subject, if any: its
        modules release what they hold for it.  Once: later calls do
        nothing.
        """
        if self.session is not None:
            self.session.logout()

    @property
    def principal(self) -> str:
        """
        The name to log: the user, or C{anonymous}.
        """
        user = self.user
        return user if user is not None else "anonymous"


@implementer(IAuthenticator)
class PassThroughAuthenticator:
    """
    Admits everyone as an anonymous subject carrying the client address.
    For tests and embedding; configured gateways use realms.
    """

    def authenticate(self, request: Any, service: Any) -> Subject:
        return Subject.of(method="none", address=request.peer_host)
