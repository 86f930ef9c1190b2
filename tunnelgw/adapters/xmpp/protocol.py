"""
XMPP's names as the adapter uses them (namespaces, stanza names, the
mechanisms an identity can be read from), its close codes, and what it
refuses with (a stream error's condition, a reason, a close code).
"""

from __future__ import annotations

from twisted.words.xish import domish

from tunnelgw.adapters.base import Refused as AdapterRefused
from tunnelgw.adapters.xmpp.xml import (
    XMLRefused,
)

__all__ = ["Refused", "bare_jid", "children_of", "close_code_of", "text_of"]

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
COMPRESS_FEATURE_NS = "http://jabber.org/features/compress"
COMPRESS_NS = "http://jabber.org/protocol/compress"
STANZA_NAMES = ("message", "presence", "iq")
BINDABLE_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"})

PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
BAD_GATEWAY = 1014

BACKEND_TLS = ("required", "starttls", "off")


class Refused(AdapterRefused):
    """An XMPP refusal: C{condition} is the RFC 6120 stream error sent back."""

    def __init__(self, condition: str, reason: str, code: int) -> None:
        super().__init__(code, reason)
        self.condition = condition


def text_of(el: domish.Element) -> str:
    return "".join(child for child in el.children if isinstance(child, str))


def children_of(el: domish.Element, uri: str, name: str) -> list[domish.Element]:
    return [c for c in el.elements() if c.uri == uri and c.name == name]


def bare_jid(jid: str) -> str:
    return jid.split("/", 1)[0].casefold()


def close_code_of(refused: XMLRefused) -> int:
    if refused.too_big:
        return MESSAGE_TOO_BIG
    if refused.condition == "restricted-xml":
        return POLICY_VIOLATION
    return INVALID_PAYLOAD
