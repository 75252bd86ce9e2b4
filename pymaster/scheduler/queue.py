"""The scheduling queue (kube-scheduler's PriorityQueue): pods waiting for a node, by key
("namespace/name"), in four parts.

- active: what the scheduling loop pops, the highest spec.priority first, then the earliest
  queued (kube-scheduler's PrioritySort);
- backoff: pods that failed an attempt and wait out their back-off (1 s, doubling after each
  failed attempt up to 10 s) before going back to active;
- unschedulable: pods that fit nowhere at their last attempt. They wait for a cluster change that
  may help (``move_all``: a node added or changed, a pod removed ...), then go to backoff (still
  backing off) or active; at the latest after 5 minutes (podMaxInUnschedulablePodsDuration) they
  are retried anyway. A move that happens while a pod's attempt is in flight sends that pod to
  backoff/active instead of parking it (kube-scheduler's "moveRequestCycle"), so no wake-up is lost;
- gated: pods with spec.schedulingGates; never popped until an update removes the last gate.

The clock is injected (monotonic seconds), so back-off timing is tested without sleeping. Must be
used from one asyncio event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

INITIAL_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0
MAX_UNSCHEDULABLE_SECONDS = 300.0

ACTIVE, BACKOFF, UNSCHEDULABLE, GATED = "active", "backoff", "unschedulable", "gated"
QUEUES = (ACTIVE, BACKOFF, UNSCHEDULABLE, GATED)


@dataclass
class _Entry:
    priority: int = 0
    attempts: int = 0
    failed_at: float = 0.0  # when the last attempt failed (back-off counts from there)
    queue: str = ""
    since: float = 0.0  # when it entered its current queue
    seq: int = 0  # the heap entry that is current (older ones are stale)
    order: int = 0  # breaks ties of equal priority and time: first queued, first out


class SchedulingQueue:
    """Active heap + backoff heap + unschedulable and gated sets of pod keys."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        initial_backoff: float = INITIAL_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        max_unschedulable: float = MAX_UNSCHEDULABLE_SECONDS,
    ):
        self._entries: dict[str, _Entry] = {}
        self._active: list[tuple[int, float, int, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._counts = dict.fromkeys(QUEUES, 0)
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._clock = clock
        self._initial_backoff, self._max_backoff = initial_backoff, max_backoff
        self._max_unschedulable = max_unschedulable
        # Counts moves of the unschedulable pods; an attempt remembers the value it started at.
        self.move_cycle = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries and self._entries[key].queue != ""

    def queue_of(self, key: str) -> str:
        """The sub-queue holding ``key`` ("" when none: unknown or being attempted)."""
        entry = self._entries.get(key)
        return entry.queue if entry else ""

    def count(self, queue: str) -> int:
        return self._counts[queue]

    @property
    def active_count(self) -> int:
        return self._counts[ACTIVE]

    @property
    def unschedulable_count(self) -> int:
        return self._counts[UNSCHEDULABLE]

    def is_unschedulable(self, key: str) -> bool:
        return self.queue_of(key) == UNSCHEDULABLE

    def attempts(self, key: str) -> int:
        """How many times the pod was popped since it was queued."""
        entry = self._entries.get(key)
        return entry.attempts if entry else 0

    def backoff_seconds(self, key: str) -> float:
        """The back-off after the pod's failed attempts: 1 s doubling, at most 10 s."""
        entry = self._entries.get(key)
        if entry is None or entry.attempts == 0:
            return 0.0
        return min(self._initial_backoff * 2 ** (entry.attempts - 1), self._max_backoff)

    # ---- what the scheduler's watches tell ----

    def add(self, key: str, priority: int = 0, gated: bool = False) -> None:
        """A pod to schedule appeared or changed: queued (active, or backoff while it backs off),
        or held as gated. A pod already active or backing off keeps its place."""
        entry = self._entries.setdefault(key, _Entry())
        entry.priority = priority
        if gated:
            self._move(key, entry, GATED)
        elif entry.queue in ("", UNSCHEDULABLE, GATED):
            self._requeue(key, entry)
        elif entry.queue == ACTIVE:
            self._push_active(key, entry)  # its priority may have changed

    def remove(self, key: str) -> None:
        """Forgets a pod (bound, deleted, or being deleted), its failed attempts included."""
        entry = self._entries.pop(key, None)
        if entry is not None and entry.queue:
            self._counts[entry.queue] -= 1

    def mark_unschedulable(self, key: str, attempt_cycle: int) -> None:
        """Parks a pod after a failed attempt that started at ``attempt_cycle``; if the cluster
        changed since, the pod goes to backoff instead."""
        entry = self._entries.get(key)
        if entry is None or entry.queue:
            return  # deleted, or re-queued by an update while the attempt ran
        entry.failed_at = self._clock()
        if self.move_cycle != attempt_cycle:
            self._requeue(key, entry)
        else:
            self._move(key, entry, UNSCHEDULABLE)

    def requeue_with_backoff(self, key: str) -> None:
        """An attempt failed for another reason (a store error): retried after its back-off."""
        entry = self._entries.get(key)
        if entry is None or entry.queue:
            return
        entry.failed_at = self._clock()
        self._requeue(key, entry)

    def move_all(self) -> None:
        """The cluster changed in a way that may let parked pods fit: retry them (after their
        back-off)."""
        self.move_cycle += 1
        if not self._counts[UNSCHEDULABLE]:
            return
        for key, entry in self._entries.items():
            if entry.queue == UNSCHEDULABLE:
                self._requeue(key, entry)

    # ---- the scheduling loop ----

    def flush(self) -> None:
        """Moves backoff pods whose back-off is over to active, and pods parked as unschedulable
        for longer than the limit back to the queue."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, key = heapq.heappop(self._backoff)
            entry = self._entries.get(key)
            if entry is not None and entry.queue == BACKOFF and entry.seq == seq:
                self._move(key, entry, ACTIVE)
        if self._counts[UNSCHEDULABLE]:
            for key, entry in self._entries.items():
                if entry.queue == UNSCHEDULABLE and now - entry.since >= self._max_unschedulable:
                    self._requeue(key, entry)

    def pop_nowait(self) -> str | None:
        """Removes and returns the first active key (counting an attempt), or None."""
        self.flush()
        while self._active:
            *_, seq, key = heapq.heappop(self._active)
            entry = self._entries.get(key)
            if entry is not None and entry.queue == ACTIVE and entry.seq == seq:
                self._counts[ACTIVE] -= 1
                entry.queue = ""
                entry.attempts += 1
                return key
        return None

    async def pop(self) -> str:
        """Waits for and removes the first active key."""
        while True:
            key = self.pop_nowait()
            if key is not None:
                return key
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self._next_flush_in())
            except TimeoutError:
                pass

    def _next_flush_in(self) -> float | None:
        """Seconds until a backoff or unschedulable pod may become active (None: never)."""
        now = self._clock()
        deadlines = [self._backoff[0][0]] if self._backoff else []
        if self._counts[UNSCHEDULABLE]:
            deadlines.append(min(e.since for e in self._entries.values() if e.queue == UNSCHEDULABLE)
                             + self._max_unschedulable)
        return max(min(deadlines) - now, 0.0) + 0.001 if deadlines else None

    # ---- internals ----

    def _requeue(self, key: str, entry: _Entry) -> None:
        ready_at = entry.failed_at + self.backoff_seconds(key)
        if entry.attempts and ready_at > self._clock():
            self._move(key, entry, BACKOFF)
            heapq.heappush(self._backoff, (ready_at, entry.seq, key))
        else:
            self._move(key, entry, ACTIVE)

    def _move(self, key: str, entry: _Entry, queue: str) -> None:
        if entry.queue:
            self._counts[entry.queue] -= 1
        self._counts[queue] += 1
        entry.queue, entry.since, entry.seq = queue, self._clock(), next(self._seq)
        entry.order = entry.seq
        if queue == ACTIVE:
            self._push_active(key, entry)
        else:
            self._ready.set()  # a waiting pop() recomputes when it must flush next

    def _push_active(self, key: str, entry: _Entry) -> None:
        entry.seq = next(self._seq)
        heapq.heappush(self._active, (-entry.priority, entry.since, entry.order, entry.seq, key))
        self._ready.set()
