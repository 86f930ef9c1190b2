"""
The login context against JAAS's rules: every combination of flags and
outcomes for one to three modules.

The oracle below states JAAS's documented rules declaratively (which module
ends the login, and when it succeeds); the implementation follows the
reference algorithm step by step.  They must agree on every case, and
both with the example table of JAAS's own documentation, copied as it is
printed (test_the_javadoc_example).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from twisted.internet import defer
from zope.interface import implementer

from tunnelgw.interfaces import ILoginModule, ILoginModuleFactory
from tunnelgw.security import Principal, Subject
from tunnelgw.security.jaas import Flag, LoginContext, LoginFailed, ModuleEntry

OUTCOMES = ("success", "failure", "ignored")


@implementer(ILoginModule)
class Scripted:
    def __init__(self, name: str, outcome: str, log: list[str]) -> None:
        self.name, self.outcome, self.log = name, outcome, log

    def initialize(self, subject: Subject, callbacks: Any, shared_state: dict, options: Any) -> None:  # type: ignore[type-arg]
        self.subject = subject
        shared_state.setdefault("order", []).append(self.name)

    def login(self) -> bool:
        self.log.append(f"login {self.name}")
        if self.outcome == "failure":
            raise LoginFailed(f"{self.name} says no")
        return self.outcome == "success"

    def commit(self) -> None:
        self.log.append(f"commit {self.name}")
        if self.outcome == "success":
            self.subject.principals.add(Principal("user", self.name))

    def abort(self) -> None:
        self.log.append(f"abort {self.name}")

    def logout(self) -> None:
        self.log.append(f"logout {self.name}")

    def revalidate(self, subject: Subject) -> bool:
        return True


@implementer(ILoginModuleFactory)
class ScriptedFactory:
    def __init__(self, name: str, outcome: str, log: list[str]) -> None:
        self.name, self.outcome, self.log = name, outcome, log

    def parse_config(self, options: dict, key: str) -> dict:  # type: ignore[type-arg]
        return options

    def create(self) -> Scripted:
        return Scripted(self.name, self.outcome, self.log)


def oracle(case: list[tuple[Flag, str]]) -> tuple[bool, int]:
    """
    JAAS's rules, stated as rules: (does the login succeed, how many modules
    run).
    """
    failed_required = [i for i, (f, o) in enumerate(case) if f is Flag.REQUIRED and o == "failure"]
    for i, (flag, outcome) in enumerate(case):
        # a requisite failure ends the login, failed
        if flag is Flag.REQUISITE and outcome == "failure":
            return False, i + 1
        # a sufficient success ends it, successful, if no required module before it failed
        if flag is Flag.SUFFICIENT and outcome == "success" and not [j for j in failed_required if j < i]:
            return True, i + 1
    # all ran: no required/requisite may fail, and something must have succeeded
    succeeded = any(o == "success" for _, o in case)
    return (not failed_required and succeeded), len(case)


CASES = [
    list(zip(flags, outcomes, strict=True))
    for n in (1, 2, 3)
    for flags in itertools.product(Flag, repeat=n)
    for outcomes in itertools.product(OUTCOMES, repeat=n)
]


def run(case: list[tuple[Flag, str]]) -> tuple[defer.Deferred[Any], list[str]]:
    log: list[str] = []
    entries = [
        ModuleEntry(f"m{i}", ScriptedFactory(f"m{i}", outcome, log), flag, {})
        for i, (flag, outcome) in enumerate(case)
    ]
    return LoginContext("test", entries).login(object()), log


def test_case_count() -> None:
    assert len(CASES) == 12 + 12**2 + 12**3


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{f.value}:{o}" for f, o in c))
def test_jaas_rules(case: list[tuple[Flag, str]]) -> None:
    expected_success, expected_ran = oracle(case)
    d, log = run(case)
    results: list[Any] = []
    d.addBoth(results.append)
    (result,) = results
    ran = [line.split()[1] for line in log if line.startswith("login ")]
    assert ran == [f"m{i}" for i in range(expected_ran)]
    if expected_success:
        subject = result
        assert len(subject.session.modules) == expected_ran
        assert [line for line in log if line.startswith("commit")] == [
            f"commit m{i}" for i in range(expected_ran)
        ]
        assert subject.names("user") == {f"m{i}" for i in range(expected_ran) if case[i][1] == "success"}
    else:
        assert isinstance(result.value, LoginFailed)
        assert [line for line in log if line.startswith("abort")] == [
            f"abort m{i}" for i in range(expected_ran)
        ]
        assert not any(line.startswith("commit") for line in log)


def test_first_required_error_is_reported() -> None:
    case = [(Flag.REQUIRED, "failure"), (Flag.REQUIRED, "failure")]
    d, _ = run(case)
    failure: list[Any] = []
    d.addErrback(failure.append)
    assert failure[0].value.reason == "m0 says no"


def test_requisite_reports_earlier_required_error() -> None:
    d, _ = run([(Flag.REQUIRED, "failure"), (Flag.REQUISITE, "failure")])
    failure: list[Any] = []
    d.addErrback(failure.append)
    assert failure[0].value.reason == "m0 says no"


def test_all_ignored_fails() -> None:
    d, _ = run([(Flag.REQUIRED, "ignored"), (Flag.OPTIONAL, "ignored")])
    failure: list[Any] = []
    d.addErrback(failure.append)
    assert failure[0].value.reason == "no login module applied"


def test_a_login_of_modules_that_answer_at_once_needs_no_deferred() -> None:
    log: list[str] = []
    entries = [
        ModuleEntry(f"m{i}", ScriptedFactory(f"m{i}", "success", log), Flag.REQUIRED, {}) for i in range(2)
    ]
    subject = LoginContext("r", entries).attempt(object())
    assert isinstance(subject, Subject) and subject.names("user") == {"m0", "m1"}
    assert log == ["login m0", "login m1", "commit m0", "commit m1"]


def test_a_failed_or_asynchronous_login_is_a_deferred() -> None:
    log: list[str] = []
    failed = LoginContext("r", [ModuleEntry("m0", ScriptedFactory("m0", "failure", log), Flag.REQUIRED, {})])
    d = failed.attempt(object())
    assert isinstance(d, defer.Deferred)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert isinstance(failures[0].value, LoginFailed) and log == ["login m0", "abort m0"]
    context, pending, log = _slow_context([Flag.REQUIRED])
    d = context.attempt(object())
    assert isinstance(d, defer.Deferred) and not d.called
    pending[0].callback(True)
    assert isinstance(d.result, Subject)


def test_asynchronous_modules_run_in_order() -> None:
    context, pending, log = _slow_context([Flag.REQUIRED, Flag.REQUIRED])
    d = context.login(object())
    assert log == ["login m0"]
    pending[0].callback(True)
    assert log == ["login m0", "login m1"]
    pending[1].callback(True)
    results: list[Any] = []
    d.addCallback(results.append)
    subject = results[0]
    assert subject.names("user") == {"m0", "m1"}


def _slow_context(flags: list[Flag]) -> tuple[LoginContext, list[defer.Deferred[bool]], list[str]]:
    pending: list[defer.Deferred[bool]] = []

    @implementer(ILoginModule)
    class Slow(Scripted):
        def login(self) -> defer.Deferred[bool]:  # type: ignore[override]
            self.log.append(f"login {self.name}")
            d: defer.Deferred[bool] = defer.Deferred()
            pending.append(d)
            return d

    log: list[str] = []

    class SlowFactory(ScriptedFactory):
        def create(self) -> Slow:
            return Slow(self.name, self.outcome, self.log)

    entries = [
        ModuleEntry(f"m{i}", SlowFactory(f"m{i}", "success", log), flag, {}) for i, flag in enumerate(flags)
    ]
    return LoginContext("r", entries), pending, log


def test_an_asynchronous_failure_is_that_modules_failure() -> None:
    context, pending, log = _slow_context([Flag.OPTIONAL, Flag.REQUIRED])
    d = context.login(object())
    pending[0].errback(LoginFailed("m0 says no"))
    assert log == ["login m0", "login m1"]
    pending[1].callback(True)
    results: list[Any] = []
    d.addCallback(results.append)
    assert results  # the optional module's failure does not fail the login
    assert log == ["login m0", "login m1", "commit m0", "commit m1"]


def test_cancelling_a_pending_login_cancels_the_module() -> None:
    context, pending, log = _slow_context([Flag.REQUIRED])
    d = context.login(object())
    failures: list[Any] = []
    d.addErrback(failures.append)
    d.cancel()
    assert pending[0].called  # cancelled: the module's failure, then the login's
    assert failures and isinstance(failures[0].value, (LoginFailed, defer.CancelledError))
    assert "abort m0" in log


def test_a_crashing_module_is_a_failure_not_a_success() -> None:
    @implementer(ILoginModule)
    class Crash(Scripted):
        def login(self) -> bool:
            raise ZeroDivisionError()

    class CrashFactory(ScriptedFactory):
        def create(self) -> Crash:
            return Crash(self.name, self.outcome, self.log)

    log: list[str] = []
    d = LoginContext("r", [ModuleEntry("c", CrashFactory("c", "success", log), Flag.SUFFICIENT, {})]).login(
        object()
    )
    failure: list[Any] = []
    d.addErrback(failure.append)
    assert isinstance(failure[0].value, LoginFailed)


def _realm(outcome: str, log: list[str], modules: int = 1) -> Any:
    from types import SimpleNamespace

    from tunnelgw.security.realm import RealmAuthenticator

    realm = SimpleNamespace(
        name="r",
        modules=[
            ModuleEntry(f"m{i}", ScriptedFactory(f"m{i}", outcome, log), Flag.REQUIRED, {})
            for i in range(modules)
        ],
        revalidate_interval=0.0,
        challenge="Basic",
    )
    return RealmAuthenticator(SimpleNamespace(realms=[realm]))  # type: ignore[arg-type]


def _request_and_service(roles: frozenset[str] = frozenset()) -> tuple[Any, Any]:
    from types import SimpleNamespace

    request = SimpleNamespace(
        conn_id="c", peer_host="192.0.2.1", headers={}, query={}, peer_certificate=None, transport="websocket"
    )
    return request, SimpleNamespace(name="svc", realm="r", require_roles=roles)


def test_realm_answers_at_once_when_its_modules_do() -> None:
    log: list[str] = []
    subject = _realm("success", log).authenticate(*_request_and_service())
    assert isinstance(subject, Subject)
    assert subject.user == "m0" and subject.attributes == {"address": "192.0.2.1", "realm": "r"}


def test_realm_refuses_a_failed_login_with_its_challenge() -> None:
    from tunnelgw.errors import Refusal

    log: list[str] = []
    failures: list[Any] = []
    _realm("failure", log).authenticate(*_request_and_service()).addErrback(failures.append)
    refusal = failures[0].value
    assert isinstance(refusal, Refusal) and refusal.status == 401
    assert refusal.headers == {"WWW-Authenticate": 'Basic realm="r"'}
    with pytest.raises(Refusal) as raised:  # no module at all: refused at once
        _realm("success", log, modules=0).authenticate(*_request_and_service())
    assert raised.value.status == 401


def test_realm_ends_the_login_it_refuses_for_missing_roles() -> None:
    from types import SimpleNamespace

    from tunnelgw.errors import Refusal
    from tunnelgw.security.realm import RealmAuthenticator

    log: list[str] = []
    realm = SimpleNamespace(
        name="r",
        modules=[ModuleEntry("m0", ScriptedFactory("m0", "success", log), Flag.REQUIRED, {})],
        revalidate_interval=0.0,
        challenge="Basic",
    )
    authenticator = RealmAuthenticator(SimpleNamespace(realms=[realm]))  # type: ignore[arg-type]
    request = SimpleNamespace(
        conn_id="c", peer_host="192.0.2.1", headers={}, query={}, peer_certificate=None, transport="websocket"
    )
    service = SimpleNamespace(name="admin", realm="r", require_roles=frozenset({"admin"}))
    with pytest.raises(Refusal) as refused:
        authenticator.authenticate(request, service)  # type: ignore[arg-type]
    assert refused.value.status == 403
    assert log == ["login m0", "commit m0", "logout m0"]


# The example of javax.security.auth.login.Configuration's documentation
# (J2SE 1.4 onwards), as it prints it: four modules and eight attempts,
# "*" a value that does not matter ("trivial value due to control returning
# to the application because a previous requisite module failed or a
# previous sufficient module succeeded").  Written from the documentation,
# not from the oracle above: an independent check of both.
JAVADOC_FLAGS = (Flag.REQUIRED, Flag.SUFFICIENT, Flag.REQUISITE, Flag.OPTIONAL)
JAVADOC_TABLE = (
    # SampleLoginModule  NTLoginModule  SmartCard  Kerberos   overall
    ("pass", "pass", "*", "*", "pass"),
    ("pass", "fail", "pass", "pass", "pass"),
    ("pass", "fail", "pass", "fail", "pass"),
    ("pass", "fail", "fail", "*", "fail"),
    ("fail", "pass", "*", "*", "fail"),
    ("fail", "fail", "pass", "pass", "fail"),
    ("fail", "fail", "pass", "fail", "fail"),
    ("fail", "fail", "fail", "*", "fail"),
)


@pytest.mark.parametrize("column", range(len(JAVADOC_TABLE)))
def test_the_javadoc_example(column: int) -> None:
    *statuses, overall = JAVADOC_TABLE[column]
    choices = [
        ("success", "failure") if s == "*" else ("success" if s == "pass" else "failure",) for s in statuses
    ]
    for outcomes in itertools.product(*choices):
        d, _ = run(list(zip(JAVADOC_FLAGS, outcomes, strict=True)))
        results: list[Any] = []
        d.addBoth(results.append)
        (result,) = results
        assert isinstance(result, Subject) == (overall == "pass"), (column, outcomes)
        assert oracle(list(zip(JAVADOC_FLAGS, outcomes, strict=True)))[0] == (overall == "pass")
