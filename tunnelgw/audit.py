"""
The audit stream: the security events only, one JSON object per line, in
a file of their own (C{[audit] path}) or on standard output (C{"-"}).

Each line is the event as the JSON log writes it (L{json_record}), less
its text (C{msg}) and its C{logger}, plus C{schema}
(C{"tunnelgw.audit/1"}): C{time}, C{level}, C{event} and the event's own
fields, as docs/operations.md, "Audit stream", lists them.  A new schema
name is how an incompatible change would be announced.  A reload opens the
file again (after a rotation, the new file).
"""

from __future__ import annotations

import sys
from typing import IO, Any

import orjson

from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from tunnelgw.logs import json_record

__all__ = ["AUDIT_EVENTS", "SCHEMA", "AuditTrail"]

SCHEMA = "tunnelgw.audit/1"

AUDIT_EVENTS = frozenset(
    {
        "admission",  # every admission decision: accept, refuse, abandon
        "login_module",  # each login module's outcome
        "login_throttled",
        "login_busy",
        "authorization",  # a role check or a per-operation check denied
        "tunnel_cap",
        "policy_error",
        "tunnel_refresh",
        "tunnel_revoked",
        "tunnel_rejudged",
        "tunnel_close",
        "reload",
        "revocation",  # a revocation put in force on this instance
        "revocation_issued",  # an admin issued one
        "refresh",
        "fallback_refused",  # a fallback session's request refused
        "stomp_connect",
        "stomp_refused",
        "xmpp_auth",
        "xmpp_refused",
        "rfb_session",
        "rfb_input_dropped",
        "rfb_refused",
    }
)
"""The events the audit stream carries."""


@implementer(ILogObserver)
class AuditTrail:
    """
    A log observer writing audit events to C{path} (appended to, a line
    at a time) or standard output (C{"-"}).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._out: IO[Any] = self._open()

    def _open(self) -> IO[Any]:
        if self.path == "-":
            return sys.stdout
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: LogEvent) -> None:
        if event.get("event") not in AUDIT_EVENTS:
            return
        record = json_record(event)
        del record["msg"], record["logger"]
        record["schema"] = SCHEMA
        self._out.write(orjson.dumps(record, default=str).decode("utf-8") + "\n")

    def reopen(self, path: str) -> None:
        """
        Write to C{path} from now on, opened anew (a rotated file's
        successor; another path).

        @raise OSError: it cannot be opened; the trail goes on as it was.
        """
        old_path, self.path = self.path, path
        try:
            out = self._open()
        except OSError:
            self.path = old_path
            raise
        self.close()
        self._out = out

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()
