"""The controllers' WorkQueue: dedup, re-queue after processing, delays, back-off, shutdown,
metrics; and the Controller base (pymaster.controllers.runtime) driving one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from pymaster.api.errors import Conflict
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import MAX_DELAY, ShutDown, WorkQueue, WorkQueueMetrics

DEADLINE = 5.0


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def get_now(queue: WorkQueue) -> str:
    return await asyncio.wait_for(queue.get(), DEADLINE)


async def test_a_queued_key_is_queued_once() -> None:
    queue = WorkQueue("test")
    for key in ("a", "b", "a", "a", "b"):
        queue.add(key)
    assert len(queue) == 2
    assert [await get_now(queue), await get_now(queue)] == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_added_while_processing_comes_back_only_after_done() -> None:
    queue = WorkQueue("test")
    queue.add("a")
    assert await get_now(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # never handed to a second worker while the first holds it
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    queue.done("a")
    assert await asyncio.wait_for(second, DEADLINE) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue = WorkQueue("test")
    queue.add("a")
    await get_now(queue)
    queue.done("a")
    assert len(queue) == 0


async def test_add_after_delivers_in_due_order_and_the_earlier_time_wins() -> None:
    queue = WorkQueue("test")
    queue.add_after("late", 0.2)
    queue.add_after("early", 0.05)
    queue.add_after("late", 0.01)  # asked again sooner: the earlier time wins
    queue.add_after("early", 5.0)  # asked again later: keeps its earlier time
    queue.add_after("now", 0)
    assert len(queue) == 1
    assert [await get_now(queue) for _ in range(3)] == ["now", "late", "early"]


async def test_rate_limited_back_off_doubles_caps_and_forget_resets() -> None:
    queue = WorkQueue("test")
    delays = [queue.when("k") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert queue.num_requeues("k") == 5
    for _ in range(100):
        last = queue.when("k")
    assert last == MAX_DELAY
    queue.forget("k")
    assert queue.num_requeues("k") == 0
    assert queue.when("k") == pytest.approx(0.005)
    assert queue.num_requeues("other") == 0


async def test_add_rate_limited_waits_its_back_off() -> None:
    queue = WorkQueue("test", base_delay=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_rate_limited("k")
    queue.add_rate_limited("k")  # second failure: 0.1 s, but the pending 0.05 s wins
    assert len(queue) == 0
    assert await get_now(queue) == "k"
    assert loop.time() - start >= 0.045
    assert queue.num_requeues("k") == 2


async def test_shut_down_wakes_waiting_workers_and_ignores_new_keys() -> None:
    queue = WorkQueue("test")
    waiters = [asyncio.ensure_future(queue.get()) for _ in range(2)]
    queue.add_after("later", 0.01)
    await asyncio.sleep(0)
    queue.shut_down()
    for waiter in waiters:
        with pytest.raises(ShutDown):
            await asyncio.wait_for(waiter, DEADLINE)
    queue.add("a")
    queue.add_rate_limited("a")
    assert len(queue) == 0
    with pytest.raises(ShutDown):
        await get_now(queue)


async def test_metrics_use_client_go_names_per_queue() -> None:
    registry = CollectorRegistry()
    now = [100.0]
    metrics = WorkQueueMetrics(registry, clock=lambda: now[0])
    queue = WorkQueue("replicaset", metrics, clock=lambda: now[0])
    other = WorkQueue("job", metrics, clock=lambda: now[0])
    queue.add("a")
    queue.add("a")
    queue.add("b")
    other.add("x")

    def value(name: str, queue_name: str = "replicaset") -> float | None:
        return registry.get_sample_value(name, {"name": queue_name})

    assert value("workqueue_adds_total") == 2
    assert value("workqueue_adds_total", "job") == 1
    assert value("workqueue_depth") == 2
    now[0] = 101.5
    key = await get_now(queue)
    assert value("workqueue_depth") == 1
    assert value("workqueue_queue_duration_seconds_count") == 1
    assert value("workqueue_queue_duration_seconds_sum") == pytest.approx(1.5)
    now[0] = 104.0
    assert value("workqueue_unfinished_work_seconds") == pytest.approx(2.5)
    assert value("workqueue_longest_running_processor_seconds") == pytest.approx(2.5)
    assert value("workqueue_unfinished_work_seconds", "job") == 0
    queue.add_rate_limited(key)
    queue.done(key)
    assert value("workqueue_retries_total") == 1
    assert value("workqueue_work_duration_seconds_sum") == pytest.approx(2.5)
    assert value("workqueue_longest_running_processor_seconds") == 0


# ---- the Controller base ----


class ToyController(Controller):
    """Fails the first ``failures`` syncs of each key; records every sync."""

    name = "toy"

    def __init__(self, failures: int = 0, error: Exception | None = None, **kwargs):
        super().__init__(**kwargs)  # no informers: keys come from the test
        self.failures = failures
        self.error = error or RuntimeError("boom")
        self.calls: list[tuple[str, float]] = []
        self.during_sync: Callable[[str], None] | None = None
        self.release = asyncio.Event()
        self.release.set()

    async def sync(self, key: str) -> None:
        self.calls.append((key, asyncio.get_running_loop().time()))
        if self.during_sync is not None:
            self.during_sync(key)
        await self.release.wait()
        if len(self.calls) <= self.failures:
            raise self.error


async def test_a_failing_sync_is_retried_with_back_off_then_forgotten() -> None:
    controller = ToyController(failures=2)
    controller.queue.base_delay = 0.02
    await controller.start()
    try:
        controller.enqueue("ns/a")
        await wait_until(lambda: len(controller.calls) == 3)
        times = [t for _, t in controller.calls]
        assert times[1] - times[0] >= 0.015  # first back-off: base
        assert times[2] - times[1] >= 0.035  # second: doubled
        await wait_until(lambda: controller.queue.num_requeues("ns/a") == 0)  # success forgets
        assert [key for key, _ in controller.calls] == ["ns/a"] * 3
    finally:
        await controller.stop()


async def test_races_are_retried_too(caplog: pytest.LogCaptureFixture) -> None:
    controller = ToyController(failures=1, error=Conflict("the object has been modified"))
    await controller.start()
    try:
        controller.enqueue("ns/a")
        await wait_until(lambda: len(controller.calls) == 2)
    finally:
        await controller.stop()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_key_added_during_its_sync_is_synced_again_after() -> None:
    controller = ToyController(workers=2)
    controller.release.clear()
    await controller.start()
    try:
        controller.enqueue("ns/a")
        await wait_until(lambda: len(controller.calls) == 1)
        controller.enqueue("ns/a")
        await asyncio.sleep(0.02)
        assert len(controller.calls) == 1  # the second worker did not take the key being synced
        controller.release.set()
        await wait_until(lambda: len(controller.calls) == 2)
    finally:
        await controller.stop()


async def test_stop_ends_the_workers_even_mid_sync() -> None:
    controller = ToyController(workers=3)
    controller.release.clear()
    await controller.start()
    controller.enqueue("ns/a")
    await wait_until(lambda: len(controller.calls) == 1)
    await asyncio.wait_for(controller.stop(), DEADLINE)
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("toy-"))
