"""
LDAP search filters (RFC 4515) with placeholders, for the C{ldap} login
module: C{(&(objectClass=person)(uid={user}))}.

A filter is parsed once, when the configuration is loaded (L{parse}), into
a template; at each login the template makes ldaptor's filter objects with
the values in place (L{FilterTemplate.fill}).  A value goes into the
search request as an assertion value, BER-encoded as it is, never into
filter text: nothing a user types can change the filter's structure, and
no escaping is needed or done.  A placeholder stands for a whole value of
an equality, approximate or extensible match (C{(uid={user})}), nowhere
else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ldaptor.protocols import pureldap

from tunnelgw.errors import ConfigError

__all__ = ["FilterTemplate", "parse"]

_Build = Callable[[Mapping[str, bytes]], pureldap.LDAPFilter]
_ATTRIBUTE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*|[0-9]+(\.[0-9]+)*(;[A-Za-z0-9-]+)*")
_RULE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)*")
_PLACEHOLDER = re.compile(rb"\{([a-z]+)\}")
_SIMPLE = {
    b"=": pureldap.LDAPFilter_equalityMatch,
    b"~=": pureldap.LDAPFilter_approxMatch,
    b">=": pureldap.LDAPFilter_greaterOrEqual,
    b"<=": pureldap.LDAPFilter_lessOrEqual,
}


class FilterTemplate:
    """A parsed filter; L{fill} makes it with the placeholders' values."""

    def __init__(self, text: str, build: _Build, names: frozenset[str]) -> None:
        self.text = text
        self.names = names
        """The placeholders it holds."""
        self._build = build

    def fill(self, values: Mapping[str, bytes]) -> pureldap.LDAPFilter:
        return self._build(values)


