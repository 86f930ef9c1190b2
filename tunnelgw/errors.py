"""
The errors and codes every stage shares, in a leaf that imports nothing of
tunnelgw: a configuration error, a refusal before the upgrade (an HTTP
status), a failed login module, the WebSocket close codes after it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["CloseCode", "ConfigError", "LoginFailed", "Refusal"]


class ConfigError(ValueError):
    """
    The configuration is invalid.  C{str(error)} names the key and says why.
    """


class Refusal(Exception):
    """
    The request is refused with an HTTP C{status}; C{reason} says why in
    words for the client and the log; C{headers} go into the response.
    """

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class LoginFailed(Exception):
    """
    A module refuses the credentials.  C{reason} is for the audit log and
    must never contain a secret.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CloseCode(enum.IntEnum):
    """
    The RFC 6455 close codes tunnelgw sends.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
