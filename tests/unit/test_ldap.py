"""
The C{ldap} login module in memory: a directory of a few entries that
answers ldaptor-encoded requests over iosim's transports, on a memory
clock.  Filters with placeholders, the search and bind, groups, the
bounds of a connection, and what the configuration refuses.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from ldaptor.protocols import pureber, pureldap

from twisted.internet import defer
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.errors import ConfigError, LoginFailed
from tunnelgw.security import Subject
from tunnelgw.security.ldap_client import _DECODER, DirectoryConnection
from tunnelgw.security.ldap_filters import parse
from tunnelgw.security.modules.ldap import LDAPFactory, LDAPModule, role_name

PEOPLE = "ou=people,dc=example,dc=org"
ENTRIES: dict[str, dict[str, list[str]]] = {
    f"uid=alice,{PEOPLE}": {
        "uid": ["alice"],
        "objectClass": ["person"],
        "memberOf": ["cn=vnc,ou=groups,dc=example,dc=org"],
        "userPassword": ["alice-pw"],
    },
    f"uid=bob,{PEOPLE}": {"uid": ["bob"], "objectClass": ["person"], "userPassword": ["bob-pw"]},
    "cn=ops,ou=groups,dc=example,dc=org": {"cn": ["ops"], "member": [f"uid=alice,{PEOPLE}"]},
    "cn=gateway,ou=services,dc=example,dc=org": {"cn": ["gateway"], "userPassword": ["search-pw"]},
}


def matches(f: Any, attributes: dict[str, list[str]]) -> bool:
    """Enough of RFC 4511 4.5.1.7 for these tests (case-insensitive equality)."""

    def values(name: Any) -> list[str]:
        name = name.decode() if isinstance(name, bytes) else name
        for key, found in attributes.items():
            if key.lower() == name.lower():
                return [v.lower() for v in found]
        return []

    if isinstance(f, pureldap.LDAPFilter_and):
        return all(matches(g, attributes) for g in f)
    if isinstance(f, pureldap.LDAPFilter_or):
        return any(matches(g, attributes) for g in f)
    if isinstance(f, pureldap.LDAPFilter_not):
        return not matches(f.value, attributes)
    if isinstance(f, pureldap.LDAPFilter_present):
        return bool(values(f.value))
    if isinstance(f, pureldap.LDAPFilter_equalityMatch):
        wanted = f.assertionValue.value
        wanted = wanted.decode() if isinstance(wanted, bytes) else wanted
        return wanted.lower() in values(f.attributeDesc.value)
    raise AssertionError(f"not in these tests: {f!r}")


class Directory(Protocol):
    """
    A directory server in memory: binds against C{userPassword}, searches
    with L{matches}, StartTLS accepted or refused; what it received is
    kept in C{requests}.  C{silent}: it never answers.
    """

    def __init__(self, entries: dict[str, dict[str, list[str]]], start_tls: int = 0) -> None:
        self.entries = entries
        self.start_tls = start_tls
        self.requests: list[Any] = []
        self.buffer = b""
        self.silent = False
        self.extra: list[bytes] = []

    def answer(self, message_id: int, value: Any) -> None:
        self.transport.write(pureldap.LDAPMessage(value, id=message_id).toWire())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            message, used = pureber.berDecodeObject(_DECODER, self.buffer)
            if message is None:
                return
            self.buffer = self.buffer[used:]
            self.requests.append(message.value)
            if not self.silent:
                self.handle(message.id, message.value)

    def handle(self, message_id: int, op: Any) -> None:
        if isinstance(op, pureldap.LDAPBindRequest):
            dn = op.dn.decode()
            ok = dn in self.entries and op.auth.decode() in self.entries[dn].get("userPassword", [])
            self.answer(message_id, pureldap.LDAPBindResponse(resultCode=0 if ok else 49))
        elif isinstance(op, pureldap.LDAPSearchRequest):
            base = op.baseObject.decode().lower()
            found = [
                (dn, attributes)
                for dn, attributes in self.entries.items()
                if dn.lower().endswith(base) and matches(op.filter, attributes)
            ]
            for dn, attributes in found[: op.sizeLimit or None]:
                wanted = [a.decode().lower() for a in op.attributes]
                chosen = [
                    (k, [v.encode() for v in vs]) for k, vs in attributes.items() if k.lower() in wanted
                ]
                self.answer(
                    message_id, pureldap.LDAPSearchResultEntry(objectName=dn.encode(), attributes=chosen)
                )
            over = op.sizeLimit and len(found) > op.sizeLimit
            self.answer(message_id, pureldap.LDAPSearchResultDone(resultCode=4 if over else 0))
        elif isinstance(op, pureldap.LDAPExtendedRequest):
            self.answer(message_id, pureldap.LDAPExtendedResponse(resultCode=self.start_tls))
        for data in self.extra:
            self.transport.write(data)  # type: ignore[union-attr]


class ClientTransport(FakeTransport):
    """The client's end: TLS started is recorded, with how many requests went before it, and no more."""

    started: tuple[Any, int] | None = None
    directory: Directory

    def startTLS(self, contextFactory: Any, beNormal: bool = True) -> None:  # noqa: N802, N803
        self.started = (contextFactory, len(self.directory.requests))


