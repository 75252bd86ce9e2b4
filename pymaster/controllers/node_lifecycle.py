"""Node lifecycle: node leases in memory, and the controller that marks a node Ready=Unknown when
its agent stops renewing.

Leases are never written to the store (thousands of agents renewing every few seconds would be
most of the write load); only transitions are: Ready=True -> Unknown when a lease expires here,
Unknown -> True when the agent is heard again (the NodeAgent servicer does that). After a master
restart the table starts empty and every stored node counts as renewed at start, so agents get a
full grace period to find the new master.

The controller sleeps until the earliest lease deadline (a heap of deadlines; renewals only move
deadlines later, so they never need to wake it) instead of polling every node on a timer.

Pods on an Unknown node are not evicted yet: that is a later issue (taints and eviction).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.server.node_helpers import mark_unknown
from pymaster.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class _Lease:
    renewed: float  # monotonic time of the last renewal
    unknown: bool  # the node is (or is being) marked Ready=Unknown for this lease's expiry
    seq: int  # identifies this lease's heap entry; stale entries are skipped


class NodeLeases:
    """The lease of every node: last renewal times and deadlines (monotonic clock)."""

    def __init__(self, grace_period: float, clock: Callable[[], float] = time.monotonic):
        """
        Args:
            grace_period: Seconds without renewal after which a node's lease expires.
        """
        self.grace_period = grace_period
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.changed = asyncio.Event()

    def __contains__(self, name: str) -> bool:
        return name in self._leases

    def seed(self, names: Iterable[str], unknown: Iterable[str] = ()) -> None:
        """Counts nodes as renewed now (at master start); ``unknown`` ones are already Ready=Unknown
        in the store, so their next renewal must mark them Ready again."""
        unknown = set(unknown)
        for name in names:
            self.renew(name)
            self._leases[name].unknown = name in unknown

    def renew(self, name: str) -> bool:
        """Records a renewal (or a registration) of ``name``.

        Returns:
            True if the node was marked Ready=Unknown and the caller must set it Ready again.
        """
        now = self._clock()
        lease = self._leases.get(name)
        if lease is None or lease.unknown:
            was_unknown = lease is not None and lease.unknown
            lease = _Lease(now, False, next(self._seq))
            self._leases[name] = lease
            heapq.heappush(self._heap, (now + self.grace_period, lease.seq, name))
            self.changed.set()
            return was_unknown
        lease.renewed = now
        return False

    def remove(self, name: str) -> None:
        """Forgets a node (deleted)."""
        self._leases.pop(name, None)

    def is_expired(self, name: str) -> bool:
        """True if ``name`` has a lease that was not renewed within the grace period."""
        lease = self._leases.get(name)
        return lease is not None and self._clock() - lease.renewed >= self.grace_period

    def pop_expired(self) -> list[str]:
        """The nodes whose lease expired since the last call; each is returned once per expiry
        and counts as unknown until renewed."""
        now = self._clock()
        expired = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, name = heapq.heappop(self._heap)
            lease = self._leases.get(name)
            if lease is None or lease.seq != seq or lease.unknown:
                continue
            deadline = lease.renewed + self.grace_period
            if deadline <= now:
                lease.unknown = True
                expired.append(name)
            else:
                heapq.heappush(self._heap, (deadline, seq, name))
        return expired

    def seconds_to_next_deadline(self) -> float | None:
        """How long until the earliest deadline (0 if one passed); None without leases."""
        if not self._heap:
            return None
        return max(self._heap[0][0] - self._clock(), 0.0)


class NodeLifecycleController:
    """Marks nodes with expired leases Ready=Unknown."""

    def __init__(self, store: Store, leases: NodeLeases, clock: Callable[[], float] = time.time):
        self._store = store
        self._leases = leases
        self._clock = clock
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Seeds the leases from the stored nodes (renewed now) and starts the controller task."""
        nodes, _ = self._store.list("nodes")
        names = [node.metadata.name for node in nodes]
        unknown = [
            node.metadata.name
            for node in nodes
            if any(c.type == "Ready" and c.status != "True" for c in node.status.conditions)
        ]
        self._leases.seed(names, unknown)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-lifecycle")
        log.info(
            "node lifecycle controller started nodes=%d grace_period=%s",
            len(names),
            self._leases.grace_period,
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            for name in self._leases.pop_expired():
                try:
                    await self._mark_unknown(name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cannot mark node unknown node=%s", name)
            self._leases.changed.clear()
            delay = self._leases.seconds_to_next_deadline()
            if delay is None or delay > 0:
                try:
                    await asyncio.wait_for(self._leases.changed.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _mark_unknown(self, name: str) -> None:
        now = self._clock()
        marked = False

        def mark(node: objects_pb2.Node) -> objects_pb2.Node | None:
            nonlocal marked
            # Renewed while this write waited for the store lock: the agent is alive after all.
            if not self._leases.is_expired(name) or not mark_unknown(node, now):
                return None
            marked = True
            return node

        try:
            await self._store.mutate("nodes", "", name, mark)
        except NotFound:
            self._leases.remove(name)
            return
        if marked:
            log.warning(
                "node lease expired node=%s grace_period=%s ready=Unknown", name, self._leases.grace_period
            )
