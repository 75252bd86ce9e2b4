"""Node lifecycle: the controller that marks a node Ready=Unknown when its agent stops renewing
its lease (the leases live in memory: ``pymaster.registry.leases``).

At start every stored node counts as renewed (a full grace period to find the restarted master);
Unknown -> True happens when the agent is heard again (the node registry does that).

The controller sleeps until the earliest lease deadline (a heap of deadlines; renewals only move
deadlines later, so they never need to wake it) instead of polling every node on a timer.

Pods on an Unknown node are not evicted yet: that is a later issue (taints and eviction).
"""

from __future__ import annotations

import asyncio
import logging

from pymaster.api.kinds import NODES
from pymaster.api.nodes import ready_status
from pymaster.registry import Registry

log = logging.getLogger(__name__)


class NodeLifecycleController:
    """Marks nodes with expired leases Ready=Unknown."""

    def __init__(self, registry: Registry):
        self._store = registry.store
        self._nodes = registry.nodes
        self._leases = registry.leases
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Seeds the leases from the stored nodes (renewed now) and starts the controller task."""
        nodes, _ = self._store.list(NODES.resource)
        names = [node.metadata.name for node in nodes]
        unknown = [node.metadata.name for node in nodes if ready_status(node) not in ("True", "")]
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
                    if await self._nodes.mark_unknown(name):
                        log.warning("node lease expired node=%s grace_period=%s ready=Unknown", name,
                                    self._leases.grace_period)
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