class Callbacks:
    def __init__(self, basic: tuple[str, str] | None, reactor: Any) -> None:
        self.basic = basic
        self.reactor = reactor


class LDAPTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = Directory(dict(ENTRIES))
        self.connections: list[tuple[DirectoryConnection, IOPump]] = []
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        (self.dir / "search").write_text("search-pw\n")

    def connect(self, reactor: Any, options: Any) -> defer.Deferred[DirectoryConnection]:
        client = DirectoryConnection(options.max_answer, max(2, options.max_groups) + 1)
        transport = ClientTransport(client, isServer=False)
        transport.directory = self.directory
        pump = connect(
            self.directory,
            FakeTransport(self.directory, isServer=True),
            client,
            transport,
            greet=False,
            clock=self.clock,
        )
        self.connections.append((client, pump))
        return defer.succeed(client)

    def options(self, **extra: Any) -> Any:
        options = {
            "url": "ldap://127.0.0.1:3389",
            "start_tls": False,
            "base_dn": PEOPLE,
            "filter": "(&(objectClass=person)(uid={user}))",
            "roles_attribute": "memberOf",
            "group_base_dn": "ou=groups,dc=example,dc=org",
        }
        options.update(extra)
        return LDAPFactory(self.connect).parse_config(options, "realms.r.modules[0].options")

    def login(self, user: str, password: str, **extra: Any) -> tuple[LDAPModule, defer.Deferred[Any]]:
        module = LDAPModule()
        module.initialize(Subject(), Callbacks((user, password), self.clock), {}, self.options(**extra))
        try:
            d = defer.maybeDeferred(module.login)
        finally:
            self.pump()
        return module, d

    def pump(self) -> None:
        for _ in range(20):
            for _, pump in self.connections:
                pump.pump()

    def test_a_good_password(self) -> None:
        """The entry's roles (memberOf's first value) and groups; its uid names the subject."""
        module, d = self.login("ALICE", "alice-pw")
        self.assertTrue(self.successResultOf(d))
        self.assertTrue(module.commit())
        self.assertEqual(module.subject.user, "alice")
        self.assertEqual(module.subject.roles, {"vnc", "ops"})
        search = self.directory.requests[0]
        self.assertIsInstance(search, pureldap.LDAPSearchRequest)
        self.assertEqual(search.sizeLimit, 2)
        bind, unbind = self.directory.requests[-2:]
        self.assertEqual((bind.dn, bind.auth), (f"uid=alice,{PEOPLE}".encode(), b"alice-pw"))
        self.assertIsInstance(unbind, pureldap.LDAPUnbindRequest)
        client, _ = self.connections[0]
        self.assertTrue(client.transport.disconnecting)  # and closed

    def test_a_wrong_password(self) -> None:
        _, d = self.login("alice", "nope")
        self.assertEqual(str(self.failureResultOf(d, LoginFailed).value), "wrong password for 'alice'")

    def test_an_empty_password_asks_nothing(self) -> None:
        """A simple bind without a password is an unauthenticated bind (RFC 4513 5.1.2)."""
        _, d = self.login("alice", "")
        self.assertIn("an empty password", str(self.failureResultOf(d, LoginFailed).value))
        self.assertEqual(self.connections, [])

    def test_no_entry_and_several_entries(self) -> None:
        _, d = self.login("carol", "x")
        self.assertEqual(str(self.failureResultOf(d, LoginFailed).value), "no directory entry for 'carol'")
        _, d = self.login("alice", "alice-pw", filter="(|(uid={user})(uid=bob))")
        self.assertEqual(
            str(self.failureResultOf(d, LoginFailed).value), "several directory entries for 'alice'"
        )

    def test_a_user_name_is_a_value_never_filter_text(self) -> None:
        """What a user types goes into the search as an assertion value, as typed."""
        _, d = self.login("*)(uid=*", "x")
        self.failureResultOf(d, LoginFailed)
        search = self.directory.requests[0]
        person, uid = search.filter
        self.assertEqual(uid.assertionValue.value, b"*)(uid=*")

    def test_the_search_account(self) -> None:
        options = {
            "bind_dn": "cn=gateway,ou=services,dc=example,dc=org",
            "bind_password_file": str(self.dir / "search"),
        }
        _, d = self.login("alice", "alice-pw", **options)
        self.assertTrue(self.successResultOf(d))
        first = self.directory.requests[0]
        self.assertEqual((first.dn, first.auth), (options["bind_dn"].encode(), b"search-pw"))
        (self.dir / "search").write_text("wrong\n")
        _, d = self.login("alice", "alice-pw", **options)
        why = str(self.failureResultOf(d, LoginFailed).value)
        self.assertEqual(why, f"the search account {options['bind_dn']!r} could not bind (49)")

    def test_start_tls_comes_first_and_its_refusal_fails(self) -> None:
        self.directory.start_tls = 2  # protocolError
        _, d = self.login("alice", "alice-pw", start_tls=True, url="ldap://directory.example")
        self.assertIn("StartTLS: the directory answered 2", str(self.failureResultOf(d, LoginFailed).value))
        self.assertIsInstance(self.directory.requests[0], pureldap.LDAPExtendedRequest)
        self.assertEqual(self.directory.requests[0].requestName, pureldap.LDAPStartTLSRequest.oid)
        # nothing else but the end
        self.assertEqual([type(r) for r in self.directory.requests[1:]], [pureldap.LDAPUnbindRequest])

    def test_start_tls_accepted_turns_tls_on_before_any_credential(self) -> None:
        """
        TLS starts once the server agreed, before anything else is sent
        (the certificate's checks are the integration tests', on slapd).
        """
        _, d = self.login("alice", "alice-pw", start_tls=True, url="ldap://directory.example")
        self.assertTrue(self.successResultOf(d))
        client, _ = self.connections[0]
        creator, before = client.transport.started
        self.assertTrue(IOpenSSLClientConnectionCreator.providedBy(creator))
        self.assertEqual(before, 1)
        self.assertIsInstance(self.directory.requests[0], pureldap.LDAPExtendedRequest)

    def test_more_groups_than_max_groups(self) -> None:
        self.directory.entries["cn=more,ou=groups,dc=example,dc=org"] = {
            "cn": ["more"],
            "member": [f"uid=alice,{PEOPLE}"],
        }
        _, d = self.login("alice", "alice-pw", max_groups=1)
        self.assertIn("over max_groups (1)", str(self.failureResultOf(d, LoginFailed).value))

    def test_a_directory_that_does_not_answer(self) -> None:
        self.directory.silent = True
        _, d = self.login("alice", "alice-pw", timeout=3)
        self.assertNoResult(d)
        self.clock.advance(3)
        self.assertEqual(
            str(self.failureResultOf(d, LoginFailed).value), "the directory did not answer within 3s"
        )
        client, _ = self.connections[0]
        self.assertTrue(client.transport.disconnecting)

    def test_an_answer_over_max_answer(self) -> None:
        self.directory.extra = [pureldap.LDAPMessage(pureldap.LDAPSearchResultDone(0), id=99).toWire() * 200]
        _, d = self.login("alice", "alice-pw", max_answer=1000)
        self.assertEqual(
            str(self.failureResultOf(d, LoginFailed).value), "the directory sent over 1000 bytes"
        )

    def test_what_is_not_ldap(self) -> None:
        self.directory.extra = [b"\x30\x03\x02\x01\x01"]  # a sequence holding an integer only
        _, d = self.login("alice", "alice-pw")
        self.assertIn("not", str(self.failureResultOf(d, LoginFailed).value))

    def test_an_answer_to_nothing_sent(self) -> None:
        self.directory.extra = [pureldap.LDAPMessage(pureldap.LDAPSearchResultDone(0), id=9999).toWire()]
        _, d = self.login("alice", "alice-pw")
        self.assertIn("never sent", str(self.failureResultOf(d, LoginFailed).value))

    def test_revalidation_searches_again(self) -> None:
        module, d = self.login("alice", "alice-pw")
        self.successResultOf(d)
        module.commit()
        check = module.revalidate(module.subject)
        self.pump()
        self.assertTrue(self.successResultOf(check))
        del self.directory.entries[f"uid=alice,{PEOPLE}"]
        check = module.revalidate(module.subject)
        self.pump()
        self.assertFalse(self.successResultOf(check))


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"url": "ldap://directory.example", "start_tls": False}, "false sends passwords in the clear"),
        ({"url": "ldaps://directory.example", "start_tls": True}, "ldaps:// is TLS from the start"),
        ({"url": "http://directory.example"}, "expected ldaps://HOST[:PORT] or ldap://HOST[:PORT]"),
        ({"url": "ldap://u:p@directory.example"}, "expected ldaps://"),
        ({"url": "ldap://directory.example/dc=x"}, "no path"),
        ({"filter": "(objectClass=person)"}, "the filter must hold {user}"),
        ({"filter": "(uid={dn})"}, "unknown placeholder {dn}"),
        ({"bind_dn": "cn=x"}, "bind_dn and bind_password_file go together"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_what_the_configuration_refuses(options: dict[str, Any], why: str) -> None:
    table = {"url": "ldaps://directory.example", "base_dn": PEOPLE, **options}
    with pytest.raises(ConfigError, match=re.escape(why)):
        LDAPFactory().parse_config(table, "realms.r.modules[0].options")


def test_an_empty_search_password_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    table = {
        "url": "ldaps://d",
        "base_dn": PEOPLE,
        "bind_dn": "cn=x",
        "bind_password_file": str(tmp_path / "empty"),
    }
    with pytest.raises(ConfigError, match="empty"):
        LDAPFactory().parse_config(table, "k")


def test_start_tls_off_to_a_loopback_address() -> None:
    options = LDAPFactory().parse_config(
        {"url": "ldap://127.0.0.1", "start_tls": False, "base_dn": PEOPLE}, "k"
    )
    assert (options.host, options.port, options.tls) == ("127.0.0.1", 389, "none")
    options = LDAPFactory().parse_config({"url": "ldap://directory.example", "base_dn": PEOPLE}, "k")
    assert options.tls == "starttls"
    options = LDAPFactory().parse_config({"url": "ldaps://directory.example", "base_dn": PEOPLE}, "k")
    assert (options.port, options.tls) == (636, "ldaps")


@pytest.mark.parametrize(
    ("value", "role"),
    [
        ("cn=ops,ou=groups,dc=example,dc=org", "ops"),
        ("CN=Domain Admins,CN=Users,DC=corp,DC=example", "Domain Admins"),
        ("cn=a\\,b,ou=x", "a,b"),
        ("cn=caf\\c3\\a9,ou=x", "caf\xc3\xa9"),
        ("operators", "operators"),
    ],
)
def test_role_names(value: str, role: str) -> None:
    assert role_name(value) == role


class FilterTests(SynchronousTestCase):
    names = frozenset({"user", "dn"})

    def wire(self, text: str, **values: bytes) -> Any:
        built = parse(text, "k", self.names).fill(values)
        decoded, _ = pureber.berDecodeObject(
            pureldap.LDAPBERDecoderContext_Filter(fallback=pureber.BERDecoderContext()), built.toWire()
        )
        return decoded

    def test_kinds(self) -> None:
        f = self.wire("(&(objectClass=person)(|(uid={user})(mail={user}))(!(cn=x*y*z)))", user=b"al")
        self.assertIsInstance(f, pureldap.LDAPFilter_and)
        person, either, negated = f
        self.assertEqual([m.assertionValue.value for m in either], [b"al", b"al"])
        self.assertIsInstance(negated.value, pureldap.LDAPFilter_substrings)
        self.assertIsInstance(self.wire("(cn=*)"), pureldap.LDAPFilter_present)
        self.assertIsInstance(self.wire("(n>=5)"), pureldap.LDAPFilter_greaterOrEqual)
        rule = self.wire("(userAccountControl:1.2.840.113556.1.4.803:=2)")
        self.assertIsInstance(rule, pureldap.LDAPFilter_extensibleMatch)
        self.assertEqual(rule.matchingRule.value, b"1.2.840.113556.1.4.803")
        member = self.wire("(member:dn:={dn})", dn=b"uid=a,o=x")
        self.assertEqual(member.matchValue.value, b"uid=a,o=x")

    def test_escapes(self) -> None:
        self.assertEqual(self.wire(r"(cn=a\2ab\28\29\5c\00)").assertionValue.value, b"a*b()\\\x00")

    def test_refused(self) -> None:
        for text in [
            "uid={user}",
            "(uid={user}x)",
            "(uid=a{user})",
            "(uid={other})",
            "(&)",
            "(n>={user})",
            "(cn=*{user})",
            "(uid=x",
            "(uid=x))",
            "(:=x)",
            r"(cn=\zz)",
        ]:
            with self.assertRaises(ConfigError, msg=text):
                parse(text, "k", self.names)
