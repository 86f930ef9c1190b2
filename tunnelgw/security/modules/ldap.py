"""
C{ldap}: HTTP Basic credentials checked against an LDAP directory
(OpenLDAP, Active Directory, 389 Directory Server...): the user's entry
searched for, then a bind as that entry with the password (RFC 4513
5.1.3), on a connection of its own per login, asynchronously.

Options: C{url} (required: C{ldaps://HOST[:PORT]}, TLS from the start, or
C{ldap://HOST[:PORT]}, upgraded with StartTLS; C{start_tls = false} only
to a loopback address), C{ca} (PEM: the CAs the server's certificate must
chain to, default the system's; its name or address must be the URL's
host), C{base_dn} (required: where users are searched, the whole
subtree), C{filter} (default C{(uid={user})}), C{bind_dn} and
C{bind_password_file} (the account that searches; without them, an
anonymous search), C{user_attribute} (default C{uid}: the entry's value
names the subject), C{roles_attribute} (each value a role, such as
C{memberOf}: of a DN, its first value), C{group_base_dn} with
C{group_filter} (default C{(member={dn})}) and C{group_attribute}
(default C{cn}): each group found is a role, at most C{max_groups}
(default 100, more refuses the login); C{timeout} (default 5 s, the
whole login), C{max_answer} (default 1 MiB: what the directory may send
in one login).

Filters are RFC 4515 with C{{user}} (the name typed) and C{{dn}} (the
entry found) as whole values (L{tunnelgw.security.ldap_filters}): the
values reach the directory as values, never as filter text.  An empty
password is refused before anything is asked (a simple bind with one is
an unauthenticated bind, which many servers let through, RFC 4513
5.1.2).  Revalidation searches again: an entry removed, or that the
filter no longer matches (a disabled account), ends the tunnels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hyperlink
from cryptography import x509
from ldaptor.protocols import pureldap

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from zope.interface import implementer

from tunnelgw.config.values import (
    ConfigError,
    Table,
    bool_value,
    file_text,
    positive_int_value,
    positive_seconds_value,
    string_value,
)
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal, Subject
from tunnelgw.security.ldap_client import Answer, DirectoryConnection, dn_of, text
from tunnelgw.security.ldap_filters import FilterTemplate, parse
from tunnelgw.security.modules.base import BaseModule, asked_within, roles_of
from tunnelgw.tls import certificates, client_tls

MAX_USER = 256
_SUCCESS, _SIZE_LIMIT_EXCEEDED, _INVALID_CREDENTIALS = 0, 4, 49
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class LDAPOptions:
    host: str
    port: int
    tls: str
    """C{ldaps}, C{starttls} or C{none} (loopback only)."""
    authorities: list[x509.Certificate] | None
    base_dn: str
    filter: FilterTemplate
    bind_dn: str | None
    bind_password: str | None
    user_attribute: str
    roles_attribute: str | None
    group_base_dn: str | None
    group_filter: FilterTemplate
    group_attribute: str
    max_groups: int
    timeout: float
    max_answer: int
    connect: Callable[[Any, LDAPOptions], defer.Deferred[DirectoryConnection]]


@dataclass(frozen=True)
class Found:
    """Who logged in: the name typed, their entry, the subject's name and roles."""

    typed: str
    dn: bytes
    name: str
    roles: tuple[str, ...]


def connect(reactor: Any, options: LDAPOptions) -> defer.Deferred[DirectoryConnection]:
    """A connection to the directory (TLS from the start for C{ldaps})."""
    endpoint: Any = HostnameEndpoint(reactor, options.host, options.port, timeout=options.timeout)
    if options.tls == "ldaps":
        endpoint = wrapClientTLS(client_tls(options.host, options.authorities), endpoint)
    # one entry beyond the largest search, so that a server ignoring the
    # size limit is caught rather than trusted
    directory = DirectoryConnection(options.max_answer, max(2, options.max_groups) + 1)
    return connectProtocol(endpoint, directory)


def _check(answer: Answer, what: str) -> Answer:
    result, _ = answer
    if result.resultCode not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
        message = text(result.errorMessage)
        raise LoginFailed(
            f"{what}: the directory answered {result.resultCode}" + (f" ({message})" if message else "")
        )
    return answer


def _values(entry: pureldap.LDAPSearchResultEntry, attribute: str) -> list[str]:
    for name, values in entry.attributes:
        if text(name).lower() == attribute.lower():
            return [text(v) for v in values]
    return []


