"""
The open fallback sessions of a gateway (L{FallbackSessions}), and what
binds a session's later requests to the credentials it was opened with
(L{binding_of}).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from tunnelgw.admission.request import AdmissionRequest
from tunnelgw.fallback.session import FallbackSession
from tunnelgw.front.forward import Forwarder

__all__ = ["FallbackSessions", "binding_of"]


class FallbackSessions:
    """
    The open fallback sessions of a gateway, by id, at most C{max_sessions}.
    """

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, FallbackSession] = {}
        self._closing: set[FallbackSession] = set()
        self._forwarder: Forwarder | None = None

    def new_id(self, engine: Any) -> str:
        """
        An unguessable session id; in a cluster, after this instance's tag
        (L{tunnelgw.front.forward}).
        """
        tag = getattr(engine, "fallback_tag", "")
        token = secrets.token_urlsafe(24)
        return f"{tag}.{token}" if tag else token

    def forwarder(self, reactor: Any, authority_file: str | None) -> Forwarder:
        """
        What passes requests to other instances, trusting the CAs of
        C{authority_file} (C{[cluster] advertise_ca}), read at the first
        request after start or after a reload (L{reload_forwarder}).
        """
        if self._forwarder is None:
            self._forwarder = Forwarder(reactor, authority_file)
        return self._forwarder

    def reload_forwarder(self) -> None:
        """
        A reload: the next request passed is passed by a new forwarder,
        with the CAs the configuration names now (the same file rewritten
        with a new CA included); the old one's kept connections close.
        """
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> FallbackSession | None:
        return self._sessions.get(session_id)

    def add(self, session: FallbackSession) -> None:
        self._sessions[session.session_id] = session

    def forget(self, session: FallbackSession) -> None:
        self._closing.discard(session)
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    def closing(self, session: FallbackSession) -> None:
        """The gateway closes C{session}: L{closing_at} finds it until it ends."""
        if not session.over:
            self._closing.add(session)

    def closing_at(self, path: str, origin: str) -> FallbackSession | None:
        """
        A session the gateway is closing, of the service at C{path}, opened
        from C{origin} (its client's preflights are answered as they were).
        """
        for session in self._closing:
            if session.service.path == path and session.origin == origin:
                return session
        return None


def binding_of(request: AdmissionRequest) -> bytes:
    """
    A digest of the credentials a request presents (C{Authorization},
    cookies, the query): a session's later requests that present the same
    need no new login; others log in again, as the same user or not at all.
    """
    digest = hashlib.sha256()
    for name in ("authorization", "cookie"):
        for value in request.headers.get(name, []):
            digest.update(name.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0")
    for key in sorted(request.query):
        for value in request.query[key]:
            digest.update(b"q\0" + key.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0")
    return digest.digest()
