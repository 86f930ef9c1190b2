"""
What the admission pipeline knows of a request, whatever the transport
(L{AdmissionRequest}), and what it admits (L{Admission}).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelgw.config.model import ServiceConfig
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import IAdapterFactory
from tunnelgw.limits import Lease, Places
from tunnelgw.security import Subject
from tunnelgw.tunnel.legs import BackendLeg

__all__ = ["Admission", "AdmissionRequest"]


@dataclass
class AdmissionRequest:
    """
    What the pipeline knows of a request, whatever the transport.
    """

    conn_id: str
    peer_host: str
    path: str
    method: str
    headers: Mapping[str, list[str]]
    lease: Lease
    secure: bool = False
    query: Mapping[str, list[str]] = field(default_factory=dict)
    peer_certificate: Any = None
    http_version: str = "HTTP/1.1"
    transport: str = "websocket"
    """How the client came: C{"websocket"} (an upgrade) or C{"fallback"} (L{tunnelgw.front.fallback})."""

    def values(self, name: str) -> list[str]:
        """
        All values of header C{name} (case-insensitive), comma lists split.
        """
        return [
            item.strip()
            for value in self.headers.get(name.lower(), [])
            for item in value.split(",")
            if item.strip()
        ]

    @functools.cached_property
    def subprotocols(self) -> list[str]:
        """
        The subprotocols the client offered (C{Sec-WebSocket-Protocol}; a
        fallback client's C{X-Tunnel-Protocol}, a browser not being allowed
        to send the other), in its order: read once, by the checks and by
        the choice.
        """
        if self.transport == "fallback":
            return self.values("X-Tunnel-Protocol")
        return self.values("Sec-WebSocket-Protocol")

    def single(self, name: str) -> str | None:
        """
        The one value of header C{name}, C{None} if absent.

        @raise Refusal: (400) the header appears more than once.
        """
        values = self.headers.get(name.lower(), [])
        if len(values) > 1:
            raise Refusal(400, f"the {name} header appears more than once")
        return values[0].strip() if values else None


@dataclass
class Admission:
    """
    An admitted request: everything a tunnel needs to start.
    """

    request: AdmissionRequest
    service: ServiceConfig
    subprotocol: str | None
    subject: Subject
    adapter_factory: IAdapterFactory
    backend: BackendLeg | None = field(default=None)
    places: Places | None = field(default=None)
    """What the tunnel holds against its user's caps (the tunnel gives it back)."""
    origin: str | None = field(default=None)
    """The request's C{Origin}, normalized (C{None}: it sent none)."""
    policy: Any = field(default=None)
    """
    The tunnel's own policy, decided at its start (L{ISessionPolicy});
    C{None}: the service's.
    """

    def abandon(self) -> None:
        """
        The client went away before the tunnel started: drop the backend,
        give back the user's places and end the login session.
        """
        if self.backend is not None and self.backend.transport is not None:
            self.backend.abort()
        if self.places is not None:
            self.places.release()
        self.subject.logout()
