"""
The C{xmpp} adapter's options (C{[services.NAME.xmpp]}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunnelgw.adapters.xmpp.xml import (
    XMLLimits,
)

__all__ = ["XmppOptions"]


@dataclass(frozen=True)
class XmppOptions:
    domain: str
    backend_tls: str = "required"
    tls_creator: Any = None
    bind_identity: bool = False
    authorize_stanzas: bool = False
    limits: XMLLimits = XMLLimits()
