"""
What every protocol adapter's refusals share: the exception an adapter
raises when it refuses what one side sent (L{Refused}), and the one event
it logs for it (L{log_refusal}) before the tunnel closes with its code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Refused", "log_refusal"]


class Refused(Exception):
    """
    An adapter refuses input: C{code} is the WebSocket close code the
    tunnel ends with, C{reason} a text safe to send to the client and to
    log (never a credential).  Adapters add what their protocol's own
    error needs (a STOMP receipt, an XMPP condition).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def log_refusal(log: Any, tunnel: Any, refused: Refused, protocol: str, format: str, **fields: Any) -> None:
    """
    The one event of a refusal: C{event=<protocol>_refused} with the
    tunnel's C{conn_id}, the C{principal}, the close C{code} and C{fields}.
    """
    log.info(
        format,
        event=f"{protocol}_refused",
        conn_id=tunnel.conn_id,
        transport=tunnel.via,
        principal=tunnel.subject.principal,
        code=refused.code,
        **fields,
    )
