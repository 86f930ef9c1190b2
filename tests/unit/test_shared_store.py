"""
The limit store in a cluster: this instance's counts plus what Redis last
said the others counted; this process's own when there is no Redis.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.cluster.engine import LocalEngine
from tunnelgw.cluster.shared import SharedLimitStore
from tunnelgw.limits import MemoryLimitStore


class Redisish:
    """An engine whose counters answer what the test says the cluster counted."""

    def __init__(self) -> None:
        self.adds: list[tuple[str, int, float, defer.Deferred[Any]]] = []

    def add(self, key: str, amount: int, window: float) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.adds.append((key, amount, window, d))
        return d


class SharedLimitStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.engine: Any = Redisish()
        self.store = SharedLimitStore(MemoryLimitStore(self.clock), lambda: self.engine, self.clock)

    def test_the_others_counts_are_added_once_redis_answers(self) -> None:
        self.assertEqual(self.store.hit("user:alice", 300)[0], 1)
        [(key, amount, window, answer)] = self.engine.adds
        self.assertEqual((key, amount, window), ("user:alice", 1, 300))
        answer.callback(8)  # the other instances counted 7
        self.assertEqual(self.store.peek("user:alice")[0], 8)
        self.assertEqual(self.store.hit("user:alice", 300)[0], 9)
        self.clock.advance(300)
        self.assertEqual(self.store.peek("user:alice"), (0, 0.0))

    def test_a_refund_is_told_too(self) -> None:
        self.store.hit("user:alice", 300)
        self.store.refund("user:alice")
        self.assertEqual([a[1] for a in self.engine.adds], [1, -1])

    def test_without_redis_it_is_this_processs(self) -> None:
        self.engine = LocalEngine(self.clock, registry=None)
        self.assertEqual(self.store.hit("addr:192.0.2.1", 60)[0], 1)
        self.assertEqual(self.store.hit("addr:192.0.2.1", 60)[0], 2)

    def test_a_failed_answer_changes_nothing(self) -> None:
        self.store.hit("user:alice", 300)
        self.engine.adds[0][3].errback(ConnectionError())
        self.assertEqual(self.store.peek("user:alice")[0], 1)

    def test_buckets_and_places_are_this_processs(self) -> None:
        self.assertEqual(self.store.take("handshakes:x", 1, 1), 0.0)
        self.assertGreater(self.store.take("handshakes:x", 1, 1), 0.0)
        self.assertTrue(self.store.acquire("tunnels:alice", 1))
        self.assertFalse(self.store.acquire("tunnels:alice", 1))
        self.assertEqual(self.store.held("tunnels:alice"), 1)
        self.store.release("tunnels:alice")
        self.assertEqual(self.engine.adds, [])
