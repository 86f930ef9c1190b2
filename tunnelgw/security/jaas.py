"""
A JAAS login context on Twisted: login modules run in order, each with a
control flag, and the outcome follows JAAS's rules exactly
(C{javax.security.auth.login.LoginContext}):

  - required:   must succeed; the login goes on either way.
  - requisite:  must succeed; a failure ends the login at once.
  - sufficient: need not succeed; a success ends the login at once with
                success, unless an earlier required module failed.
  - optional:   need not succeed; the login goes on either way.

The login succeeds only if no required or requisite module failed and at
least one module succeeded (a module may also be ignored: its C{login}
returns C{False}).  Then C{commit} runs on every module that ran; otherwise
C{abort} does.  Modules share a dict for the duration of one login.

Unlike twisted.cred's Portal there is no "one checker per credential type":
any number of modules of any kind stack in one context.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from tunnelgw.config.model import Flag, ModuleEntry
from tunnelgw.errors import LoginFailed
from tunnelgw.interfaces import ILoginModule
from tunnelgw.logs import Logger
from tunnelgw.security import Subject

__all__ = ["Flag", "LoginFailed", "ModuleEntry", "LoginContext", "LoginResult", "LoginSession"]


# each flag's name in the audit log (an Enum's value is a property to call)
_FLAG_NAMES = {flag: flag.value for flag in Flag}


@dataclass
class LoginResult:
    """
    The outcome of one module's C{login}: C{outcome} is C{success},
    C{failure} or C{ignored}.
    """

    entry: ModuleEntry
    outcome: str
    reason: str = ""


def _claimed(callbacks: Any, shared: dict[str, Any]) -> str | None:
    """
    Who a refused request said it was: a module's finding, or the user name
    of Basic credentials (a name, not a secret).
    """
    if isinstance(shared.get("user"), str):
        return str(shared["user"])
    basic = getattr(callbacks, "basic", None)
    return basic[0] if basic else None


@dataclass(frozen=True)
class Reconfirming:
    """What modules find as callbacks when they reconfirm a subject: no credentials."""

    address: str | None
    reactor: Any
    basic: None = None
    familiar: bool = False


class LoginSession:
    """
    The modules of one successful login, kept with the subject for as long
    as its tunnel lives: they revalidate it and log it out.
    """

    __slots__ = ("realm", "modules", "revalidate_interval")
    log = Logger()

    def __init__(self, realm: str, modules: Sequence[ILoginModule], revalidate_interval: float = 0.0) -> None:
        self.realm = realm
        self.modules = tuple(modules)
        self.revalidate_interval = revalidate_interval

    def revalidate(self, subject: Subject) -> defer.Deferred[bool]:
        """
        C{True} while every module still vouches for C{subject}; a module
        that fails to answer counts as C{False}.
        """

        @defer.inlineCallbacks
        def check():  # type: ignore[no-untyped-def]
            for module in self.modules:
                try:
                    ok = yield defer.maybeDeferred(module.revalidate, subject)
                except Exception:
                    self.log.failure("revalidation failed in realm {realm}", realm=self.realm)
                    ok = False
                if not ok:
                    return False
            return True

        return check()  # type: ignore[no-any-return]

    def logout(self) -> None:
        """
        Log every module out, once: the session lets go of its modules (which
        hold the subject that holds the session).
        """
        modules, self.modules = self.modules, ()
        for module in modules:
            try:
                module.logout()
            except Exception:
                self.log.failure("logout failed in realm {realm}", realm=self.realm)


@defer.inlineCallbacks
def _resume(steps: Generator[defer.Deferred[Any], Any, Subject], pending: defer.Deferred[Any]):  # type: ignore[no-untyped-def]
    while True:
        try:
            result = yield pending
        except Exception as e:
            step = functools.partial(steps.throw, e)
        else:
            step = functools.partial(steps.send, result)
        try:
            pending = step()
        except StopIteration as done:
            return done.value


class LoginContext:
    """
    Runs the modules of a realm for one request.
    """

    log = Logger()

    def __init__(self, realm: str, entries: Sequence[ModuleEntry], revalidate_interval: float = 0.0) -> None:
        self.realm = realm
        self.entries = tuple(entries)
        self.revalidate_interval = revalidate_interval

    def login(self, callbacks: Any, conn_id: str = "") -> defer.Deferred[Subject]:
        """
        Authenticate C{callbacks}.

        @return: a Deferred firing with the committed L{Subject} (its
            C{session} holds the modules that ran, for revalidation and
            logout), or failing with L{LoginFailed} (the first error, as JAAS
            reports it).
        """
        try:
            subject = self.attempt(callbacks, conn_id)
        except BaseException:
            return defer.fail()
        return subject if isinstance(subject, defer.Deferred) else defer.succeed(subject)

    def attempt(self, callbacks: Any, conn_id: str = "") -> Subject | defer.Deferred[Subject]:
        """
        L{login}, without a Deferred when it succeeds with every module
        answering at once (most do): then the committed L{Subject}.
        Otherwise, from the first module that answers with a Deferred (or
        the aborts of a failed login), the login goes on as
        L{defer.inlineCallbacks} would, and its Deferred is returned.
        """
        steps = self._login(callbacks, conn_id)
        try:
            pending = next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        return _resume(steps, pending)  # type: ignore[no-any-return]

    def _login(self, callbacks: Any, conn_id: str):  # type: ignore[no-untyped-def]
        """
        The login, as a generator that yields only what a module made
        asynchronous (see L{attempt}).
        """
        subject = Subject.of()
        shared: dict[str, Any] = {}
        ran: list[tuple[ModuleEntry, ILoginModule]] = []
        results: list[LoginResult] = []
        first_required_error: LoginFailed | None = None
        first_error: LoginFailed | None = None
        success = False
        decided: LoginFailed | None = None
        for entry in self.entries:
            module = entry.factory.create()
            module.initialize(subject, callbacks, shared, entry.options)
            ran.append((entry, module))
            try:
                # Synchronous modules (most) answer without a Deferred.
                status = module.login()
                if isinstance(status, defer.Deferred):
                    status = yield status
            except defer.CancelledError:
                # the client went away (or the gateway refused to wait):
                # no module failed, nothing is decided or audited as such
                for _, ran_module in ran:
                    yield self._quietly(ran_module.abort, "abort")
                raise
            except Exception as e:
                if isinstance(e, LoginFailed):
                    error = e
                else:
                    # A broken module is a failure of that module, never a success.
                    self.log.failure(
                        "login module {module} of realm {realm} raised", module=entry.name, realm=self.realm
                    )
                    error = LoginFailed(f"module {entry.name} failed")
                results.append(LoginResult(entry, "failure", error.reason))
                if entry.flag is Flag.REQUISITE:
                    decided = first_required_error or error
                    break
                if entry.flag is Flag.REQUIRED:
                    first_required_error = first_required_error or error
                else:
                    first_error = first_error or error
                continue
            if status:
                results.append(LoginResult(entry, "success"))
                success = True
                if entry.flag is Flag.SUFFICIENT and first_required_error is None:
                    break
            else:
                results.append(LoginResult(entry, "ignored"))
        if decided is None:
            if first_required_error is not None:
                decided = first_required_error
            elif not success:
                decided = first_error or LoginFailed("no login module applied")
        if decided is not None:
            self._audit(results, _claimed(callbacks, shared), conn_id)
            for _, module in ran:
                yield self._quietly(module.abort, "abort")
            raise decided
        try:
            for _, module in ran:
                committed = module.commit()
                if isinstance(committed, defer.Deferred):
                    yield committed
        except Exception:
            self.log.failure("commit failed in realm {realm}", realm=self.realm)
            for _, module in ran:
                yield self._quietly(module.abort, "abort")
            raise LoginFailed("commit failed") from None
        self._audit(results, subject.principal, conn_id)
        subject.session = LoginSession(self.realm, [module for _, module in ran], self.revalidate_interval)
        return subject

    def reconfirm(self, subject: Subject, reactor: Any = None) -> Subject | None:
        """
        After a reload changed this realm: would its modules, as now
        configured, still admit C{subject} (logged in under the old ones),
        and with which principals?  Without credentials: each module's
        optional C{reconfirm(subject)} answers from what the subject holds
        (C{True}, or L{LoginFailed}), under the same control flags as a
        login; a module without one cannot tell.

        @return: a subject with the principals the modules give now (the
            same user), or C{None}: not admitted any more, or cannot tell.
        """
        probe = Subject.of()
        callbacks = Reconfirming(subject.attributes.get("address"), reactor)
        shared: dict[str, Any] = {"user": subject.user} if subject.user is not None else {}
        vouching: list[ILoginModule] = []
        required_failed = False
        for entry in self.entries:
            module = entry.factory.create()
            reconfirm = getattr(module, "reconfirm", None)
            if reconfirm is None:
                return None
            module.initialize(probe, callbacks, shared, entry.options)
            try:
                if not reconfirm(subject):
                    continue
            except LoginFailed:
                if entry.flag is Flag.REQUISITE:
                    return None
                required_failed = required_failed or entry.flag is Flag.REQUIRED
                continue
            except Exception:
                self.log.failure(
                    "reconfirm failed in module {module} of {realm}", module=entry.name, realm=self.realm
                )
                return None
            vouching.append(module)
            if entry.flag is Flag.SUFFICIENT and not required_failed:
                break
        if required_failed or not vouching:
            return None
        for module in vouching:
            module.commit()
        return probe if probe.user == subject.user else None

    def _quietly(self, f: Any, what: str) -> defer.Deferred[None]:
        d = defer.maybeDeferred(f)

        def logged(failure: Failure) -> None:
            self.log.failure("{what} failed in realm {realm}", failure, what=what, realm=self.realm)

        return d.addErrback(logged)

    def _audit(self, results: list[LoginResult], principal: str | None, conn_id: str) -> None:
        """
        One audit event per module decision, with the principal (the
        subject's on success, the claimed user name on failure); never a
        credential.
        """
        for result in results:
            self.log.info(
                "login {conn_id} realm {realm}: module {module} ({flag}) {outcome} for {principal}{why}",
                event="login_module",
                conn_id=conn_id,
                principal=principal,
                realm=self.realm,
                module=result.entry.name,
                flag=_FLAG_NAMES[result.entry.flag],
                outcome=result.outcome,
                reason=result.reason,
                why=f": {result.reason}" if result.reason else "",
            )
