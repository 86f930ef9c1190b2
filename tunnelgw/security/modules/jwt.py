"""
C{jwt}: signed JSON Web Tokens (pyjwt), from the C{Authorization: Bearer}
header, a named cookie (the session cookie of an existing web app), or an
opt-in query parameter.

Options: C{source} (C{bearer}, C{cookie} or C{query}; default C{bearer}),
C{cookie} / C{query_param} (the name, for those sources), C{algorithms}
(required; e.g. C{["RS256"]}, C{["ES256"]}, C{["HS256"]}), exactly one of
C{key_file} (the shared secret for HS*; for the other algorithms a PEM
public key, or keys while the issuer moves to a new one:
L{tunnelgw.security.keys}),
C{jwks_file} (a JSON Web Key Set; the token's C{kid} picks the key) and
C{jwks_uri} (the identity provider's key set, fetched and kept fresh:
L{tunnelgw.security.modules.jwks}; https, or http to a loopback address;
with C{jwks_refetch_interval}, default 30 s, and C{jwks_max_age}, the
keeping time of an answer without C{Cache-Control}, default 300 s),
C{audience} (required), C{issuer}, C{leeway} (seconds of clock skew,
default 30), C{user_claim} (default C{sub}) and C{roles_claim} (default
C{roles}: a list, or a space-separated string, of role names).

C{exp} is required in every token; C{nbf}, C{iss} and C{aud} are checked.
The subject's C{expires} attribute is the token's C{exp} plus the leeway:
the moment the gateway would stop accepting the token, and its tunnels end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt

from twisted.internet import defer
from zope.interface import implementer

from tunnelgw.config.values import (
    ConfigError,
    Table,
    file_text,
    positive_seconds_value,
    seconds_value,
    string_value,
    strings_value,
)
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal
from tunnelgw.security.keys import decode, public_keys
from tunnelgw.security.modules.base import BaseModule, check_numeric_dates, check_remote_url, roles_of
from tunnelgw.security.modules.jwks import Fetch, RemoteKeySet, treq_get

SOURCES = ("bearer", "cookie", "query")


@dataclass(frozen=True)
class JWTOptions:
    source: str
    name: str | None
    algorithms: tuple[str, ...]
    key: Any
    """The shared secret of C{key_file} (HS*)."""
    public_keys: tuple[Any, ...]
    """The public keys of C{key_file} (any other algorithm)."""
    jwks: pyjwt.PyJWKSet | None
    remote: RemoteKeySet | None
    audience: str
    issuer: str | None
    leeway: float
    user_claim: str
    roles_claim: str


@implementer(ILoginModule)
class JWTModule(BaseModule):
    def _token(self) -> str:
        o, cb = self.options, self.callbacks
        if o.source == "bearer":
            token = cb.bearer
        elif o.source == "cookie":
            token = cb.cookies.get(o.name)
        else:
            token = (cb.query.get(o.name) or [None])[0]
        if not token:
            raise LoginFailed(f"no token in {o.source}" + (f" {o.name}" if o.name else ""))
        return str(token)

    def authenticate(self) -> dict[str, Any] | defer.Deferred[dict[str, Any]]:
        o = self.options
        token = self._token()
        key = o.key
        try:
            if o.jwks is not None or o.remote is not None:
                kid = pyjwt.get_unverified_header(token).get("kid")
                if o.remote is not None:
                    remote = o.remote.key_for(kid, self.reactor)
                    if isinstance(remote, defer.Deferred):
                        return remote.addCallback(lambda found: self._claims(token, found))
                    key = remote
                else:
                    keys = [k for k in o.jwks.keys if kid is None or k.key_id == kid]  # type: ignore[union-attr]
                    if len(keys) != 1:
                        raise LoginFailed("no key in the key set matches the token's kid")
                    key = keys[0]
        except pyjwt.InvalidTokenError as e:
            raise LoginFailed(f"invalid token: {e}") from None
        return self._claims(token, key)

    def _claims(self, token: str, key: Any) -> dict[str, Any]:
        o = self.options
        checks: dict[str, Any] = {
            "algorithms": list(o.algorithms),
            "audience": o.audience,
            "issuer": o.issuer,
            "leeway": o.leeway,
            "options": {"require": ["exp", o.user_claim]},
        }
        try:
            if key is None and o.public_keys:
                claims: dict[str, Any] = decode(token, o.public_keys, **checks)
            else:
                claims = pyjwt.decode(token, key, **checks)
        except pyjwt.ExpiredSignatureError:
            raise LoginFailed("token expired") from None
        except pyjwt.InvalidTokenError as e:
            # pyjwt's messages name the check, never the token
            raise LoginFailed(f"invalid token: {e}") from None
        check_numeric_dates(claims, "token")
        if not isinstance(claims.get(o.user_claim), str):
            raise LoginFailed(f"claim {o.user_claim} is not a string")
        return claims

    def principals(self, claims: dict[str, Any]) -> tuple[set[Principal], dict[str, Any]]:
        o = self.options
        roles = claims.get(o.roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        found = roles_of(r for r in roles if isinstance(r, str))
        found.add(Principal("user", claims[o.user_claim]))
        # The tunnel ends when the gateway itself would stop accepting the token.
        attributes: dict[str, Any] = {"method": f"jwt-{o.source}", "expires": float(claims["exp"]) + o.leeway}
        if isinstance(claims.get("jti"), str):
            attributes["jti"] = claims["jti"]  # what a revocation of the token names
        return found, attributes


def _check_secret(key: str, path: str, secret: str, algorithms: tuple[str, ...]) -> None:
    """
    A shared secret is at least as long as the hash of each HS algorithm
    (RFC 7518, 3.2: 32 bytes for HS256): a short one can be guessed, and
    an empty one signs tokens anyone can make.
    """
    size = len(secret.encode("utf-8"))
    for algorithm in algorithms:
        needed = int(algorithm[2:]) // 8
        if size < needed:
            raise ConfigError(
                f"{key}: {path}: a shared secret of {size} bytes; {algorithm} needs at least {needed}"
            )


@implementer(ILoginModuleFactory)
class JWTFactory:
    name = "jwt"

    def __init__(self, fetch: Fetch = treq_get) -> None:
        self._fetch = fetch

    def parse_config(self, options: dict[str, Any], key: str) -> JWTOptions:
        t = Table(options, key)
        source = t.choice("source", SOURCES, "bearer")
        name = None
        if source == "cookie":
            name = t.require("cookie", string_value)
        elif source == "query":
            name = t.require("query_param", string_value)
        algorithms = t.require("algorithms", strings_value)
        for algorithm in algorithms:
            if algorithm.lower() == "none" or algorithm not in pyjwt.algorithms.get_default_algorithms():
                raise ConfigError(f"{t.key('algorithms')}: unsupported algorithm {algorithm!r}")
        key_file = t.take("key_file", string_value, None)
        jwks_file = t.take("jwks_file", string_value, None)
        jwks_uri = t.take("jwks_uri", string_value, None)
        refetch = t.take("jwks_refetch_interval", positive_seconds_value, 30.0)
        max_age = t.take("jwks_max_age", seconds_value, 300.0)
        if [key_file, jwks_file, jwks_uri].count(None) != 2:
            raise ConfigError(f"{key}: give exactly one of key_file, jwks_file and jwks_uri")
        jwks = None
        remote = None
        secret: Any = None
        public: tuple[Any, ...] = ()
        if key_file is not None:
            shared = [a.startswith("HS") for a in algorithms]
            if all(shared):
                secret = file_text(t.key("key_file"), key_file).strip()
                _check_secret(t.key("key_file"), key_file, secret, algorithms)
            elif any(shared):
                raise ConfigError(
                    f"{t.key('algorithms')}: a shared secret (HS*) and public keys cannot share a key_file"
                )
            else:
                public = public_keys(t.key("key_file"), key_file, algorithms)
        elif jwks_file is not None:
            try:
                jwks = pyjwt.PyJWKSet.from_json(file_text(t.key("jwks_file"), jwks_file))
            except (pyjwt.PyJWKSetError, json.JSONDecodeError, ValueError) as e:
                raise ConfigError(f"{t.key('jwks_file')}: {e}") from None
        else:
            assert jwks_uri is not None
            check_remote_url(t.key("jwks_uri"), jwks_uri)
            remote = RemoteKeySet(jwks_uri, refetch, max_age, fetch=self._fetch)
        parsed = JWTOptions(
            source=source,
            name=name,
            algorithms=algorithms,
            key=secret,
            public_keys=public,
            jwks=jwks,
            remote=remote,
            audience=t.require("audience", string_value),
            issuer=t.take("issuer", string_value, None),
            leeway=t.take("leeway", seconds_value, 30.0),
            user_claim=t.take("user_claim", string_value, "sub"),
            roles_claim=t.take("roles_claim", string_value, "roles"),
        )
        t.done()
        return parsed

    def create(self) -> JWTModule:
        return JWTModule()