class _Parser:
    def __init__(self, text: bytes, key: str, placeholders: frozenset[str]) -> None:
        self.text = text
        self.at = 0
        self.key = key
        self.placeholders = placeholders
        self.used: set[str] = set()

    def fail(self, why: str) -> ConfigError:
        return ConfigError(f"{self.key}: {why} at character {self.at + 1} of {self.text.decode()!r}")

    def expect(self, char: bytes) -> None:
        if self.text[self.at : self.at + 1] != char:
            raise self.fail(f"expected {char.decode()!r}")
        self.at += 1

    def filter(self) -> _Build:
        self.expect(b"(")
        kind = self.text[self.at : self.at + 1]
        if kind in (b"&", b"|"):
            self.at += 1
            parts = [self.filter()]
            while self.text[self.at : self.at + 1] == b"(":
                parts.append(self.filter())
            made: _Build
            if kind == b"&":
                made = lambda values: pureldap.LDAPFilter_and([p(values) for p in parts])  # noqa: E731
            else:
                made = lambda values: pureldap.LDAPFilter_or([p(values) for p in parts])  # noqa: E731
        elif kind == b"!":
            self.at += 1
            inner = self.filter()
            made = lambda values: pureldap.LDAPFilter_not(inner(values))  # noqa: E731
        else:
            made = self.item()
        self.expect(b")")
        return made

    def name(self, pattern: re.Pattern[bytes], what: str) -> str:
        found = pattern.match(self.text, self.at)
        if found is None:
            raise self.fail(f"expected {what}")
        self.at = found.end()
        return found.group().decode("ascii")

    def item(self) -> _Build:
        attribute = "" if self.text[self.at : self.at + 1] == b":" else self.name(_ATTRIBUTE, "an attribute")
        if self.text[self.at : self.at + 1] == b":":
            return self.extensible(attribute)
        for op in (b"~=", b">=", b"<=", b"="):
            if self.text.startswith(op, self.at):
                self.at += len(op)
                break
        else:
            raise self.fail("expected =, ~=, >= or <=")
        kind = _SIMPLE[op]
        description = pureldap.LDAPAttributeDescription(attribute)
        if op == b"=" and _PLACEHOLDER.match(self.text, self.at) is None:
            pieces = self.pieces()
            if None in pieces:
                return self.present_or_substrings(attribute, pieces)
            constant = pieces[0] or b""
            return lambda values: kind(
                attributeDesc=description, assertionValue=pureldap.LDAPAssertionValue(constant)
            )
        value = self.value(placeholder=op in (b"=", b"~="))
        return lambda values: kind(
            attributeDesc=description, assertionValue=pureldap.LDAPAssertionValue(value(values))
        )

    def pieces(self) -> list[bytes | None]:
        """A value with stars in it: its pieces, C{None} for each star."""
        pieces: list[bytes | None] = []
        while True:
            if self.text[self.at : self.at + 1] == b"*":
                self.at += 1
                pieces.append(None)
            elif self.text[self.at : self.at + 1] in (b")", b""):
                break
            else:
                pieces.append(self.value(placeholder=False)(_NO_VALUES))
        return pieces or [b""]

    def extensible(self, attribute: str) -> _Build:
        dn = False
        rule: str | None = None
        if self.text.startswith(b":dn", self.at) and self.text[self.at + 3 : self.at + 4] == b":":
            dn = True
            self.at += 3
        if not self.text.startswith(b":=", self.at):
            self.expect(b":")
            rule = self.name(_RULE, "a matching rule")
        if not attribute and rule is None:
            raise self.fail("an extensible match needs an attribute or a matching rule")
        self.expect(b":")
        self.expect(b"=")
        value = self.value(placeholder=True)
        return lambda values: pureldap.LDAPFilter_extensibleMatch(
            matchingRule=rule, type=attribute or None, matchValue=value(values), dnAttributes=dn or None
        )

    def present_or_substrings(self, attribute: str, pieces: list[bytes | None]) -> _Build:
        if pieces == [None]:
            return lambda values: pureldap.LDAPFilter_present(attribute)
        substrings: list[pureldap.LDAPString] = []
        for number, piece in enumerate(pieces):
            if piece is None:
                continue
            if number == 0:
                substrings.append(pureldap.LDAPFilter_substrings_initial(piece))
            elif number == len(pieces) - 1:
                substrings.append(pureldap.LDAPFilter_substrings_final(piece))
            else:
                substrings.append(pureldap.LDAPFilter_substrings_any(piece))
        return lambda values: pureldap.LDAPFilter_substrings(type=attribute, substrings=substrings)

    def value(self, placeholder: bool) -> Callable[[Mapping[str, bytes]], bytes]:
        found = _PLACEHOLDER.match(self.text, self.at)
        if found is not None:
            name = found.group(1).decode("ascii")
            if name not in self.placeholders:
                known = ", ".join(f"{{{p}}}" for p in sorted(self.placeholders))
                raise self.fail(f"unknown placeholder {{{name}}} (known: {known})")
            if not placeholder:
                raise self.fail(f"{{{name}}} may only be the whole value of an =, ~= or := match")
            self.at = found.end()
            if self.text[self.at : self.at + 1] != b")":
                raise self.fail(f"{{{name}}} must be the whole value")
            self.used.add(name)
            return lambda values: values[name]
        out = bytearray()
        while self.at < len(self.text):
            char = self.text[self.at : self.at + 1]
            if char in (b"(", b")", b"*"):
                break
            if char == b"\\":
                digits = self.text[self.at + 1 : self.at + 3]
                if len(digits) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                    raise self.fail("expected two hex digits after \\")
                out.append(int(digits, 16))
                self.at += 3
                continue
            if char in (b"{", b"}"):
                raise self.fail("a brace outside a placeholder (write \\7b or \\7d)")
            out += char
            self.at += 1
        constant = bytes(out)
        return lambda values: constant


_NO_VALUES: Mapping[str, bytes] = {}


def parse(text: str, key: str, placeholders: frozenset[str]) -> FilterTemplate:
    """
    C{text}, an RFC 4515 filter whose values may be C{{NAME}} for each NAME
    of C{placeholders}.

    @raise ConfigError: it is not a filter, or uses another placeholder
        (C{key} names the entry).
    """
    parser = _Parser(text.encode("utf-8"), key, placeholders)
    build = parser.filter()
    if parser.at != len(parser.text):
        raise parser.fail("expected the end of the filter")
    return FilterTemplate(text, build, frozenset(parser.used))
