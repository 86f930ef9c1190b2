"""
C{password_file}: HTTP Basic credentials checked against a file of argon2
hashes.  Options: C{path}; C{threads} (hashes verified at once by this
module, default 2: each takes the memory its hash says, so C{threads} x
C{max_memory_cost} bounds what verifying takes); C{max_memory_cost} (KiB,
default 65536: a hash asking more is refused when the file is read).

The file has one user per line, C{name:hash[:role,role...]}; blank lines
and lines starting with C{#} are ignored.  Make hashes with
C{tunnelgw hash-password}.  The file is read again when it changes (its
size or modification time), so removing a user takes effect at their next
login or revalidation.  Hashes are verified in the reactor's thread pool,
never on the reactor thread, C{threads} at a time; the others wait (how
many, at most, is C{gateway.logins.max_pending}), those of a user logging
in from an address they logged in from before first.  An unknown user costs a
verification too, with the parameters of the file's first hash, so timing
does not tell which users exist.

New hashes (C{tunnelgw hash-password}) are argon2id with OWASP's
parameters: 19 MiB of memory, 2 passes, 1 lane (about 20 ms here).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from twisted.internet import defer, threads
from zope.interface import implementer

from tunnelgw.config.values import ConfigError, Table, positive_int_value, string_value
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal, Subject
from tunnelgw.security.modules.base import BaseModule, roles_of
from tunnelgw.security.slots import Slots

# OWASP's argon2id parameters (Password Storage Cheat Sheet): 19 MiB, two
# passes, one lane.  Verifying uses the parameters a hash carries, whatever
# made it.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_VERIFIER = PasswordHasher()
DEFAULT_THREADS = 2
DEFAULT_MAX_MEMORY_COST = 64 * 1024  # KiB: argon2-cffi's own default


@dataclass(frozen=True)
class Entry:
    hash: str
    roles: tuple[str, ...]


class PasswordFile:
    """
    The parsed file, read again when it changes.
    """

    def __init__(self, path: str, max_memory_cost: int = DEFAULT_MAX_MEMORY_COST) -> None:
        self.path = path
        self.max_memory_cost = max_memory_cost
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, Entry] = {}
        self.dummy_hash = dummy_hash(None)
        self.users()

    def users(self) -> dict[str, Entry]:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = parse(self.path, self.max_memory_cost)
            self._stamp = stamp
            first = next(iter(self._users.values()), None)
            self.dummy_hash = dummy_hash(first.hash if first else None)
        return self._users


def dummy_hash(like: str | None) -> str:
    """
    A hash no password matches, verified at the cost of C{like} (a hash of
    the file; the default parameters when there is none): for unknown
    users.  Its salt and digest are random; nothing is computed.
    """
    if like is not None:
        p = extract_parameters(like)
        kind = {Type.ID: "argon2id", Type.I: "argon2i", Type.D: "argon2d"}[p.type]
        costs = (p.memory_cost, p.time_cost, p.parallelism, p.salt_len, p.hash_len, p.version)
    else:
        h = HASHER
        kind = "argon2id"
        costs = (h.memory_cost, h.time_cost, h.parallelism, h.salt_len, h.hash_len, 19)
    memory, passes, lanes, salt_len, hash_len, version = costs
    salt = base64.b64encode(os.urandom(salt_len)).rstrip(b"=").decode()
    digest = base64.b64encode(os.urandom(hash_len)).rstrip(b"=").decode()
    return f"${kind}$v={version}$m={memory},t={passes},p={lanes}${salt}${digest}"


def parse(path: str, max_memory_cost: int = DEFAULT_MAX_MEMORY_COST) -> dict[str, Entry]:
    users: dict[str, Entry] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("$argon2"):
                raise ConfigError(f"{path}:{number}: expected name:argon2-hash[:roles]")
            try:
                memory_cost = extract_parameters(parts[1]).memory_cost
            except InvalidHashError:
                raise ConfigError(f"{path}:{number}: not an argon2 hash") from None
            if memory_cost > max_memory_cost:
                raise ConfigError(
                    f"{path}:{number}: the hash asks {memory_cost} KiB of memory for each"
                    f" verification, over max_memory_cost ({max_memory_cost} KiB)"
                )
            roles = tuple(r.strip() for r in parts[2].split(",") if r.strip()) if len(parts) == 3 else ()
            users[parts[0]] = Entry(parts[1], roles)
    return users


def verify(hash: str, password: str) -> bool:
    try:
        return _VERIFIER.verify(hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class PasswordFileOptions:
    file: PasswordFile
    run_in_thread: Callable[..., defer.Deferred[Any]]
    verifying: Slots
    """At most C{threads} verifications at once; the others wait, cancellable, familiar logins first."""


@implementer(ILoginModule)
class PasswordFileModule(BaseModule):
    def authenticate(self) -> defer.Deferred[str]:
        user, password = self.basic()
        entry = self.options.file.users().get(user)
        options = self.options
        hash = entry.hash if entry else options.file.dummy_hash
        first = bool(getattr(self.callbacks, "familiar", False))
        d = options.verifying.run(first, options.run_in_thread, verify, hash, password)

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

    def reconfirm(self, subject: Subject) -> bool:
        """After a reload: the user is in the (new) file; its roles are those it gives now."""
        user = subject.user
        if user is None or user not in self.options.file.users():
            raise LoginFailed(f"{user!r} is not in the password file")
        return self._succeeded(user)

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
        threads = table.take("threads", positive_int_value, DEFAULT_THREADS)
        max_memory_cost = table.take("max_memory_cost", positive_int_value, DEFAULT_MAX_MEMORY_COST)
        table.done()
        try:
            file = PasswordFile(path, max_memory_cost)
        except OSError as e:
            raise ConfigError(f"{key}.path: {path}: {e.strerror}") from None
        return PasswordFileOptions(file, self._run_in_thread, Slots(threads))

    def create(self) -> PasswordFileModule:
        return PasswordFileModule()
