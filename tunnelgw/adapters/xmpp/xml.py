"""
Hardened XML streams for XMPP, on twisted.words.xish (expat).

Both directions parse with L{HardenedStream}: no DTD (so no entity
declarations, hence no billion laughs and no external entities), no
processing instructions, no comments (RFC 6120 4.7 forbids all of them in
an XMPP stream), and bounds on depth, attributes per element, elements
and bytes per stanza.  A violation raises L{XMLRefused} with the XMPP
stream-error condition that fits and a reason.

The client side (RFC 7395) is one L{HardenedStream} under a synthetic root
whose default namespace is C{jabber:client}: each WebSocket message is fed
to it and must produce exactly one complete top-level element
(L{FragmentReader}).  The server side (RFC 6120) is a L{HardenedStream}
over the TCP byte stream, replaced at each stream restart.
"""

from __future__ import annotations

import pyexpat
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from tunnelgw._compat.twisted import BoundedExpatStream

__all__ = [
    "FRAMING",
    "STREAMS",
    "CLIENT",
    "HardenedStream",
    "FragmentReader",
    "XMLLimits",
    "XMLRefused",
    "serialize",
]

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
CLIENT = "jabber:client"
XML_NS = "http://www.w3.org/XML/1998/namespace"


class XMLRefused(Exception):
    """
    Input refused.  C{condition} is an RFC 6120 stream-error condition
    (C{not-well-formed}, C{restricted-xml}, C{policy-violation}, ...),
    C{too_big} marks a size limit, C{reason} is safe to send back.
    """

    def __init__(self, condition: str, reason: str, too_big: bool = False) -> None:
        super().__init__(reason)
        self.condition = condition
        self.reason = reason
        self.too_big = too_big


@dataclass(frozen=True)
class XMLLimits:
    max_stanza_size: int = 256 * 1024
    max_depth: int = 32
    max_attributes: int = 32
    max_elements: int = 1000


class HardenedStream(BoundedExpatStream):
    """
    xish's expat element stream, restricted as XMPP requires and bounded.
    Set C{DocumentStartEvent}, C{ElementEvent} and C{DocumentEndEvent} as
    with xish; L{feed} raises L{XMLRefused}.
    """

    def __init__(self, limits: XMLLimits) -> None:
        super().__init__()
        self.limits = limits
        self.maxStanzaSize = limits.max_stanza_size
        self.maxElementCount = limits.max_elements
        self.depth = 0
        self.message_start = 0
        """Where in the stream the message being read starts (bytes)."""
        parser = self.parser
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._no_dtd
        parser.EntityDeclHandler = self._no_entities
        parser.ExternalEntityRefHandler = self._no_external_entities
        parser.ProcessingInstructionHandler = self._no_pi
        parser.CommentHandler = self._no_comment

    def feed(self, data: bytes) -> None:
        try:
            self.parse(data)
        except XMLRefused:
            raise
        except domish.ParserError as e:
            text = str(e)
            if "Maximum" in text:
                raise XMLRefused("policy-violation", f"stanza too large: {text}", too_big=True) from None
            raise XMLRefused("not-well-formed", f"XML not well-formed: {text}") from None

    # -- restrictions -------------------------------------------------------

    @staticmethod
    def _no_dtd(*args: Any) -> None:
        raise XMLRefused("restricted-xml", "a DTD is not allowed in an XMPP stream")

    @staticmethod
    def _no_entities(*args: Any) -> None:
        raise XMLRefused("restricted-xml", "entity declarations are not allowed in an XMPP stream")

    @staticmethod
    def _no_external_entities(*args: Any) -> int:
        raise XMLRefused("restricted-xml", "external entities are not allowed in an XMPP stream")

    @staticmethod
    def _no_pi(*args: Any) -> None:
        raise XMLRefused("restricted-xml", "processing instructions are not allowed in an XMPP stream")

    @staticmethod
    def _no_comment(*args: Any) -> None:
        raise XMLRefused("restricted-xml", "comments are not allowed in an XMPP stream")

    # -- bounds ---------------------------------------------------------------

    def start_element(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise XMLRefused(
                "policy-violation", f"elements nested deeper than {self.limits.max_depth}", too_big=True
            )
        if len(attrs) > self.limits.max_attributes:
            raise XMLRefused(
                "policy-violation", f"more than {self.limits.max_attributes} attributes", too_big=True
            )
        if self.depth == 2 and self.parser.CurrentByteIndex < self.message_start:
            # a stanza (depth 1 is the framing root) whose start tag began in
            # an earlier message: RFC 7395 3.3.3, one whole element a message
            raise XMLRefused("not-well-formed", "an element must start and end in one message")

    def end_element(self, name: str) -> None:
        self.depth -= 1

    def text(self, data: str) -> None:
        if self.currElem is not None:
            self.currElem.addContent(data)
        elif data.strip():
            # between top-level elements only whitespace may pass (and is dropped)
            raise XMLRefused("not-well-formed", "text outside an element")


class FragmentReader:
    """
    Reads RFC 7395 messages: each must be exactly one complete element.
    """

    def __init__(self, limits: XMLLimits) -> None:
        self._elements: list[domish.Element] = []
        self._stream = HardenedStream(limits)
        self._stream.DocumentStartEvent = lambda root: None
        self._stream.ElementEvent = self._elements.append
        self._stream.DocumentEndEvent = self._ended
        root = f"<tunnelgw-framing xmlns='{CLIENT}' xmlns:stream='{STREAMS}'>".encode()
        self._stream.feed(root)
        self._fed = len(root)

    def _ended(self) -> None:
        raise XMLRefused("not-well-formed", "a message closed an element it did not open")

    def read(self, payload: bytes) -> domish.Element | None:
        """
        The one element of C{payload}, or C{None} for whitespace only.

        @raise XMLRefused: malformed, restricted, too big, or not exactly
            one complete element.
        """
        self._elements.clear()
        if b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
            # inside the stream expat reports these only as "invalid token"
            raise XMLRefused("restricted-xml", "DTDs and entity declarations are not allowed in XMPP")
        stream = self._stream
        stream.message_start = self._fed
        self._fed += len(payload)
        stream.feed(payload)
        body = payload.strip()
        if stream.currElem is not None or (body and (not self._elements or not body.endswith(b">"))):
            # an element left open, or a tag begun and not finished (expat
            # holds it, unreported, for the next message to complete; one
            # that ends in ">" inside a quoted value is caught there: see
            # HardenedStream.start_element)
            raise XMLRefused("not-well-formed", "a message must hold one complete element")
        if len(self._elements) > 1:
            raise XMLRefused("not-well-formed", "a message must hold one element, not several")
        return self._elements[0] if self._elements else None


def serialize(element: domish.Element, default_uri: str = "") -> str:
    """
    C{element} as standalone XML: its namespace declared (unless it is
    C{default_uri}, the enclosing stream's), the C{stream:} prefix for
    stream elements.
    """
    return str(element.toXml(prefixes={STREAMS: "stream"}, defaultUri=default_uri))


def element(uri: str, name: str, attributes: dict[Any, str] | None = None) -> domish.Element:
    return domish.Element((uri, name), attribs=attributes or {})


def stream_error(condition: str, text: str) -> str:
    error = element(STREAMS, "error")
    error.addElement((STREAM_ERRORS, condition))
    error.addElement((STREAM_ERRORS, "text"), content=text)
    return serialize(error)


def attribute_text(value: str) -> str:
    return str(domish.escapeToXml(value, isattrib=1))
