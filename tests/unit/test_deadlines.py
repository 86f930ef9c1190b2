"""
Timers of one delay on one reactor timer: they fire when callLater's would,
in order; a cancelled one is gone at once.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tunnelgw.tunnel.deadlines import Deadlines, deadlines, pending_on


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.queue = Deadlines(self.clock, 5.0)
        self.fired: list[str] = []

    def arm(self, name: str) -> object:
        return self.queue.call(lambda: self.fired.append(name))

    def test_each_fires_at_its_own_deadline(self) -> None:
        self.arm("a")
        self.clock.advance(2)
        self.arm("b")
        self.clock.advance(2.999)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.001)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(1.999)
        self.assertEqual(self.fired, ["a"])
        self.clock.advance(0.001)
        self.assertEqual(self.fired, ["a", "b"])
        self.assertEqual(len(self.queue), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_is_gone_and_the_next_still_fires_on_time(self) -> None:
        a = self.arm("a")
        self.clock.advance(1)
        self.arm("b")
        self.assertTrue(a.active())  # type: ignore[attr-defined]
        a.cancel()  # type: ignore[attr-defined]
        self.assertFalse(a.active())  # type: ignore[attr-defined]
        self.assertEqual(len(self.queue), 1)
        self.assertRaises(error.AlreadyCancelled, a.cancel)  # type: ignore[attr-defined]
        self.clock.advance(4)  # a's time: nothing due, the timer is set for b
        self.assertEqual(self.fired, [])
        self.clock.advance(1)
        self.assertEqual(self.fired, ["b"])

    def test_called_cannot_be_cancelled(self) -> None:
        a = self.arm("a")
        self.clock.advance(5)
        self.assertFalse(a.active())  # type: ignore[attr-defined]
        self.assertRaises(error.AlreadyCalled, a.cancel)  # type: ignore[attr-defined]

    def test_one_armed_while_firing_waits_its_full_delay(self) -> None:
        def again() -> None:
            self.fired.append("first")
            self.arm("second")

        self.queue.call(again)
        self.clock.advance(5)
        self.assertEqual(self.fired, ["first"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4.5)
        self.assertEqual(self.fired, ["first"])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["first", "second"])

    def test_a_failing_timer_is_logged_and_the_others_fire(self) -> None:
        def boom() -> None:
            raise ZeroDivisionError()

        self.queue.call(boom)
        self.arm("after")
        self.clock.advance(5)
        self.assertEqual(self.fired, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_nothing_kept_once_cancelled(self) -> None:
        import gc
        import weakref

        class Owner:
            def timeout(self) -> None:
                pass

        owner = Owner()
        ref = weakref.ref(owner)
        self.queue.call(owner.timeout).cancel()
        del owner
        gc.collect()
        self.assertIsNone(ref())

    def test_shared_per_clock_and_delay(self) -> None:
        clock = Clock()
        self.assertIs(deadlines(clock, 5.0), deadlines(clock, 5.0))
        self.assertIsNot(deadlines(clock, 5.0), deadlines(clock, 6.0))
        self.assertIsNot(deadlines(clock, 5.0), deadlines(Clock(), 5.0))
        deadlines(clock, 5.0).call(lambda: None)
        deadlines(clock, 6.0).call(lambda: None)
        self.assertEqual(pending_on(clock), 2)
        clock.advance(6)
        self.assertEqual(pending_on(clock), 0)
