"""Table tests of the scheduling queue with an injected clock: priority order, back-off timing
(1 s doubling to 10 s), parking until a cluster event, the 5-minute flush, gated pods, the sizes
reported for the metrics."""

from __future__ import annotations

import asyncio

import pytest

from pymaster.scheduler.queue import ACTIVE, BACKOFF, GATED, UNSCHEDULABLE, SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(queue: SchedulingQueue, key: str) -> None:
    """Pops ``key`` (it must be first) and reports its attempt as unschedulable."""
    cycle = queue.move_cycle
    assert queue.pop_nowait() == key
    queue.mark_unschedulable(key, cycle)


def drain(queue: SchedulingQueue) -> list[str]:
    popped = []
    while (key := queue.pop_nowait()) is not None:
        popped.append(key)
    return popped


def test_fifo_without_duplicates(clock):
    queue = SchedulingQueue(clock=clock)
    for key in ("a", "b", "a", "c"):
        queue.add(key)
    assert drain(queue) == ["a", "b", "c"]


def test_higher_priority_first_then_time_queued(clock):
    queue = SchedulingQueue(clock=clock)
    for key, priority in (("low", 0), ("high", 1000), ("mid", 10), ("high-later", 1000)):
        queue.add(key, priority)
        clock.now += 1
    assert drain(queue) == ["high", "high-later", "mid", "low"]


@pytest.mark.parametrize(
    ("attempts", "backoff"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]
)
def test_backoff_doubles_up_to_ten_seconds(clock, attempts, backoff):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    for _ in range(attempts):
        clock.now += 100  # each earlier back-off is long over
        cycle = queue.move_cycle
        assert queue.pop_nowait() == "a"
        queue.move_all()  # an event during the attempt: back-off, not parked
        queue.mark_unschedulable("a", cycle)
    assert queue.backoff_seconds("a") == backoff
    assert queue.queue_of("a") == BACKOFF
    clock.now += backoff - 0.01
    assert queue.pop_nowait() is None
    clock.now += 0.02
    assert queue.pop_nowait() == "a"


def test_unschedulable_pod_waits_for_an_event_then_its_backoff(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    fail(queue, "a")
    assert queue.queue_of("a") == UNSCHEDULABLE
    clock.now += 60
    assert queue.pop_nowait() is None  # parked: no event, no retry
    queue.move_all()  # a node was added; the back-off (1 s) is long over
    assert queue.queue_of("a") == ACTIVE
    assert queue.pop_nowait() == "a"


def test_event_right_after_a_failure_goes_through_backoff(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    fail(queue, "a")
    clock.now += 0.5
    queue.move_all()
    assert queue.queue_of("a") == BACKOFF
    assert queue.pop_nowait() is None
    clock.now += 0.5
    assert queue.pop_nowait() == "a"


def test_move_during_attempt_is_not_lost(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    cycle = queue.move_cycle
    assert queue.pop_nowait() == "a"
    queue.move_all()  # e.g. a node was added while "a" was being scheduled
    queue.mark_unschedulable("a", cycle)
    assert queue.queue_of("a") == BACKOFF
    clock.now += 1
    assert queue.pop_nowait() == "a"


def test_parked_pods_are_flushed_after_five_minutes(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    fail(queue, "a")
    clock.now += 299
    assert queue.pop_nowait() is None
    clock.now += 1
    assert queue.pop_nowait() == "a"


def test_pod_update_unparks_it(clock):
    queue = SchedulingQueue(clock=clock)
    for key in ("a", "b"):
        queue.add(key)
    fail(queue, "a")
    fail(queue, "b")
    queue.remove("a")
    clock.now += 5
    queue.add("b")  # the pod's spec changed: try again
    assert "a" not in queue
    assert drain(queue) == ["b"]


def test_gated_pods_wait_until_the_last_gate_goes(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("gated", gated=True)
    queue.add("free")
    assert queue.queue_of("gated") == GATED
    queue.move_all()
    assert drain(queue) == ["free"]
    queue.add("gated", gated=False)
    assert drain(queue) == ["gated"]


def test_sizes_per_queue(clock):
    queue = SchedulingQueue(clock=clock)

    def sizes() -> dict[str, int]:
        return {name: queue.count(name) for name in (ACTIVE, BACKOFF, UNSCHEDULABLE, GATED)}

    queue.add("a")
    queue.add("b")
    queue.add("g", gated=True)
    fail(queue, "a")
    assert sizes() == {ACTIVE: 1, BACKOFF: 0, UNSCHEDULABLE: 1, GATED: 1}
    queue.move_all()  # "a" still backs off
    assert sizes() == {ACTIVE: 1, BACKOFF: 1, UNSCHEDULABLE: 0, GATED: 1}
    queue.remove("g")
    assert sizes()[GATED] == 0


def test_removed_pod_forgets_its_attempts(clock):
    queue = SchedulingQueue(clock=clock)
    queue.add("a")
    fail(queue, "a")
    queue.remove("a")
    queue.add("a")
    assert queue.backoff_seconds("a") == 0
    assert queue.pop_nowait() == "a"


async def test_pop_waits_for_backoff_to_end():
    queue = SchedulingQueue(initial_backoff=0.05)
    queue.add("a")
    cycle = queue.move_cycle
    assert await queue.pop() == "a"
    queue.move_all()
    queue.mark_unschedulable("a", cycle)  # back-off 0.05 s
    assert await asyncio.wait_for(queue.pop(), 5) == "a"


async def test_pop_waits_for_add():
    queue = SchedulingQueue()
    waiter = asyncio.ensure_future(queue.pop())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("b")
    assert await asyncio.wait_for(waiter, 5) == "b"
