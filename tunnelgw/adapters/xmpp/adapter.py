"""
The C{xmpp} adapter: RFC 7395 (XMPP over WebSocket) on the client side,
RFC 6120 (an XMPP TCP stream) on the server side, translated both ways.

Client to server: each WebSocket text message is exactly one element
(hardened parser: no DTD, entities, processing instructions or comments;
bounded depth, attributes and size).  C{<open/>} becomes a stream header
(C{<stream:stream to=... version='1.0'>}), a later C{<open/>} after SASL
success a new one (stream restart), C{<close/>} becomes
C{</stream:stream>}; everything else is re-serialized in the stream's
default namespace and forwarded, after these checks:

  - STARTTLS and stream compression are not for the client to ask (the
    WebSocket is already the client's transport security);
  - SASL C{-PLUS} mechanisms are refused (channel binding cannot survive
    the bridge) and, with C{bind_identity}, the identity in C{<auth/>}
    (PLAIN's authcid/authzid, SCRAM's username/authzid) and the JID the
    server binds must be the gateway-authenticated user's;
  - with C{authorize_stanzas}, stanzas addressed elsewhere are authorized
    (action: the stanza's name, resource: the bare C{to} JID); a denied one
    is answered with a C{not-allowed} stanza error and not forwarded.

Server to client: a streaming parser cuts the TCP stream at top-level
elements; the stream header becomes C{<open/>}, C{</stream:stream>}
becomes C{<close/>}, each element is sent standalone with its namespaces
declared (C{stream:} prefix on features and errors); the XML declaration
and whitespace keepalives are dropped.  The server's first features are
held: when the server offers STARTTLS (and C{backend_tls} is not C{off}),
the gateway negotiates TLS itself, verifying the server's certificate, and
restarts the stream first; the client never sees STARTTLS, compression or
C{-PLUS} mechanisms.

Every refusal sends a stream error and C{<close/>}, then closes the
WebSocket: 1007 (not well-formed), 1008 (policy, restricted XML, identity),
1009 (too big), 1002 (framing), 1003 (binary messages); 1014 when the
server misbehaves.
"""

from __future__ import annotations

import enum
from typing import Any

from twisted.words.xish import domish
from zope.interface import implementer

from tunnelgw.adapters.base import log_refusal
from tunnelgw.adapters.xmpp.checks import IdentityChecks
from tunnelgw.adapters.xmpp.options import XmppOptions
from tunnelgw.adapters.xmpp.protocol import (
    BAD_GATEWAY,
    BIND_NS,
    BINDABLE_MECHANISMS,
    COMPRESS_FEATURE_NS,
    COMPRESS_NS,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    SASL_NS,
    STANZA_NAMES,
    TLS_NS,
    UNSUPPORTED_DATA,
    bare_jid,
    children_of,
    close_code_of,
    text_of,
)
from tunnelgw.adapters.xmpp.protocol import Refused as _Refused
from tunnelgw.adapters.xmpp.xml import (
    CLIENT,
    FRAMING,
    STREAMS,
    XML_NS,
    FragmentReader,
    HardenedStream,
    XMLRefused,
    attribute_text,
    element,
    serialize,
    stream_error,
)
from tunnelgw.interfaces import IAdapter, ITunnel
from tunnelgw.logs import Logger

__all__ = ["XmppAdapter"]


class _Phase(enum.Enum):
    AWAIT_OPEN = "await-open"  # nothing from the client yet
    OPENING = "opening"  # stream header sent; waiting for the server's features
    TLS = "tls"  # <starttls/> sent; waiting for <proceed/>
    READY = "ready"  # features passed on; relaying
    CLOSING = "closing"  # a <close/> or </stream:stream> has passed
    FAILED = "failed"