def role_name(value: str) -> str:
    """A role from an attribute value: of a DN (C{cn=ops,ou=groups,...}), its first value (C{ops})."""
    name, equals, rest = value.partition("=")
    if not equals or not name.replace("-", "").replace(".", "").isalnum():
        return value
    out: list[str] = []
    i = 0
    while i < len(rest):
        char = rest[i]
        if char == "\\" and i + 1 < len(rest):
            pair = rest[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(chr(int(pair, 16)))
                i += 3
                continue
            out.append(rest[i + 1])
            i += 2
            continue
        if char in ",+":
            break
        out.append(char)
        i += 1
    return "".join(out).strip()


async def _session(directory: DirectoryConnection, options: LDAPOptions) -> None:
    """Over TLS, and bound as the searching account (if any)."""
    if options.tls == "starttls":
        _check(await directory.request(pureldap.LDAPStartTLSRequest()), "StartTLS")
        directory.start_tls(client_tls(options.host, options.authorities))
    if options.bind_dn is not None:
        result, _ = await directory.request(
            pureldap.LDAPBindRequest(version=3, dn=options.bind_dn, auth=options.bind_password or "")
        )
        if result.resultCode != _SUCCESS:
            raise LoginFailed(f"the search account {options.bind_dn!r} could not bind ({result.resultCode})")


async def _search(
    directory: DirectoryConnection,
    options: LDAPOptions,
    what: str,
    base: str,
    search: pureldap.LDAPFilter,
    size: int,
    attributes: list[str],
) -> Answer:
    """A search of the subtree at C{base}, for at most C{size} entries; aliases not followed."""
    request = pureldap.LDAPSearchRequest(
        baseObject=base,
        scope=pureldap.LDAP_SCOPE_wholeSubtree,
        derefAliases=pureldap.LDAP_DEREF_neverDerefAliases,
        sizeLimit=size,
        timeLimit=max(1, int(options.timeout)),
        typesOnly=False,
        filter=search,
        attributes=attributes,
    )
    return _check(await directory.request(request), what)


async def _entry(
    directory: DirectoryConnection, options: LDAPOptions, user: str
) -> pureldap.LDAPSearchResultEntry:
    attributes = [options.user_attribute] + ([options.roles_attribute] if options.roles_attribute else [])
    search = options.filter.fill({"user": user.encode("utf-8")})
    _, entries = await _search(directory, options, "the user search", options.base_dn, search, 2, attributes)
    if not entries:
        raise LoginFailed(f"no directory entry for {user!r}")
    if len(entries) > 1:
        raise LoginFailed(f"several directory entries for {user!r}")
    return entries[0]


async def _groups(directory: DirectoryConnection, options: LDAPOptions, user: str, dn: bytes) -> list[str]:
    if options.group_base_dn is None:
        return []
    search = options.group_filter.fill({"user": user.encode("utf-8"), "dn": dn})
    result, entries = await _search(
        directory,
        options,
        "the group search",
        options.group_base_dn,
        search,
        options.max_groups,
        [options.group_attribute],
    )
    if result.resultCode == _SIZE_LIMIT_EXCEEDED or len(entries) > options.max_groups:
        raise LoginFailed(f"{user!r} is in over max_groups ({options.max_groups}) groups")
    return [value for entry in entries for value in _values(entry, options.group_attribute)[:1]]


async def log_in(options: LDAPOptions, user: str, password: str, reactor: Any) -> Found:
    directory = await options.connect(reactor, options)
    try:
        await _session(directory, options)
        entry = await _entry(directory, options, user)
        dn = dn_of(entry)
        roles = (
            [role_name(v) for v in _values(entry, options.roles_attribute)] if options.roles_attribute else []
        )
        roles += await _groups(directory, options, user, dn)
        result, _ = await directory.request(pureldap.LDAPBindRequest(version=3, dn=dn, auth=password))
        if result.resultCode == _INVALID_CREDENTIALS:
            raise LoginFailed(f"wrong password for {user!r}")
        if result.resultCode != _SUCCESS:
            raise LoginFailed(f"the bind as {user!r} failed ({result.resultCode})")
        names = _values(entry, options.user_attribute)
        return Found(user, dn, names[0] if names else user, tuple(r for r in roles if r))
    finally:
        directory.unbind()


async def still_there(options: LDAPOptions, found: Found, reactor: Any) -> bool:
    directory = await options.connect(reactor, options)
    try:
        await _session(directory, options)
        entry = await _entry(directory, options, found.typed)
        return dn_of(entry) == found.dn
    finally:
        directory.unbind()


def _within(options: LDAPOptions, reactor: Any, coroutine: Any) -> defer.Deferred[Any]:
    return asked_within(defer.ensureDeferred(coroutine), options.timeout, reactor, "the directory")


@implementer(ILoginModule)
class LDAPModule(BaseModule):
    def authenticate(self) -> defer.Deferred[Found]:
        user, password = self.basic()
        if not user or len(user) > MAX_USER:
            raise LoginFailed("no user name, or one over 256 characters")
        if not password:
            raise LoginFailed(f"an empty password for {user!r} (an unauthenticated bind)")
        d = _within(self.options, self.reactor, log_in(self.options, user, password, self.reactor))

        def found(result: Found) -> Found:
            self.shared.setdefault("user", result.name)
            return result

        return d.addCallback(found)

    def principals(self, found: Found) -> tuple[set[Principal], dict[str, Any]]:
        principals = roles_of(found.roles)
        principals.add(Principal("user", found.name))
        return principals, {"method": "ldap"}

    def revalidate(self, subject: Subject) -> defer.Deferred[bool]:
        found = self._result
        if found is None:
            return defer.succeed(False)
        d = _within(self.options, self.reactor, still_there(self.options, found, self.reactor))
        return d.addErrback(lambda _: False)


def _url(t: Table) -> tuple[str, int, str]:
    url = t.require("url", string_value)
    parsed = hyperlink.URL.from_text(url)
    if parsed.scheme not in ("ldap", "ldaps") or not parsed.host or parsed.userinfo or parsed.query:
        raise ConfigError(f"{t.key('url')}: expected ldaps://HOST[:PORT] or ldap://HOST[:PORT], got {url!r}")
    if parsed.path not in ((), ("",)):
        raise ConfigError(f"{t.key('url')}: no path (the base DN is base_dn), got {url!r}")
    start_tls = t.take("start_tls", bool_value, parsed.scheme == "ldap")
    if parsed.scheme == "ldaps":
        if start_tls:
            raise ConfigError(f"{t.key('start_tls')}: ldaps:// is TLS from the start")
        tls = "ldaps"
    elif start_tls:
        tls = "starttls"
    elif parsed.host in _LOOPBACK:
        tls = "none"
    else:
        raise ConfigError(
            f"{t.key('start_tls')}: false sends passwords in the clear; only to a loopback address"
        )
    return parsed.host, parsed.port or (636 if parsed.scheme == "ldaps" else 389), tls


@implementer(ILoginModuleFactory)
class LDAPFactory:
    name = "ldap"

    def __init__(
        self, connect: Callable[[Any, LDAPOptions], defer.Deferred[DirectoryConnection]] = connect
    ) -> None:
        self._connect = connect

    def parse_config(self, options: dict[str, Any], key: str) -> LDAPOptions:
        t = Table(options, key)
        host, port, tls = _url(t)
        ca = t.take("ca", string_value, None)
        bind_dn = t.take("bind_dn", string_value, None)
        bind_password_file = t.take("bind_password_file", string_value, None)
        if (bind_dn is None) != (bind_password_file is None):
            raise ConfigError(f"{key}: bind_dn and bind_password_file go together")
        bind_password = None
        if bind_password_file is not None:
            bind_password = file_text(t.key("bind_password_file"), bind_password_file).strip()
            if not bind_password:
                raise ConfigError(f"{t.key('bind_password_file')}: empty (an unauthenticated bind)")
        parsed = LDAPOptions(
            host=host,
            port=port,
            tls=tls,
            authorities=certificates(t.key("ca"), ca) if ca is not None else None,
            base_dn=t.require("base_dn", string_value),
            filter=parse(
                t.take("filter", string_value, "(uid={user})"), t.key("filter"), frozenset({"user"})
            ),
            bind_dn=bind_dn,
            bind_password=bind_password,
            user_attribute=t.take("user_attribute", string_value, "uid"),
            roles_attribute=t.take("roles_attribute", string_value, None),
            group_base_dn=t.take("group_base_dn", string_value, None),
            group_filter=parse(
                t.take("group_filter", string_value, "(member={dn})"),
                t.key("group_filter"),
                frozenset({"user", "dn"}),
            ),
            group_attribute=t.take("group_attribute", string_value, "cn"),
            max_groups=t.take("max_groups", positive_int_value, 100),
            timeout=t.take("timeout", positive_seconds_value, 5.0),
            max_answer=t.take("max_answer", positive_int_value, 1024 * 1024),
            connect=self._connect,
        )
        t.done()
        if "user" not in parsed.filter.names:
            raise ConfigError(f"{t.key('filter')}: the filter must hold {{user}}")
        return parsed

    def create(self) -> LDAPModule:
        return LDAPModule()
