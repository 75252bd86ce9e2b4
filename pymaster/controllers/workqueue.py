"""The controllers' work queue: client-go's ``workqueue`` (rate-limiting, delaying queue) on asyncio.

A queue holds keys ("namespace/name"), not objects: a controller's sync reads the current state
from its informers, so ten changes of one object before a worker gets to it cost one sync.

- ``add(key)``: a key already waiting is not queued twice (dedup); a key being processed is queued
  again only after ``done(key)``, so two workers never sync the same key at once.
- ``add_after(key, seconds)``: the key is added once the delay has passed; asked again while it
  waits, the earlier time wins (client-go's delaying queue).
- ``add_rate_limited(key)``: ``add_after`` with a per-key exponential back-off, 5 ms doubling
  per failure up to 1000 s (client-go's ``ItemExponentialFailureRateLimiter`` with the defaults of
  ``DefaultControllerRateLimiter``); ``forget(key)`` resets it after a successful sync. The overall
  token bucket (10 qps, burst 100) that client-go's default limiter adds on top is left out: it
  only paces retries across keys, and a controller here writes through the same process.
- ``shut_down()``: new keys are ignored and ``get()`` raises ``ShutDown`` at once, also in the
  waiting workers. Keys still queued are dropped (client-go lets workers drain them); they are
  level-triggered, so the next start relists and finds the same work.

Metrics (``WorkQueueMetrics``: one instance per master, every queue labelled by ``name``), with
client-go's names: ``workqueue_adds_total``, ``workqueue_depth``,
``workqueue_queue_duration_seconds`` (add to get), ``workqueue_work_duration_seconds`` (get to
done), ``workqueue_retries_total`` (rate-limited adds), and, computed at scrape time,
``workqueue_unfinished_work_seconds`` and ``workqueue_longest_running_processor_seconds``.

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BASE_DELAY = 0.005
MAX_DELAY = 1000.0
# client-go's workqueue histograms: 10 ns to 10 s, by tens.
DURATION_BUCKETS = tuple(10e-9 * 10**i for i in range(10))


class ShutDown(Exception):
    """The queue was shut down: the worker should return."""


class WorkQueueMetrics:
    """The workqueue_* metrics of every queue of one process, labelled by the queue's ``name``.

    Args:
        registry: Where the metrics are registered (a private one when None).
        clock: Monotonic seconds, for the scrape-time gauges (tests pass a fake).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.monotonic
    ):
        registry = registry if registry is not None else CollectorRegistry()
        self.adds = Counter("workqueue_adds_total", "Total number of adds handled by workqueue",
                            ["name"], registry=registry)
        self.depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=registry)
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ["name"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes.",
            ["name"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.retries = Counter("workqueue_retries_total", "Total number of retries handled by workqueue",
                               ["name"], registry=registry)
        # The queues whose running work the scrape-time gauges read; a dropped queue drops out.
        self._queues: weakref.WeakSet[WorkQueue] = weakref.WeakSet()
        self._clock = clock
        registry.register(_RunningWorkCollector(self))

    def track(self, queue: WorkQueue) -> None:
        """Reports ``queue``'s running work in the scrape-time gauges."""
        self._queues.add(queue)

    def running(self) -> Iterator[tuple[str, list[float]]]:
        """Per queue: its name and how long each key in processing has been running."""
        now = self._clock()
        for queue in list(self._queues):
            yield queue.name, [now - started for started in queue.processing_since()]


class _RunningWorkCollector(Collector):
    """workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds, read at
    scrape time from the queues' processing start times (no timer updating gauges)."""

    def __init__(self, metrics: WorkQueueMetrics):
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        unfinished = GaugeMetricFamily(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by "
            "work_duration. Large values indicate stuck threads.", labels=["name"],
        )
        longest = GaugeMetricFamily(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            labels=["name"],
        )
        for name, running in self._metrics.running():
            unfinished.add_metric([name], sum(running))
            longest.add_metric([name], max(running, default=0.0))
        yield unfinished
        yield longest


class WorkQueue:
    """A deduplicating, delaying, rate-limited queue of keys for a controller's workers.

    Args:
        name: The queue's name (the ``name`` label of its metrics; the controller's name).
        metrics: The shared workqueue metrics, or None for none.
        base_delay: The first back-off of ``add_rate_limited`` (seconds), doubled per failure.
        max_delay: The back-off's cap (seconds).
        clock: Monotonic seconds, for the duration metrics (tests pass a fake).
    """

    def __init__(
        self,
        name: str,
        metrics: WorkQueueMetrics | None = None,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # keys that need processing (queued, or re-added while processing)
        self._processing: dict[str, float] = {}  # key -> when its worker got it
        self._added_at: dict[str, float] = {}  # dirty key -> when it was added (queue_duration)
        self._failures: dict[str, int] = {}
        self._waiting: dict[str, tuple[float, asyncio.TimerHandle]] = {}  # add_after: key -> (due, timer)
        self._ready = asyncio.Event()
        self._shutting_down = False
        self._metrics = metrics
        if metrics is not None:
            metrics.track(self)
            self._depth = metrics.depth.labels(name)
            self._depth.set(0)

    def __len__(self) -> int:
        """How many keys wait to be processed (not those waiting for a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        """Queues ``key`` unless it is already queued; a key in processing is queued at its done."""
        if self._shutting_down or key in self._dirty:
            return
        if self._metrics is not None:
            self._metrics.adds.labels(self.name).inc()
        self._dirty.add(key)
        self._added_at[key] = self._clock()
        if key in self._processing:
            return
        self._push(key)

    def add_after(self, key: str, seconds: float) -> None:
        """Adds ``key`` once ``seconds`` have passed (at once when <= 0); a key already waiting
        keeps the earlier of its two times."""
        if self._shutting_down:
            return
        if seconds <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + seconds
        waiting = self._waiting.get(key)
        if waiting is not None:
            if waiting[0] <= due:
                return
            waiting[1].cancel()
        self._waiting[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: str) -> None:
        """Adds ``key`` after its back-off (``when``), which grows with each call until ``forget``."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retries.labels(self.name).inc()
        self.add_after(key, self.when(key))

    def when(self, key: str) -> float:
        """The next back-off of ``key``: base_delay * 2**failures, capped; counts one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # 2**failures overflows a float after ~1000 failures; the cap is reached long before.
        if failures >= 64:
            return self.max_delay
        return min(self.base_delay * 2**failures, self.max_delay)

    def forget(self, key: str) -> None:
        """Resets the back-off of ``key`` (its sync succeeded)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        """How many rate-limited adds ``key`` has had since it was last forgotten."""
        return self._failures.get(key, 0)

    async def get(self) -> str:
        """Waits for a key and marks it in processing until ``done(key)``.

        Raises:
            ShutDown: the queue is shut down (also while waiting).
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            self._ready.clear()
            await self._ready.wait()
        if self._shutting_down:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        now = self._clock()
        self._processing[key] = now
        self._dirty.discard(key)
        added = self._added_at.pop(key, now)
        if self._metrics is not None:
            self._depth.set(len(self._queue))
            self._metrics.queue_duration.labels(self.name).observe(now - added)
        return key

    def done(self, key: str) -> None:
        """Marks the processing of ``key`` finished; queues it again if it was added meanwhile."""
        started = self._processing.pop(key, None)
        if started is not None and self._metrics is not None:
            self._metrics.work_duration.labels(self.name).observe(self._clock() - started)
        if key in self._dirty and not self._shutting_down:
            self._push(key)

    def shut_down(self) -> None:
        """Ignores new keys from now on, drops the waiting ones, and makes ``get`` raise ShutDown."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._dirty.clear()
        self._added_at.clear()
        if self._metrics is not None:
            self._depth.set(0)
        self._ready.set()

    def processing_since(self) -> list[float]:
        """When each key in processing was handed to its worker (clock seconds)."""
        return list(self._processing.values())

    def _push(self, key: str) -> None:
        self._queue.append(key)
        if self._metrics is not None:
            self._depth.set(len(self._queue))
        self._ready.set()

    def _fire(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)