@implementer(IAdapter)
class XmppAdapter(IdentityChecks):
    log = Logger()

    def __init__(self, tunnel: ITunnel, options: XmppOptions) -> None:
        self._tunnel = tunnel
        self._options = options
        self._reader = FragmentReader(options.limits)
        self._server: HardenedStream | None = None
        self._header: dict[Any, str] = {}
        self._phase = _Phase.AWAIT_OPEN
        self._tls_done = False
        self._restart_allowed = False
        self._lang: str | None = None
        self._closed_to_client = False
        self._ended_to_server = False
        user = tunnel.subject.user
        if user is None:
            self._expected: tuple[str, str] | None = None
        else:
            bare = user.casefold() if "@" in user else f"{user}@{options.domain}".casefold()
            self._expected = (bare.split("@", 1)[0], bare)

    # -- client to server -------------------------------------------------

    def client_message(self, payload: bytes, is_binary: bool) -> None:
        if self._phase is _Phase.FAILED:
            return
        try:
            if is_binary:
                raise _Refused(
                    "unsupported-stanza-type", "binary messages are not XMPP (RFC 7395)", UNSUPPORTED_DATA
                )
            if len(payload) > self._options.limits.max_stanza_size:
                raise _Refused(
                    "policy-violation",
                    f"a stanza larger than {self._options.limits.max_stanza_size} bytes",
                    MESSAGE_TOO_BIG,
                )
            try:
                el = self._reader.read(payload)
            except XMLRefused as e:
                raise _Refused(e.condition, e.reason, close_code_of(e)) from None
            if el is not None:
                self._client_element(el)
        except _Refused as refused:
            self._refuse(refused)

    def _client_element(self, el: domish.Element) -> None:
        if el.uri == FRAMING:
            if el.name == "open":
                self._client_open(el)
            elif el.name == "close":
                self._client_close()
            else:
                raise _Refused(
                    "unsupported-stanza-type", f"unknown framing element <{el.name}/>", PROTOCOL_ERROR
                )
            return
        phase = self._phase
        if phase is _Phase.CLOSING:
            return  # nothing passes after a close
        if phase is _Phase.AWAIT_OPEN:
            raise _Refused("policy-violation", "the first element must be <open/>", PROTOCOL_ERROR)
        if phase is not _Phase.READY:
            raise _Refused("policy-violation", f"<{el.name}/> before the stream's features", PROTOCOL_ERROR)
        if el.uri in (TLS_NS, COMPRESS_NS):
            raise _Refused(
                "unsupported-feature", f"<{el.name}/> is not available over WebSocket", PROTOCOL_ERROR
            )
        if el.uri == SASL_NS and el.name == "auth":
            self._check_auth(el)
        elif el.uri == CLIENT and el.name in STANZA_NAMES and not self._stanza_allowed(el):
            return
        self._tunnel.send_backend(serialize(el, CLIENT).encode())

    def _client_open(self, el: domish.Element) -> None:
        if self._phase is _Phase.READY and self._restart_allowed:
            self._restart_allowed = False
        elif self._phase is not _Phase.AWAIT_OPEN:
            raise _Refused("policy-violation", "an <open/> that does not restart the stream", PROTOCOL_ERROR)
        to = el.getAttribute("to") or ""
        if to.casefold() != self._options.domain.casefold():
            raise _Refused(
                "host-unknown", f"this service serves {self._options.domain}, not {to}", POLICY_VIOLATION
            )
        self._lang = el.attributes.get((XML_NS, "lang"), self._lang)
        if self._phase is _Phase.AWAIT_OPEN:
            self.log.info(
                "tunnel {conn_id}: XMPP stream of {principal} to {domain}",
                event="xmpp_open",
                conn_id=self._tunnel.conn_id,
                transport=self._tunnel.via,
                principal=self._tunnel.subject.principal,
                domain=self._options.domain,
                backend_tls=self._options.backend_tls,
            )
        self._open_server_stream()

    def _open_server_stream(self) -> None:
        """
        A new stream to the server (first, after TLS, after SASL): a new
        parser for its answer, then our header.
        """
        server = HardenedStream(self._options.limits)
        server.DocumentStartEvent = self._server_start
        server.ElementEvent = self._server_element
        server.DocumentEndEvent = self._server_end
        self._server = server
        self._header = {}
        self._ended_to_server = False
        self._phase = _Phase.OPENING
        lang = f" xml:lang='{attribute_text(self._lang)}'" if self._lang else ""
        self._tunnel.send_backend(
            (
                f"<?xml version='1.0'?><stream:stream xmlns='{CLIENT}' xmlns:stream='{STREAMS}'"
                f" to='{attribute_text(self._options.domain)}' version='1.0'{lang}>"
            ).encode()
        )

    def _client_close(self) -> None:
        if self._phase is _Phase.AWAIT_OPEN:
            self._phase = _Phase.CLOSING
            self._tunnel.fail(1000, "client closed before opening a stream")
            return
        # the client closes first, or answers the server's close
        self._phase = _Phase.CLOSING
        self._end_server_stream()

    def _end_server_stream(self) -> None:
        if self._server is not None and not self._ended_to_server:
            self._ended_to_server = True
            self._tunnel.send_backend(b"</stream:stream>")

    # -- server to client -------------------------------------------------

    def backend_data(self, data: bytes) -> None:
        if self._phase is _Phase.FAILED or self._server is None:
            return
        try:
            self._server.feed(data)
        except XMLRefused as e:
            self._backend_failure(f"the XMPP server sent bad XML: {e.reason}")
        except _Refused as refused:
            self._refuse(refused)

    def _server_start(self, root: domish.Element) -> None:
        if root.uri != STREAMS or root.name != "stream":
            raise XMLRefused(
                "not-well-formed", f"a stream must start with <stream:stream>, not <{root.name}>"
            )
        self._header = dict(root.attributes)

    def _server_element(self, el: domish.Element) -> None:
        if self._phase is _Phase.FAILED:
            return
        if el.uri == STREAMS and el.name == "error":
            self._send_client(serialize(el))
            self._close_client()
            return
        if self._phase is _Phase.TLS:
            self._tls_answer(el)
            return
        if el.uri == STREAMS and el.name == "features":
            self._features(el)
            return
        if el.uri == SASL_NS and el.name == "success":
            self._restart_allowed = True
        elif el.uri == CLIENT and el.name == "iq" and self._options.bind_identity:
            for bind in children_of(el, BIND_NS, "bind"):
                for jid in children_of(bind, BIND_NS, "jid"):
                    self._check_identity(bare_jid(text_of(jid)), "resource binding")
        self._send_client(serialize(el))

    def _features(self, features: domish.Element) -> None:
        starttls = children_of(features, TLS_NS, "starttls")
        if not self._tls_done and self._options.backend_tls != "off":
            if starttls:
                self._phase = _Phase.TLS
                self._tunnel.send_backend(f"<starttls xmlns='{TLS_NS}'/>".encode())
                return
            if self._options.backend_tls == "required":
                self._backend_failure("the XMPP server does not offer STARTTLS (backend_tls = required)")
                return
        if starttls and children_of(starttls[0], TLS_NS, "required") and not self._tls_done:
            self._backend_failure("the XMPP server requires STARTTLS but backend_tls = off")
            return
        features.children = [
            c for c in features.children if isinstance(c, domish.Element) and self._keep_feature(c)
        ]
        opened = element(FRAMING, "open")
        for key in ("from", "id", "version", (XML_NS, "lang")):
            if key in self._header:
                opened[key] = self._header[key]
        self._phase = _Phase.READY
        self._send_client(serialize(opened))
        self._send_client(serialize(features))

    def _keep_feature(self, feature: domish.Element) -> bool:
        if feature.uri in (TLS_NS, COMPRESS_FEATURE_NS):
            return False
        if feature.uri == SASL_NS and feature.name == "mechanisms":
            kept = []
            for mechanism in feature.elements():
                name = text_of(mechanism).strip().upper()
                if name.endswith("-PLUS"):
                    continue
                if self._options.bind_identity and name not in BINDABLE_MECHANISMS:
                    continue
                kept.append(mechanism)
            feature.children = kept
            return bool(kept)
        return True

    def _tls_answer(self, el: domish.Element) -> None:
        if el.uri == TLS_NS and el.name == "proceed":
            self._tls_done = True
            self._tunnel.start_backend_tls(self._options.tls_creator)
            self.log.info(
                "tunnel {conn_id}: STARTTLS with the XMPP server",
                event="xmpp_starttls",
                conn_id=self._tunnel.conn_id,
                domain=self._options.domain,
            )
            self._open_server_stream()
        else:
            self._backend_failure(f"the XMPP server refused STARTTLS (<{el.name}/>)")

    def _server_end(self) -> None:
        self._close_client()

    def _close_client(self) -> None:
        if not self._closed_to_client:
            self._closed_to_client = True
            self._send_client(f"<close xmlns='{FRAMING}'/>")
        if self._phase is not _Phase.FAILED:
            self._phase = _Phase.CLOSING

    def _send_client(self, text: str) -> None:
        self._tunnel.send_client(text.encode(), False)

    # -- refusals -----------------------------------------------------------

    def _refuse(self, refused: _Refused) -> None:
        log_refusal(
            self.log,
            self._tunnel,
            refused,
            "xmpp",
            "tunnel {conn_id}: XMPP from {principal} refused: {condition}: {reason}",
            condition=refused.condition,
            reason=refused.reason,
        )
        self._end(refused.condition, refused.reason, refused.code)

    def end(self, code: int, reason: str) -> None:
        """
        The gateway ends the session (L{IAdapter}): a C{policy-violation}
        stream error says why, and the stream closes.
        """
        self._end("policy-violation", reason, code)

    def _backend_failure(self, reason: str) -> None:
        self.log.warn(
            "tunnel {conn_id}: {reason}",
            event="xmpp_backend_error",
            conn_id=self._tunnel.conn_id,
            reason=reason,
        )
        self._end("remote-connection-failed", reason, BAD_GATEWAY)

    def _end(self, condition: str, reason: str, code: int) -> None:
        if self._phase is _Phase.FAILED:
            return
        self._end_server_stream()
        self._phase = _Phase.FAILED
        if not self._closed_to_client:
            self._closed_to_client = True
            self._send_client(stream_error(condition, reason))
            self._send_client(f"<close xmlns='{FRAMING}'/>")
        self._tunnel.fail(code, reason)
