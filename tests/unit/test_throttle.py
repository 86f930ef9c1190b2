"""
Bounds on logins and the limit store, in memory: failed-login throttling
by address and by user (N allowed, N+1 refused with 429), the bounded
queue of asynchronous logins (503), the password hashes verified a few at
a time, and a login abandoned by its client.
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from argon2 import PasswordHasher

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tunnelgw.config.loader import loads
from tunnelgw.config.model import LoginLimits
from tunnelgw.config.values import ConfigError
from tunnelgw.errors import Refusal
from tunnelgw.interfaces import ILimitStore
from tunnelgw.limits import MemoryLimitStore
from tunnelgw.security.jaas import Flag, LoginContext, LoginFailed, ModuleEntry
from tunnelgw.security.modules.password_file import HASHER, PasswordFileFactory, dummy_hash, verify
from tunnelgw.security.realm import RealmAuthenticator
from tunnelgw.security.throttle import LoginGuard, Waiting

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


# -- the store ------------------------------------------------------------------


def test_memory_store_provides_the_interface() -> None:
    assert verifyObject(ILimitStore, MemoryLimitStore(Clock()))


def test_windows_count_refund_and_end() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    assert store.peek("k") == (0, 0.0)
    assert store.hit("k", 10) == (1, 10)
    clock.advance(4)
    assert store.hit("k", 10) == (2, 6)
    store.refund("k")
    assert store.peek("k") == (1, 6)
    clock.advance(6)
    assert store.peek("k") == (0, 0.0)  # the window ended
    assert store.hit("k", 10) == (1, 10)


def test_buckets_refill_at_their_rate() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock)
    assert [store.take("b", rate=2, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert store.take("b", rate=2, burst=3) == pytest.approx(0.5)
    clock.advance(0.5)
    assert store.take("b", rate=2, burst=3) == 0.0
    clock.advance(100)  # never more than the burst
    assert [store.take("b", rate=2, burst=3) for _ in range(4)][-1] > 0


def test_held_places() -> None:
    store = MemoryLimitStore(Clock())
    assert store.acquire("u", 2) and store.acquire("u", 2)
    assert not store.acquire("u", 2)
    assert store.held("u") == 2
    store.release("u")
    assert store.acquire("u", 2)
    store.release("u")
    store.release("u")
    assert store.held("u") == 0


def test_keys_are_bounded() -> None:
    store = MemoryLimitStore(Clock(), max_keys=3)
    for i in range(10):
        store.hit(f"k{i}", 60)
        store.take(f"b{i}", 1, 1)
    assert len(store._windows) == 3 and len(store._buckets) == 3
    assert store.peek("k9")[0] == 1 and store.peek("k0") == (0, 0.0)  # the oldest went


# -- the guard, through the realm ------------------------------------------------------


class _Module:
    """
    Succeeds for password "good", fails otherwise; asynchronous when its
    factory holds a list of pending Deferreds.
    """

    def __init__(self, pending: list[defer.Deferred[bool]] | None, aborted: list[str]) -> None:
        self.pending = pending
        self.aborted = aborted

    def initialize(self, subject: Any, callbacks: Any, shared: Any, options: Any) -> None:
        self.subject, self.callbacks = subject, callbacks

    def login(self) -> Any:
        good = self.callbacks.basic is not None and self.callbacks.basic[1] == "good"
        if self.pending is None:
            if not good:
                raise LoginFailed("bad password")
            return True
        d: defer.Deferred[bool] = defer.Deferred()
        self.pending.append(d)

        def answered(ok: bool) -> bool:
            if not ok:
                raise LoginFailed("bad password")
            return True

        return d.addCallback(answered)

    def commit(self) -> bool:
        from tunnelgw.security import Principal

        self.subject.principals.add(Principal("user", self.callbacks.basic[0]))
        return True

    def abort(self) -> None:
        self.aborted.append("abort")

    def logout(self) -> None:
        pass

    def revalidate(self, subject: Any) -> bool:
        return True


class _Factory:
    name = "scripted"

    def __init__(self, pending: list[defer.Deferred[bool]] | None = None) -> None:
        self.pending = pending
        self.aborted: list[str] = []

    def parse_config(self, options: Any, key: str) -> Any:
        return options

    def create(self) -> _Module:
        return _Module(self.pending, self.aborted)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(user: str = "alice", password: str = "bad", peer: str = "192.0.2.1", auth: bool = True) -> Any:
    headers = {"authorization": [basic(user, password)]} if auth else {}
    return SimpleNamespace(
        conn_id="c", peer_host=peer, headers=headers, query={}, peer_certificate=None, transport="websocket"
    )


SERVICE = SimpleNamespace(name="svc", realm="r", require_roles=frozenset())


class GuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def realm(self, factory: _Factory, waiting: Waiting | None = None, **limits: Any) -> RealmAuthenticator:
        realm = SimpleNamespace(
            name="r",
            modules=[ModuleEntry("m", factory, Flag.REQUIRED, {})],
            revalidate_interval=0.0,
            challenge="Basic",
        )
        guard = LoginGuard(LoginLimits(**limits), MemoryLimitStore(self.clock), waiting)
        return RealmAuthenticator(SimpleNamespace(realms=[realm]), guard)  # type: ignore[arg-type]

    def status(self, authenticator: RealmAuthenticator, req: Any) -> int:
        try:
            result = authenticator.authenticate(req, SERVICE)
        except Refusal as refusal:
            self.last = refusal
            return refusal.status
        if isinstance(result, defer.Deferred):
            failure = self.failureResultOf(result, Refusal)
            self.last = failure.value
            return failure.value.status
        return 200

    def test_n_failures_per_address_then_429_until_the_window_ends(self) -> None:
        authenticator = self.realm(_Factory(), max_failures_per_address=3, max_failures_per_user=100)
        statuses = [self.status(authenticator, request(user=f"u{i}")) for i in range(4)]
        self.assertEqual(statuses, [401, 401, 401, 429])
        self.assertEqual(self.last.headers, {"Retry-After": "300"})
        # even the right password waits: nothing runs for a throttled address
        self.assertEqual(self.status(authenticator, request(password="good")), 429)
        # another address is not concerned
        self.assertEqual(self.status(authenticator, request(password="good", peer="192.0.2.2")), 200)
        throttled = [e for e in self.events if e.get("event") == "login_throttled"]
        self.assertEqual(throttled[0]["kind"], "address")
        self.assertEqual(throttled[0]["peer"], "192.0.2.1")
        self.assertEqual(throttled[0]["count"], 3)
        self.clock.advance(299)
        self.assertEqual(self.status(authenticator, request()), 429)
        self.assertEqual(self.last.headers, {"Retry-After": "1"})
        self.clock.advance(1)
        self.assertEqual(self.status(authenticator, request(password="good")), 200)

    def test_n_failures_per_user_from_any_address(self) -> None:
        authenticator = self.realm(_Factory(), max_failures_per_address=100, max_failures_per_user=2)
        statuses = [self.status(authenticator, request(peer=f"192.0.2.{i}")) for i in range(3)]
        self.assertEqual(statuses, [401, 401, 429])
        self.assertEqual(self.status(authenticator, request(user="bob", password="good")), 200)
        (event,) = [e for e in self.events if e.get("event") == "login_throttled"]
        self.assertEqual((event["kind"], event["principal"]), ("user", "alice"))
        self.assertNotIn("bad", repr(event))  # never the password

    def test_failures_in_a_users_name_do_not_lock_them_out_of_a_familiar_address(self) -> None:
        authenticator = self.realm(_Factory(), max_failures_per_address=100, max_failures_per_user=2)
        self.assertEqual(self.status(authenticator, request(password="good", peer="192.0.2.1")), 200)
        for i in range(2):
            self.assertEqual(self.status(authenticator, request(peer=f"198.51.100.{i}")), 401)
        self.assertEqual(self.status(authenticator, request(password="good", peer="198.51.100.9")), 429)
        # from where alice logged in before, she still can
        self.assertEqual(self.status(authenticator, request(password="good", peer="192.0.2.1")), 200)
        # a name only claimed (a failed login) makes no address familiar
        self.assertEqual(self.status(authenticator, request(user="bob", peer="192.0.2.7")), 401)
        self.assertEqual(self.status(authenticator, request(user="bob", peer="192.0.2.8")), 401)
        self.assertEqual(self.status(authenticator, request(user="bob", peer="192.0.2.7")), 429)

    def test_a_success_is_not_a_failure(self) -> None:
        authenticator = self.realm(_Factory(), max_failures_per_address=2)
        for _ in range(10):
            self.assertEqual(self.status(authenticator, request(password="good")), 200)
        self.assertEqual(self.status(authenticator, request()), 401)

    def test_requests_without_credentials_are_not_counted(self) -> None:
        authenticator = self.realm(_Factory(), max_failures_per_address=1)
        for _ in range(5):
            self.assertEqual(self.status(authenticator, request(auth=False)), 401)
        self.assertEqual(self.status(authenticator, request(password="good")), 200)

    def test_logins_in_flight_count_before_they_answer(self) -> None:
        """
        Many guesses sent at once count as many: the fourth concurrent one
        is throttled before the first has answered.
        """
        pending: list[defer.Deferred[bool]] = []
        authenticator = self.realm(_Factory(pending), max_failures_per_address=3)
        waiting = [authenticator.authenticate(request(), SERVICE) for _ in range(3)]
        self.assertEqual(self.status(authenticator, request()), 429)
        for answer in pending:
            answer.callback(False)
        for d in waiting:
            self.assertEqual(self.failureResultOf(d, Refusal).value.status, 401)  # type: ignore[arg-type]

    def test_at_most_max_pending_logins_wait(self) -> None:
        pending: list[defer.Deferred[bool]] = []
        factory = _Factory(pending)
        authenticator = self.realm(factory, max_pending=2, max_failures_per_address=100)
        first = authenticator.authenticate(request(password="good"), SERVICE)
        second = authenticator.authenticate(request(password="good"), SERVICE)
        self.assertEqual(self.status(authenticator, request(password="good")), 503)
        self.assertEqual(self.last.headers, {"Retry-After": "1"})
        self.assertTrue(pending[2].called)  # the third was cancelled, not left queued
        self.assertEqual(factory.aborted, ["abort"])
        self.assertEqual([e["pending"] for e in self.events if e.get("event") == "login_busy"], [2])
        pending[0].callback(True)
        self.successResultOf(first)
        third = authenticator.authenticate(request(password="good"), SERVICE)  # room again
        pending[1].callback(True)
        pending[3].callback(True)
        self.successResultOf(second)
        self.successResultOf(third)

    def test_logins_waiting_under_a_guard_count_under_the_next(self) -> None:
        # a reload makes a new guard: the logins begun before still wait
        pending: list[defer.Deferred[bool]] = []
        factory = _Factory(pending)
        before = self.realm(factory, max_pending=2, max_failures_per_address=100)
        first = before.authenticate(request(password="good"), SERVICE)
        second = before.authenticate(request(password="good"), SERVICE)
        waiting = before._guard.waiting  # type: ignore[union-attr]
        after = self.realm(factory, waiting, max_pending=2, max_failures_per_address=100)
        guard = after._guard
        assert guard is not None and guard is not before._guard
        self.assertEqual(self.status(after, request(password="good")), 503)
        self.assertEqual([e["pending"] for e in self.events if e.get("event") == "login_busy"], [2])
        pending[0].callback(True)  # one begun before the reload ends: room under the new guard
        self.successResultOf(first)
        third = after.authenticate(request(password="good"), SERVICE)
        self.assertEqual(guard.pending, 2)
        pending[1].callback(True)
        pending[3].callback(True)
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(guard.pending, 0)

    def test_a_login_abandoned_by_its_client_is_no_failure(self) -> None:
        """
        The client leaves while its login waits: the login is cancelled,
        its modules aborted, and nothing is logged as a failure or a
        traceback (five clients leaving made five CRITICAL tracebacks).
        """
        pending: list[defer.Deferred[bool]] = []
        factory = _Factory(pending)
        authenticator = self.realm(factory)
        d = authenticator.authenticate(request(password="good"), SERVICE)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(factory.aborted, ["abort"])
        self.assertEqual([e for e in self.events if e.get("log_failure") is not None], [])
        self.assertEqual([e for e in self.events if e.get("event") == "login_module"], [])
        self.assertEqual(self.flushLoggedErrors(), [])


# -- password_file: a few hashes at a time, bounded memory -------------------------


def test_hashes_are_verified_threads_at_a_time(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{FAST.hash('pw')}\n")
    queued: list[tuple[defer.Deferred[Any], Any]] = []

    def in_thread(f: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        queued.append((d, lambda: f(*args)))
        return d

    factory = PasswordFileFactory(in_thread)
    options = factory.parse_config({"path": str(users), "threads": 2}, "o")
    entry = ModuleEntry("password_file", factory, Flag.REQUIRED, options)
    from tunnelgw.security.callbacks import Callbacks

    logins = [
        LoginContext("t", [entry]).login(Callbacks("192.0.2.1", basic=("alice", "pw"))) for _ in range(5)
    ]
    assert len(queued) == 2  # two in threads; three wait, not in the thread pool
    logins[4].addErrback(lambda f: f.trap(defer.CancelledError))
    logins[4].cancel()  # a waiting one whose client left is never hashed
    done = 0
    while queued:
        d, work = queued.pop(0)
        d.callback(work())
        done += 1
    assert done == 4
    assert all(d.called for d in logins)


def test_hashes_asking_too_much_memory_are_refused(tmp_path: Path) -> None:
    users = tmp_path / "users"
    big = PasswordHasher(time_cost=1, memory_cost=4096, parallelism=1).hash("pw")
    users.write_text(f"alice:{big}\n")
    with pytest.raises(ConfigError, match="users:1: the hash asks 4096 KiB.*over max_memory_cost .1024 KiB"):
        PasswordFileFactory().parse_config({"path": str(users), "max_memory_cost": 1024}, "o")
    PasswordFileFactory().parse_config({"path": str(users)}, "o")  # the default admits 64 MiB
    users.write_text("alice:$argon2id$garbage\n")
    with pytest.raises(ConfigError, match="users:1: not an argon2 hash"):
        PasswordFileFactory().parse_config({"path": str(users)}, "o")


def test_an_unknown_user_costs_what_the_files_hashes_cost() -> None:
    from argon2 import extract_parameters

    made = FAST.hash("pw")
    dummy = dummy_hash(made)
    assert extract_parameters(dummy) == extract_parameters(made)
    assert not verify(dummy, "pw") and not verify(dummy, "")
    assert extract_parameters(dummy_hash(None)) == extract_parameters(HASHER.hash("x"))


def test_new_hashes_use_owasps_parameters() -> None:
    from argon2 import Type, extract_parameters

    p = extract_parameters(HASHER.hash("pw"))
    assert (p.type, p.memory_cost, p.time_cost, p.parallelism) == (Type.ID, 19 * 1024, 2, 1)


def test_login_limits_configuration() -> None:
    base = '[gateway]\nlisten = ["tcp:1"]\n'
    assert loads(base).logins == LoginLimits()
    limits = loads(
        base + "[gateway.logins]\nmax_pending = 3\nmax_failures_per_address = 4\n"
        "max_failures_per_user = 5\nfailure_window = 6\n"
    ).logins
    assert limits == LoginLimits(3, 4, 5, 6.0, 86400.0)
    with pytest.raises(ConfigError, match="gateway.logins.max_pending"):
        loads(base + "[gateway.logins]\nmax_pending = 0\n")
    with pytest.raises(ConfigError, match="gateway.logins.colour: unknown key"):
        loads(base + "[gateway.logins]\ncolour = 1\n")


# -- slots: the verification queue --------------------------------------------------


def test_slots_bound_the_work_and_serve_familiar_logins_first() -> None:
    from tunnelgw.security.slots import Slots

    started: list[tuple[str, defer.Deferred[str]]] = []

    def work(name: str) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        started.append((name, d))
        return d

    slots = Slots(2)
    results: dict[str, Any] = {}

    def keep(result: Any, name: str) -> None:
        results[name] = result

    for name, first in (("a", False), ("b", False), ("c", False), ("d", True), ("e", False)):
        slots.run(first, work, name).addBoth(keep, name)
    assert [n for n, _ in started] == ["a", "b"] and slots.waiting == 3
    started[0][1].callback("A")
    assert [n for n, _ in started] == ["a", "b", "d"]  # the familiar one went ahead
    assert results == {"a": "A"}
    started[1][1].errback(LoginFailed("no"))
    assert [n for n, _ in started] == ["a", "b", "d", "c"]
    assert isinstance(results["b"].value, LoginFailed)


def test_a_cancelled_login_leaves_the_queue_and_a_running_one_keeps_its_slot() -> None:
    from tunnelgw.security.slots import Slots

    started: list[defer.Deferred[str]] = []

    def work() -> defer.Deferred[str]:
        started.append(defer.Deferred())
        return started[-1]

    slots = Slots(1)
    running = slots.run(False, work)
    waiting = slots.run(False, work)
    third = slots.run(False, work)
    for d in (running, waiting):
        d.addErrback(lambda f: f.trap(defer.CancelledError))
        d.cancel()
    assert slots.busy == 1 and slots.waiting == 1  # the thread still runs: the bound holds
    started[0].callback("late")  # its client left: nobody hears of it
    assert len(started) == 2 and slots.busy == 1  # the third, never the cancelled second
    started[1].callback("ok")
    assert third.result == "ok" and slots.busy == 0
