"""
The XMPP adapter in memory: RFC 7395 framing to an RFC 6120 stream and
back, restarts, namespaces re-serialized standalone, STARTTLS done by the
gateway, -PLUS mechanisms stripped, identity binding, stanza
authorization, and the hardened parser's refusals.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tunnelgw.adapters.xmpp.factory import XmppAdapterFactory
from tunnelgw.adapters.xmpp.options import XmppOptions
from tunnelgw.adapters.xmpp.xml import FragmentReader, HardenedStream, XMLLimits, XMLRefused
from tunnelgw.config.model import ServiceConfig
from tunnelgw.config.values import ConfigError
from tunnelgw.security import Subject
from tunnelgw.security.policy import RulesPolicyFactory
from tunnelgw.testing import AdapterHarness

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0' xml:lang='en'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    " id='s-1' version='1.0' xml:lang='en' from='localhost' xmlns='jabber:client'>"
)
MECHANISMS = (
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism>"
    "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms>"
)
FEATURES = (
    f"<stream:features>{MECHANISMS}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
)
POLICY = RulesPolicyFactory().parse_config(
    {
        "rules": [
            {
                "roles": ["*"],
                "actions": ["message", "presence", "iq"],
                "resources": ["*@localhost", "localhost"],
            }
        ]
    },
    "policies.p",
)


def options(**table: Any) -> XmppOptions:
    table.setdefault("domain", "localhost")
    table.setdefault("backend_tls", "off")
    return XmppAdapterFactory().parse_options(table, "services.x.xmpp")


def scram(user: str, authzid: str = "") -> str:
    gs2 = f"n,a={authzid}," if authzid else "n,,"
    return base64.b64encode(f"{gs2}n={user},r=abcdef".encode()).decode()


def plain(authcid: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0secret".encode()).decode()


class XmppAdapterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make(self, opts: XmppOptions | None = None, subject: Subject | None = None) -> AdapterHarness:
        service = ServiceConfig(
            name="xmpp",
            path="/xmpp",
            adapter="xmpp",
            upstream="tcp:127.0.0.1:5222",
            subprotocols=("xmpp",),
            policy="p",
            adapter_options=opts or options(),
        )
        self.h = AdapterHarness(
            XmppAdapterFactory(), service, subject or Subject.of("alice", ["staff"]), "xmpp", POLICY
        )
        return self.h

    def client(self, text: str | bytes, binary: bool = False) -> None:
        self.h.tunnel.client_message(text.encode() if isinstance(text, str) else text, binary)

    def server(self, text: str) -> None:
        self.h.backend.dataReceived(text.encode())

    def received(self) -> list[str]:
        messages = [payload.decode() for payload, is_binary in self.h.client.messages if not is_binary]
        self.h.client.messages.clear()
        return messages

    def ready(self, **kw: Any) -> None:
        """
        An open stream with the features passed on.
        """
        self.make(**kw)
        self.client(OPEN)
        self.h.sent()
        self.server(HEADER + FEATURES)
        self.received()

    def assert_stream_error(self, condition: str, code: int) -> None:
        error, close = self.received()[-2:]
        self.assertTrue(
            error.startswith("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"), error
        )
        self.assertIn(f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", error)
        self.assertEqual(close, CLOSE)
        assert self.h.client.closed is not None
        self.assertEqual(self.h.client.closed[0], code)

    # -- translation ------------------------------------------------------

    def test_open_becomes_a_stream_header_and_back(self) -> None:
        self.make()
        self.client(OPEN)
        self.assertEqual(
            self.h.sent(),
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
            b" xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>",
        )
        self.server(HEADER)
        self.assertEqual(self.received(), [])  # held until the features
        self.server(FEATURES)
        opened, features = self.received()
        element = FragmentReader(XMLLimits()).read(opened.encode())
        assert element is not None
        self.assertEqual((element.uri, element.name), (FRAMING, "open"))
        self.assertEqual(element["id"], "s-1")
        self.assertEqual(element["from"], "localhost")
        self.assertEqual(element[("http://www.w3.org/XML/1998/namespace", "lang")], "en")
        # STARTTLS and -PLUS are gone; the stream prefix is declared
        self.assertEqual(
            features,
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>"
            "<mechanism>PLAIN</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms></stream:features>",
        )

    def test_stanzas_both_ways_with_namespaces(self) -> None:
        self.ready()
        self.client(
            "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>hi &amp; bye</body></message>"
        )
        self.assertEqual(
            self.h.sent(), b"<message to='bob@localhost' type='chat'><body>hi &amp; bye</body></message>"
        )
        # whitespace keepalives between stanzas are dropped, stanzas sent standalone
        self.server(
            "\n <message from='bob@localhost/x' type='chat'><body>yo</body>"
            "<x xmlns='jabber:x:oob'><url>u</url></x></message> \n"
        )
        self.assertEqual(
            self.received(),
            [
                "<message xmlns='jabber:client' from='bob@localhost/x' type='chat'><body>yo</body>"
                "<x xmlns='jabber:x:oob'><url>u</url></x></message>"
            ],
        )

    def test_a_stanza_split_across_reads_arrives_whole(self) -> None:
        self.ready()
        text = "<iq type='result' id='1'><query xmlns='jabber:iq:roster'/></iq>"
        for char in text[:-1]:
            self.server(char)
        self.assertEqual(self.received(), [])
        self.server(text[-1])
        self.assertEqual(
            self.received(),
            ["<iq xmlns='jabber:client' type='result' id='1'><query xmlns='jabber:iq:roster'/></iq>"],
        )

    def test_restart_after_sasl_success(self) -> None:
        self.ready()
        self.client(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{scram('alice')}</auth>"
        )
        self.h.sent()
        self.server("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertEqual(self.received(), ["<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"])
        self.client(OPEN)
        self.assertTrue(self.h.sent().startswith(b"<?xml version='1.0'?><stream:stream "))
        # a new stream from the server: a new parser (its own XML declaration)
        self.server(
            HEADER.replace("s-1", "s-2")
            + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        )
        opened, features = self.received()
        self.assertIn("id='s-2'", opened)
        self.assertIn("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>", features)

    def test_a_restart_without_sasl_success_is_refused(self) -> None:
        self.ready()
        self.client(OPEN)
        self.assert_stream_error("policy-violation", 1002)

    def test_the_gateway_ends_the_session_with_a_policy_violation(self) -> None:
        """A reload or a revocation ends the tunnel: the client is told why in XMPP's words."""
        self.ready()
        self.h.tunnel.end(1008, "credentials revoked")
        self.assert_stream_error("policy-violation", 1008)
        self.assertIn(b"</stream:stream>", self.h.sent())

    def test_close_both_ways(self) -> None:
        self.ready()
        self.client(CLOSE)
        self.assertEqual(self.h.sent(), b"</stream:stream>")
        self.server("</stream:stream>")
        self.assertEqual(self.received(), [CLOSE])
        self.h.backend.readConnectionLost()
        self.h.client.transport.producer.resumeProducing()  # the flush watcher: all written
        self.assertEqual(self.h.client.closed, (1000, "backend closed the connection"))

    def test_server_closes_first(self) -> None:
        self.ready()
        self.server(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        )
        error, close = self.received()
        self.assertEqual(
            error,
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
            "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        )
        self.assertEqual(close, CLOSE)
        self.client(CLOSE)
        self.assertEqual(self.h.sent(), b"</stream:stream>")

    # -- STARTTLS to the server -------------------------------------------

    def test_starttls_negotiated_by_the_gateway(self) -> None:
        opts = options(backend_tls="required")
        self.make(opts)
        self.client(OPEN)
        self.h.sent()
        self.server(HEADER + FEATURES)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.h.sent(), b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIs(self.h.wire.tls, opts.tls_creator)
        self.assertTrue(self.h.sent().startswith(b"<?xml version='1.0'?><stream:stream "))
        self.server(HEADER.replace("s-1", "s-tls") + f"<stream:features>{MECHANISMS}</stream:features>")
        opened, features = self.received()
        self.assertIn("id='s-tls'", opened)
        self.assertNotIn("starttls", features)

    def test_starttls_required_but_not_offered(self) -> None:
        self.make(options(backend_tls="required"))
        self.client(OPEN)
        self.server(HEADER + f"<stream:features>{MECHANISMS}</stream:features>")
        self.assert_stream_error("remote-connection-failed", 1014)

    def test_server_requires_starttls_that_is_off(self) -> None:
        self.make()
        self.client(OPEN)
        self.server(
            HEADER
            + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        )
        self.assert_stream_error("remote-connection-failed", 1014)

    def test_client_may_not_ask_for_starttls_or_compression(self) -> None:
        for element in (
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            "<compress xmlns='http://jabber.org/protocol/compress'/>",
        ):
            self.ready()
            self.client(element)
            self.assertEqual(self.h.sent(), b"</stream:stream>")
            self.assert_stream_error("unsupported-feature", 1002)

    # -- SASL and identity binding -----------------------------------------

    def test_plus_mechanisms_refused(self) -> None:
        self.ready()
        self.client(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1-PLUS'>{scram('alice')}</auth>"
        )
        self.assertEqual(self.h.sent(), b"</stream:stream>")
        self.assert_stream_error("policy-violation", 1008)

    def test_identity_binding(self) -> None:
        cases = [
            ("SCRAM-SHA-1", scram("alice"), True),
            ("SCRAM-SHA-256", scram("Alice"), True),
            ("SCRAM-SHA-1", scram("alice", "alice@localhost"), True),
            ("PLAIN", plain("alice"), True),
            ("PLAIN", plain("alice@localhost"), True),
            ("SCRAM-SHA-1", scram("bob"), False),
            ("SCRAM-SHA-1", scram("alice", "bob@localhost"), False),
            ("PLAIN", plain("alice", "bob@localhost"), False),
            ("PLAIN", plain("alice@elsewhere"), False),
            ("X-OAUTH2", "dG9rZW4=", False),
        ]
        for mechanism, payload, allowed in cases:
            self.ready(opts=options(bind_identity=True))
            auth = f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{payload}</auth>"
            self.client(auth)
            if allowed:
                self.assertEqual(self.h.sent(), auth.replace(" xmlns=", " xmlns=", 1).encode(), mechanism)
                self.assertIsNone(self.h.client.closed)
            else:
                self.assertEqual(self.h.sent(), b"</stream:stream>", (mechanism, payload))
                self.assert_stream_error("policy-violation", 1008)

    def test_binding_strips_unbindable_mechanisms(self) -> None:
        self.make(options(bind_identity=True))
        self.client(OPEN)
        self.server(HEADER + FEATURES)
        _, features = self.received()
        self.assertNotIn("X-OAUTH2", features)
        self.assertIn("<mechanism>PLAIN</mechanism>", features)

    def test_bound_jid_must_be_the_users(self) -> None:
        self.ready(opts=options(bind_identity=True))
        self.server(
            "<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<jid>alice@localhost/web</jid></bind></iq>"
        )
        self.assertEqual(len(self.received()), 1)
        self.server(
            "<iq type='result' id='c'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<jid>bob@localhost/web</jid></bind></iq>"
        )
        self.assert_stream_error("policy-violation", 1008)

    def test_no_gateway_user_no_binding(self) -> None:
        self.ready(opts=options(bind_identity=True), subject=Subject.of(None))
        self.client(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain('alice')}</auth>"
        )
        self.assert_stream_error("policy-violation", 1008)

    # -- stanza authorization ----------------------------------------------

    def test_stanza_destinations(self) -> None:
        self.ready(opts=options(authorize_stanzas=True))
        self.client("<message to='bob@localhost/r' type='chat' id='m1'><body>ok</body></message>")
        self.assertIn(b"to='bob@localhost/r'", self.h.sent())
        self.client("<message to='eve@evil.example' type='chat' id='m2'><body>leak</body></message>")
        self.assertEqual(self.h.sent(), b"")
        (bounce,) = self.received()
        self.assertIn("type='error'", bounce)
        self.assertIn("id='m2'", bounce)
        self.assertIn("from='eve@evil.example'", bounce)
        self.assertIn("<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>", bounce)
        self.assertIsNone(self.h.client.closed)
        self.assertTrue(
            any(
                e.get("event") == "authorization" and e.get("resource") == "eve@evil.example"
                for e in self.events
            )
        )

    # -- refusals ---------------------------------------------------------

    def test_first_element_must_be_open(self) -> None:
        self.make()
        self.client("<presence/>")
        self.assertEqual(self.h.sent(), b"")
        self.assert_stream_error("policy-violation", 1002)

    def test_wrong_domain(self) -> None:
        self.make()
        self.client(OPEN.replace("localhost", "elsewhere"))
        self.assertEqual(self.h.sent(), b"")
        self.assert_stream_error("host-unknown", 1008)

    def test_hostile_messages(self) -> None:
        laughs = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><m>&b;</m>'
        cases = [
            ("<message><body>x</message>", "not-well-formed", 1007),
            (laughs, "restricted-xml", 1008),
            ("<message><?php x?></message>", "restricted-xml", 1008),
            ("<message><!-- c --></message>", "restricted-xml", 1008),
            ("<presence/><presence/>", "not-well-formed", 1007),
            ("<presence>", "not-well-formed", 1007),
            ("text only", "not-well-formed", 1007),
            ("<message>&undefined;</message>", "not-well-formed", 1007),
            ("<a>" * 40 + "</a>" * 40, "policy-violation", 1009),
            ("<message " + " ".join(f"a{i}='v'" for i in range(40)) + "/>", "policy-violation", 1009),
            ("<message><body>" + "x" * 300000 + "</body></message>", "policy-violation", 1009),
            (f"<foo xmlns='{FRAMING}'/>", "unsupported-stanza-type", 1002),
            # RFC 7395 3.3.3: a start tag split over two messages, either half
            ("<message to='romeo@example.net'", "not-well-formed", 1007),
            ("<presence/><message to='x'>", "not-well-formed", 1007),
        ]
        for payload, condition, code in cases:
            self.ready()
            self.client(payload)
            self.assert_stream_error(condition, code)
        self.ready()
        self.client(b"\x00binary", binary=True)
        self.assert_stream_error("unsupported-stanza-type", 1003)

    def test_a_tag_finished_in_the_next_message_is_refused(self) -> None:
        """
        A message that ends inside a start tag (expat holds it, reporting
        nothing) is refused at once, and so is a message that completes one
        begun in an earlier message (RFC 7395 3.3.3: one stanza a message).
        """
        self.ready()
        self.client("<presence/><message to='x' type=\"")
        self.assert_stream_error("not-well-formed", 1007)
        # one that ends in ">" within a quoted value is caught by the next
        self.ready()
        self.client("<presence/><message to='>")
        self.client("' type='chat'/>")
        self.assert_stream_error("not-well-formed", 1007)

    def test_bad_xml_from_the_server(self) -> None:
        self.ready()
        self.server("<message><body>x</message>")
        self.assert_stream_error("remote-connection-failed", 1014)

    def test_dtd_from_the_server(self) -> None:
        self.make()
        self.client(OPEN)
        self.server("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>" + HEADER[21:])
        self.assert_stream_error("remote-connection-failed", 1014)

    # -- configuration ------------------------------------------------------

    def test_config(self) -> None:
        factory = XmppAdapterFactory()
        self.assertFalse(factory.needs_policy(options()))
        self.assertTrue(factory.needs_policy(options(authorize_stanzas=True)))
        self.assertIsNotNone(options(backend_tls="required").tls_creator)
        with self.assertRaisesRegex(ConfigError, "services.x.xmpp.domain: required key is missing"):
            factory.parse_options({}, "services.x.xmpp")
        with self.assertRaisesRegex(ConfigError, "services.x.xmpp.backend_tls: expected one of"):
            options(backend_tls="maybe")
        with self.assertRaisesRegex(ConfigError, "services.x.xmpp.backend_ca: /nonexistent"):
            options(backend_tls="required", backend_ca="/nonexistent")
        with self.assertRaisesRegex(ConfigError, "services.x.xmpp.backend_ca: backend_tls is off"):
            options(backend_ca="/etc/hostname")


