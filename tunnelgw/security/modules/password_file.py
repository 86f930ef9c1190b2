"""
C{password_file}: HTTP Basic credentials checked against a file of argon2
hashes.  Options: C{path}.

The file has one user per line, C{name:hash[:role,role...]}; blank lines
and lines starting with C{#} are ignored.  Make hashes with
C{tunnelgw hash-password}.  The file is read again when it changes (its
size or modification time), so removing a user takes effect at their next
login or revalidation.  Hashes are verified in the reactor's thread pool,
never on the reactor thread; an unknown user costs a verification too, so
timing does not tell which users exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from twisted.internet import defer, threads
from zope.interface import implementer

from tunnelgw.config import ConfigError, Table, string_value
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal, Subject
from tunnelgw.security.jaas import LoginFailed
from tunnelgw.security.modules._base import BaseModule, roles_of

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("tunnelgw: a password no user has")


@dataclass(frozen=True)
class Entry:
    hash: str
    roles: tuple[str, ...]


class PasswordFile:
    """
    The parsed file, read again when it changes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, Entry] = {}
        self.users()

    def users(self) -> dict[str, Entry]:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = parse(self.path)
            self._stamp = stamp
        return self._users


def parse(path: str) -> dict[str, Entry]:
    users: dict[str, Entry] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("$argon2"):
                raise ConfigError(f"{path}:{number}: expected name:argon2-hash[:roles]")
            roles = tuple(r.strip() for r in parts[2].split(",") if r.strip()) if len(parts) == 3 else ()
            users[parts[0]] = Entry(parts[1], roles)
    return users


def verify(hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class PasswordFileOptions:
    file: PasswordFile
    run_in_thread: Callable[..., defer.Deferred[Any]]


@implementer(ILoginModule)
class PasswordFileModule(BaseModule):
    def authenticate(self) -> defer.Deferred[str]:
        if self.callbacks.basic is None:
            raise LoginFailed("no Basic credentials")
        user, password = self.callbacks.basic
        entry = self.options.file.users().get(user)
        d = self.options.run_in_thread(verify, entry.hash if entry else _DUMMY_HASH, password)

        def checked(ok: bool) -> str:
            if not ok or entry is None:
                raise LoginFailed(f"wrong user name or password for {user!r}")
            self.shared.setdefault("user", user)
            return user

        return d.addCallback(checked)

    def principals(self, user: str) -> tuple[set[Principal], dict[str, Any]]:
        entry = self.options.file.users().get(user)
        found = roles_of(entry.roles if entry else ())
        found.add(Principal("user", user))
        return found, {"method": "password"}

    def revalidate(self, subject: Subject) -> bool:
        return self._result is not None and self._result in self.options.file.users()


@implementer(ILoginModuleFactory)
class PasswordFileFactory:
    name = "password_file"

    def __init__(self, run_in_thread: Callable[..., defer.Deferred[Any]] = threads.deferToThread) -> None:
        self._run_in_thread = run_in_thread

    def parse_config(self, options: dict[str, Any], key: str) -> PasswordFileOptions:
        table = Table(options, key)
        path = table.require("path", string_value)
        table.done()
        try:
            file = PasswordFile(path)
        except OSError as e:
            raise ConfigError(f"{key}.path: {path}: {e.strerror}") from None
        return PasswordFileOptions(file, self._run_in_thread)

    def create(self) -> PasswordFileModule:
        return PasswordFileModule()
