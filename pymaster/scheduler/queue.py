"""The scheduling queue: pods waiting for a node, by key ("namespace/name").

Two parts, as in kube-scheduler: the active queue (FIFO, each key at most once) that the
scheduling loop pops, and the unschedulable set, pods that fit nowhere at their last attempt.
Those wait for a cluster change that may help (a node added or changed, a pod removed) and are
then all moved back to the active queue. A move that happens while a pod's attempt is in flight
sends that pod straight back to the active queue instead of parking it (kube-scheduler's
"moveRequestCycle"), so no wake-up is lost.

Must be used from one asyncio event loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable


class SchedulingQueue:
    """Active FIFO + unschedulable set of pod keys."""

    def __init__(self, on_change: Callable[[int, int], None] | None = None):
        """
        Args:
            on_change: Called with (active, unschedulable) sizes after every change (metrics).
        """
        self._active: OrderedDict[str, None] = OrderedDict()
        self._unschedulable: set[str] = set()
        self._ready = asyncio.Event()
        self._on_change = on_change
        # Counts moves of the unschedulable set; an attempt remembers the value it started at.
        self.move_cycle = 0

    def __contains__(self, key: str) -> bool:
        return key in self._active or key in self._unschedulable

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def unschedulable_count(self) -> int:
        return len(self._unschedulable)

    def is_unschedulable(self, key: str) -> bool:
        return key in self._unschedulable

    def add(self, key: str) -> None:
        """Queues a pod for an attempt (a no-op if it is already active)."""
        self._unschedulable.discard(key)
        if key not in self._active:
            self._active[key] = None
            self._ready.set()
        self._changed()

    def remove(self, key: str) -> None:
        """Forgets a pod (bound, deleted, or being deleted)."""
        self._active.pop(key, None)
        self._unschedulable.discard(key)
        self._changed()

    def mark_unschedulable(self, key: str, attempt_cycle: int) -> None:
        """Parks a pod after a failed attempt that started at ``attempt_cycle``; if the cluster
        changed since, the pod goes back to the active queue instead."""
        if key in self._active:
            return  # re-queued by an update while the attempt ran
        if self.move_cycle != attempt_cycle:
            self.add(key)
            return
        self._unschedulable.add(key)
        self._changed()

    def move_all_to_active(self) -> None:
        """The cluster changed in a way that may let parked pods fit: retry them all."""
        self.move_cycle += 1
        if not self._unschedulable:
            return
        for key in sorted(self._unschedulable):
            self._active[key] = None
        self._unschedulable.clear()
        self._ready.set()
        self._changed()

    async def pop(self) -> str:
        """Waits for and removes the oldest active key."""
        while not self._active:
            self._ready.clear()
            await self._ready.wait()
        key, _ = self._active.popitem(last=False)
        self._changed()
        return key

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(len(self._active), len(self._unschedulable))