names = st.text(alphabet=st.sampled_from("abcxyz"), min_size=1, max_size=5)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@st.composite
def elements(draw: Any, depth: int = 0) -> domish.Element:
    el = domish.Element((draw(st.sampled_from(["jabber:client", "urn:x:a", "urn:x:b"])), draw(names)))
    for key in draw(st.lists(names, max_size=3, unique=True)):
        el[key] = draw(texts)
    for _ in range(draw(st.integers(0, 2 if depth < 3 else 0))):
        if draw(st.booleans()):
            el.addChild(draw(elements(depth + 1)))
        else:
            el.addContent(draw(texts))
    return el


def canonical(el: domish.Element) -> Any:
    children = []
    text = ""
    for child in el.children:
        if isinstance(child, str):
            text += child
        else:
            if text:
                children.append(text)
                text = ""
            children.append(canonical(child))
    if text:
        children.append(text)
    return (el.uri, el.name, sorted(el.attributes.items()), children)


@settings(max_examples=200, deadline=None)
@given(el=elements(), cuts=st.lists(st.integers(1, 30), max_size=6))
def test_any_element_survives_both_directions(el: domish.Element, cuts: list[int]) -> None:
    """
    Client to server (one message, re-serialized in the stream's default
    namespace) and server to client (cut anywhere in the TCP stream,
    re-serialized standalone): the same element, namespaces and text
    included.
    """
    message = el.toXml().encode()
    read = FragmentReader(XMLLimits()).read(message)
    assert read is not None and canonical(read) == canonical(el)

    stream = HardenedStream(XMLLimits())
    got: list[domish.Element] = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = got.append
    stream.DocumentEndEvent = lambda: None
    data = (HEADER + el.toXml(defaultUri="jabber:client") + "</stream:stream>").encode()
    offset = 0
    for cut in cuts:
        stream.feed(data[offset : offset + cut])
        offset += cut
    stream.feed(data[offset:])
    (received,) = got
    assert canonical(received) == canonical(el)
    again = FragmentReader(XMLLimits()).read(
        received.toXml(prefixes={"http://etherx.jabber.org/streams": "stream"}).encode()
    )
    assert again is not None and canonical(again) == canonical(el)


def test_refusal_reasons() -> None:
    try:
        FragmentReader(XMLLimits()).read(b"<!DOCTYPE x><x/>")
    except XMLRefused as e:
        assert e.condition == "restricted-xml"
    else:
        raise AssertionError("a DTD passed")
