"""
C{assertion}: the identity an outer gateway asserts (a signed, short-lived
JWT in the C{Tunnelgw-Assertion} header; see L{tunnelgw.security.signer}),
for an inner gateway behind it.  The user authenticated once, at the edge;
the inner gateway authorizes again with its own realm roles and policies.

Options: C{audience} (required: this gateway's name, as the outer signs
it), C{trusted} (required: one table per outer gateway: C{issuer}, its
C{key_file} (its PEM public key, or keys while it moves to a new one:
L{tunnelgw.security.keys}) and optionally C{certificate_subject}, the
RFC 4514 subject its mTLS client certificate must have on the link),
C{algorithms} (default C{["ES256"]}), C{leeway} (seconds of clock skew,
default 5), C{max_lifetime} (the longest C{exp} - C{iat} accepted, default
60 s).

Each assertion is accepted once (its C{jti} is remembered until it
expires): a copied header cannot be replayed.  The tunnel's expiry is the
user's own (C{session_expires}), not the assertion's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt

from zope.interface import implementer

from tunnelgw.config.values import (
    ConfigError,
    Table,
    positive_seconds_value,
    seconds_value,
    string_value,
    strings_value,
)
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.keys import decode, public_keys
from tunnelgw.security.modules.base import BaseModule, check_numeric_dates

__all__ = ["AssertionFactory", "AssertionOptions", "TrustedGateway"]

MAX_REMEMBERED = 100_000


@dataclass(frozen=True)
class TrustedGateway:
    issuer: str
    keys: tuple[Any, ...]
    certificate_subject: str | None


@dataclass(frozen=True)
class AssertionOptions:
    audience: str
    trusted: dict[str, TrustedGateway]
    algorithms: tuple[str, ...]
    leeway: float
    max_lifetime: float
    seen: OrderedDict[str, float] = field(default_factory=OrderedDict, compare=False)

    def remember(self, jti: str, expires: float, now: float) -> bool:
        """
        C{False} if C{jti} was seen before (a replay); else remember it until
        C{expires}.  Bounded: expired entries go first, then the oldest.
        """
        while self.seen and (len(self.seen) >= MAX_REMEMBERED or next(iter(self.seen.values())) < now):
            self.seen.popitem(last=False)
        if jti in self.seen:
            return False
        self.seen[jti] = expires
        return True


@implementer(ILoginModule)
class AssertionModule(BaseModule):
    def authenticate(self) -> dict[str, Any]:
        o: AssertionOptions = self.options
        token = self.callbacks.assertion
        if not token:
            raise LoginFailed("no gateway assertion")
        try:
            issuer = pyjwt.decode(token, options={"verify_signature": False}).get("iss")
        except pyjwt.InvalidTokenError as e:
            raise LoginFailed(f"invalid assertion: {e}") from None
        gateway = o.trusted.get(issuer) if isinstance(issuer, str) else None
        if gateway is None:
            raise LoginFailed(f"assertion from an untrusted issuer {issuer!r}")
        if gateway.certificate_subject is not None:
            certificate = self.callbacks.peer_certificate
            subject = certificate.subject.rfc4514_string() if certificate is not None else None
            if subject != gateway.certificate_subject:
                raise LoginFailed(f"the link's client certificate is not {issuer}'s")
        try:
            claims: dict[str, Any] = decode(
                token,
                gateway.keys,
                algorithms=list(o.algorithms),
                audience=o.audience,
                issuer=issuer,
                leeway=o.leeway,
                options={"require": ["exp", "iat", "jti", "iss", "aud"]},
            )
        except pyjwt.ExpiredSignatureError:
            raise LoginFailed("assertion expired") from None
        except pyjwt.InvalidTokenError as e:
            raise LoginFailed(f"invalid assertion: {e}") from None
        check_numeric_dates(claims, "assertion")
        if float(claims["exp"]) - float(claims["iat"]) > o.max_lifetime:
            raise LoginFailed(f"assertion valid for longer than {o.max_lifetime:g}s")
        if not o.remember(str(claims["jti"]), float(claims["exp"]) + o.leeway, self.reactor.seconds()):
            raise LoginFailed("assertion already used")
        return claims

    def principals(self, claims: dict[str, Any]) -> tuple[set[Principal], dict[str, Any]]:
        found = {Principal("role", r) for r in claims.get("roles", ()) if isinstance(r, str)}
        found |= {Principal("group", g) for g in claims.get("groups", ()) if isinstance(g, str)}
        if isinstance(claims.get("sub"), str):
            found.add(Principal("user", claims["sub"]))
        attributes: dict[str, Any] = {
            "method": "assertion",
            "asserted_method": claims.get("method"),
            "gateways": [g for g in claims.get("gateways", ()) if isinstance(g, str)],
        }
        if isinstance(claims.get("session_expires"), (int, float)):
            attributes["expires"] = float(claims["session_expires"])
        return found, attributes


@implementer(ILoginModuleFactory)
class AssertionFactory:
    name = "assertion"

    def parse_config(self, options: dict[str, Any], key: str) -> AssertionOptions:
        t = Table(options, key)
        algorithms: tuple[str, ...] = t.take("algorithms", strings_value, ("ES256",))
        for algorithm in algorithms:
            if (
                algorithm.lower() == "none"
                or algorithm.startswith("HS")
                or algorithm not in pyjwt.algorithms.get_default_algorithms()
            ):
                raise ConfigError(
                    f"{t.key('algorithms')}: {algorithm!r}: use a public-key algorithm (ES256, RS256, EdDSA...)"
                )
        trusted: dict[str, TrustedGateway] = {}
        for entry in t.tables("trusted", required=True):
            issuer = entry.require("issuer", string_value)
            gateway = TrustedGateway(
                issuer=issuer,
                keys=public_keys(entry.key("key_file"), entry.require("key_file", string_value), algorithms),
                certificate_subject=entry.take("certificate_subject", string_value, None),
            )
            entry.done()
            if issuer in trusted:
                raise ConfigError(f"{entry.key('issuer')}: {issuer!r} is trusted twice")
            trusted[issuer] = gateway
        parsed = AssertionOptions(
            audience=t.require("audience", string_value),
            trusted=trusted,
            algorithms=algorithms,
            leeway=t.take("leeway", seconds_value, 5.0),
            max_lifetime=t.take("max_lifetime", positive_seconds_value, 60.0),
        )
        t.done()
        return parsed

    def create(self) -> AssertionModule:
        return AssertionModule()
