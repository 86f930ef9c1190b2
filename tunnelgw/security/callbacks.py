"""
What login modules may read from a request (JAAS's callbacks): the
credentials of an C{Authorization} header, cookies, an opt-in query token,
the TLS client certificate, the client address and the Origin.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

__all__ = ["Callbacks"]


@dataclass(frozen=True)
class Callbacks:
    address: str
    origin: str | None = None
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    peer_certificate: Any = None
    assertion: str | None = None
    """An outer gateway's identity assertion (the C{Tunnelgw-Assertion} header)."""
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    """
    Every request header, by lower-case name, each with its values (a
    repeated header has several): for a module that reads one of its own
    (an API key, a client certificate forwarded by a trusted proxy).
    """
    reactor: Any = None
    """
    The gateway's reactor: a module's clock (C{IReactorTime.seconds},
    never the wall clock directly) and what it needs for connections of
    its own (an HTTP client, a directory).  Set for every login the
    gateway runs; a test sets its own (L{tunnelgw.testing.callbacks}).
    """
    familiar: bool = False
    """
    The claimed user logged in from this address before (the gateway's
    login throttle knows): a hint for queues, never a proof of anything.
    """

    @classmethod
    def from_request(cls, request: Any, reactor: Any = None) -> Callbacks:
        """
        Build the callbacks of an L{tunnelgw.admission.pipeline.AdmissionRequest}.
        Malformed credentials are treated as absent: the modules then refuse.
        """
        basic = bearer = None
        authorization = request.headers.get("authorization", [])
        if len(authorization) == 1:
            scheme, _, value = authorization[0].strip().partition(" ")
            value = value.strip()
            if scheme.lower() == "basic" and value:
                basic = _basic(value)
            elif scheme.lower() == "bearer" and value:
                bearer = value
        cookies: dict[str, str] = {}
        for header in request.headers.get("cookie", []):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:
                continue
            cookies.update({name: morsel.value for name, morsel in jar.items()})
        return cls(
            address=request.peer_host,
            origin=(request.headers.get("origin") or [None])[0],
            basic=basic,
            bearer=bearer,
            cookies=cookies,
            query=dict(getattr(request, "query", {}) or {}),
            peer_certificate=getattr(request, "peer_certificate", None),
            assertion=_one(request.headers.get("tunnelgw-assertion", [])),
            headers=request.headers,
            reactor=reactor,
        )

    def header(self, name: str) -> str | None:
        """
        The one value of request header C{name} (any case); C{None} when it
        is absent or repeated (a module cannot tell which was meant).
        """
        return _one(self.headers.get(name.lower(), []))


def _one(values: list[str]) -> str | None:
    """
    The value of a header that must appear once; absent when repeated.
    """
    return values[0].strip() if len(values) == 1 else None


def _basic(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password
