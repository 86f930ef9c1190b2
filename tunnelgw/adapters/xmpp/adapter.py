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

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish
from zope.interface import implementer

from tunnelgw.adapters.xmpp.xml import (
    CLIENT,
    FRAMING,
    STREAMS,
    XML_NS,
    FragmentReader,
    HardenedStream,
    XMLLimits,
    XMLRefused,
    attribute_text,
    element,
    serialize,
    stream_error,
)
from tunnelgw.config.values import (
    ConfigError,
    Table,
    bool_value,
    file_bytes,
    positive_int_value,
    string_value,
)
from tunnelgw.interfaces import IAdapter, IAdapterFactory, ITunnel
from tunnelgw.logs import Logger

__all__ = ["XmppAdapter", "XmppAdapterFactory", "XmppOptions"]

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


@dataclass(frozen=True)
class XmppOptions:
    domain: str
    backend_tls: str = "required"
    tls_creator: Any = None
    bind_identity: bool = False
    authorize_stanzas: bool = False
    limits: XMLLimits = XMLLimits()


class _Refused(Exception):
    def __init__(self, condition: str, reason: str, code: int) -> None:
        super().__init__(reason)
        self.condition = condition
        self.reason = reason
        self.code = code


class _Phase(enum.Enum):
    AWAIT_OPEN = "await-open"  # nothing from the client yet
    OPENING = "opening"  # stream header sent; waiting for the server's features
    TLS = "tls"  # <starttls/> sent; waiting for <proceed/>
    READY = "ready"  # features passed on; relaying
    CLOSING = "closing"  # a <close/> or </stream:stream> has passed
    FAILED = "failed"


def _text(el: domish.Element) -> str:
    return "".join(child for child in el.children if isinstance(child, str))


def _children(el: domish.Element, uri: str, name: str) -> list[domish.Element]:
    return [c for c in el.elements() if c.uri == uri and c.name == name]


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].casefold()


def _code(refused: XMLRefused) -> int:
    if refused.too_big:
        return MESSAGE_TOO_BIG
    if refused.condition == "restricted-xml":
        return POLICY_VIOLATION
    return INVALID_PAYLOAD


