"""
Identity assertions between gateways: the outer gateway, having
authenticated a user, signs a short-lived JWT (pyjwt) that says who the
user is; the inner gateway's C{assertion} login module
(L{tunnelgw.security.modules.assertion}) verifies it.

Claims: C{iss} (the signing gateway's name), C{aud} (the inner gateway's),
C{sub} (the user), C{roles}, C{groups}, C{iat}, C{exp} (C{iat} + the
configured lifetime, seconds: the assertion is for admission only),
C{jti} (unique: an inner gateway accepts each once), C{gateways} (the
gateways traversed, outermost first, this one last), C{method} (how the
user authenticated at the edge) and C{session_expires} (when the user's own
credentials expire, if they do: the inner tunnel lives by it, so expiry at
the edge ends the session at every layer).

Sent in the C{Tunnelgw-Assertion} header of the inner upgrade.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt

from tunnelgw.security import Subject

__all__ = ["ASSERTION_HEADER", "AssertionSigner"]

ASSERTION_HEADER = "Tunnelgw-Assertion"


@dataclass(frozen=True)
class AssertionSigner:
    issuer: str
    audience: str
    key: Any
    algorithm: str
    lifetime: float

    def sign(self, subject: Subject, now: float) -> str:
        gateways = list(subject.attributes.get("gateways", ())) + [self.issuer]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "roles": sorted(subject.roles),
            "groups": sorted(subject.groups),
            "iat": int(now),
            "exp": int(now + self.lifetime) + 1,
            "jti": secrets.token_urlsafe(16),
            "gateways": gateways,
            "method": subject.attributes.get("method"),
        }
        if subject.user is not None:
            claims["sub"] = subject.user
        if subject.expires is not None:
            claims["session_expires"] = subject.expires
        return str(pyjwt.encode(claims, self.key, algorithm=self.algorithm))
