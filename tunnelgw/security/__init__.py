"""
Who is on the other end of a tunnel.

This module holds the L{Subject} every tunnel carries and the pass-through
authenticator used until a service configures login modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from tunnelgw.interfaces import IAuthenticator

__all__ = ["Subject", "PassThroughAuthenticator"]


@dataclass
class Subject:
    """
    The authenticated party of a tunnel: principals (user, roles, groups)
    and attributes (authentication method, client address, expiry...).
    """

    user: str | None = None
    roles: frozenset[str] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def principal(self) -> str:
        """
        The name to log: the user, or C{anonymous}.
        """
        return self.user if self.user is not None else "anonymous"


@implementer(IAuthenticator)
class PassThroughAuthenticator:
    """
    Admits everyone as an anonymous subject carrying the client address.
    """

    def authenticate(self, request: Any, service: Any) -> defer.Deferred[Subject]:
        return defer.succeed(Subject(attributes={"method": "none", "address": request.peer_host}))