@implementer(IAdapter)
class XmppAdapter:
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
                raise _Refused(e.condition, e.reason, _code(e)) from None
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

    def _check_auth(self, el: domish.Element) -> None:
        mechanism = (el.getAttribute("mechanism") or "").upper()
        if mechanism.endswith("-PLUS"):
            raise _Refused(
                "policy-violation", f"{mechanism}: channel binding cannot cross the gateway", POLICY_VIOLATION
            )
        if not self._options.bind_identity:
            return
        if mechanism not in BINDABLE_MECHANISMS:
            raise _Refused(
                "policy-violation",
                f"SASL {mechanism or 'without a mechanism'} cannot be bound to the gateway user",
                POLICY_VIOLATION,
            )
        names = self._sasl_identities(mechanism, _text(el))
        for name in names:
            self._check_identity(name, f"SASL {mechanism}")
        self.log.info(
            "tunnel {conn_id}: XMPP SASL {mechanism} as {identity} bound to {principal}",
            event="xmpp_auth",
            conn_id=self._tunnel.conn_id,
            principal=self._tunnel.subject.principal,
            mechanism=mechanism,
            identity=names[0],
        )

    @staticmethod
    def _sasl_identities(mechanism: str, text: str) -> list[str]:
        """
        The identities a client's initial SASL response claims (authcid
        first, then authzid when present).
        """
        try:
            data = base64.b64decode(text.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refused(
                "malformed-request", "the SASL initial response is not base64 UTF-8", PROTOCOL_ERROR
            ) from None
        if mechanism == "PLAIN":
            parts = data.split("\0")
            if len(parts) != 3 or not parts[1]:
                raise _Refused(
                    "malformed-request",
                    "a PLAIN response is authzid NUL authcid NUL password",
                    PROTOCOL_ERROR,
                )
            return [parts[1]] + ([parts[0]] if parts[0] else [])
        # SCRAM client-first-message: gs2-header "n,a=authzid," then "n=user,r=..."
        parts = data.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y") or not parts[2].startswith("n="):
            raise _Refused(
                "malformed-request",
                "not a SCRAM client-first-message without channel binding",
                PROTOCOL_ERROR,
            )
        user = parts[2][2:].split(",", 1)[0].replace("=2C", ",").replace("=3D", "=")
        authzid = parts[1][2:] if parts[1].startswith("a=") else ""
        return [user] + ([authzid] if authzid else [])

    def _check_identity(self, name: str, where: str) -> None:
        expected = self._expected
        if expected is None or name.casefold() not in expected:
            raise _Refused(
                "policy-violation",
                f"{where}: XMPP identity {name} is not the gateway user {self._tunnel.subject.principal}",
                POLICY_VIOLATION,
            )

    def _stanza_allowed(self, el: domish.Element) -> bool:
        to = el.getAttribute("to")
        if not self._options.authorize_stanzas or not to:
            return True
        if self._tunnel.permits(el.name, _bare(to)):
            return True
        if el.getAttribute("type") not in ("error", "result"):
            bounce = element(CLIENT, el.name, {"type": "error", "from": to})
            if el.getAttribute("id"):
                bounce["id"] = el["id"]
            error = bounce.addElement("error")
            error["type"] = "cancel"
            error.addElement((STANZAS_NS, "not-allowed"))
            error.addElement(
                (STANZAS_NS, "text"), content=f"the gateway does not allow this {el.name} to {_bare(to)}"
            )
            self._tunnel.send_client(serialize(bounce).encode(), False)
        return False

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
            for bind in _children(el, BIND_NS, "bind"):
                for jid in _children(bind, BIND_NS, "jid"):
                    self._check_identity(_bare(_text(jid)), "resource binding")
        self._send_client(serialize(el))

    def _features(self, features: domish.Element) -> None:
        starttls = _children(features, TLS_NS, "starttls")
        if not self._tls_done and self._options.backend_tls != "off":
            if starttls:
                self._phase = _Phase.TLS
                self._tunnel.send_backend(f"<starttls xmlns='{TLS_NS}'/>".encode())
                return
            if self._options.backend_tls == "required":
                self._backend_failure("the XMPP server does not offer STARTTLS (backend_tls = required)")
                return
        if starttls and _children(starttls[0], TLS_NS, "required") and not self._tls_done:
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
                name = _text(mechanism).strip().upper()
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
        self.log.info(
            "tunnel {conn_id}: XMPP from {principal} refused: {condition}: {reason}",
            event="xmpp_refused",
            conn_id=self._tunnel.conn_id,
            principal=self._tunnel.subject.principal,
            condition=refused.condition,
            reason=refused.reason,
            code=refused.code,
        )
        self._end(refused.condition, refused.reason, refused.code)

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


@implementer(IAdapterFactory)
class XmppAdapterFactory:
    name = "xmpp"
    needs_upstream = True
    subprotocols = ("xmpp",)

    def needs_policy(self, options: Any) -> bool:
        return bool(options.authorize_stanzas)

    def parse_options(self, options: dict[str, Any], key: str) -> XmppOptions:
        table = Table(options, key)
        domain = table.require("domain", string_value)
        backend_tls = table.choice("backend_tls", BACKEND_TLS, "required")
        backend_ca = table.take("backend_ca", string_value, None)
        tls_name = table.take("backend_tls_name", string_value, domain)
        defaults = XMLLimits()
        limits = XMLLimits(
            max_stanza_size=table.take("max_stanza_size", positive_int_value, defaults.max_stanza_size),
            max_depth=table.take("max_depth", positive_int_value, defaults.max_depth),
            max_attributes=table.take("max_attributes", positive_int_value, defaults.max_attributes),
            max_elements=table.take("max_elements", positive_int_value, defaults.max_elements),
        )
        bind_identity = table.take("bind_identity", bool_value, False)
        authorize_stanzas = table.take("authorize_stanzas", bool_value, False)
        table.done()
        creator = None
        if backend_tls != "off":
            from twisted.internet import ssl

            trust: Any = ssl.platformTrust()
            if backend_ca is not None:
                pem = file_bytes(table.key("backend_ca"), backend_ca)
                try:
                    trust = ssl.Certificate.loadPEM(pem)
                except Exception as e:  # OpenSSL's own error types
                    raise ConfigError(f"{table.key('backend_ca')}: not a PEM certificate: {e}") from None
            creator = ssl.optionsForClientTLS(tls_name, trustRoot=trust)
        elif backend_ca is not None:
            raise ConfigError(f"{table.key('backend_ca')}: backend_tls is off")
        return XmppOptions(
            domain=domain,
            backend_tls=backend_tls,
            tls_creator=creator,
            bind_identity=bind_identity,
            authorize_stanzas=authorize_stanzas,
            limits=limits,
        )

    def build(self, tunnel: ITunnel) -> IAdapter:
        options = tunnel.service.adapter_options
        assert isinstance(options, XmppOptions)
        return XmppAdapter(tunnel, options)
