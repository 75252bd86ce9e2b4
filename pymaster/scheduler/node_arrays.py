"""The nodes of a snapshot as numpy arrays (one entry per node, in the snapshot's order), so the
hot default plugins filter and score every node in a few array operations instead of a Python
call per node (numpy is a dependency for this alone).

The arrays mirror the NodeInfos; the scheduler's cache marks the nodes it changes (a pod added or
removed, a node updated) and ``refresh`` reloads only those, so keeping them costs one row per
change, not one per node per pod. A plugin opts in with ``filter_array(state, pod, arrays) ->
bool array | ALL_PASS | None`` and ``score_array(state, pod, arrays) -> float array | EQUAL |
None`` over every node, already normalised to 0..100 (neither ``pre_score`` nor ``normalize`` is
called for it). ``ALL_PASS`` (True) says every node passes and ``EQUAL`` (0.0) that every node
scores the same, so the framework skips them without an array pass; None: "not for this pod",
the framework then calls the scalar methods, which are the reference semantics (tests check both
agree).

Derived rows (``inv_alloc_*``, ``free_*``, ``lacks_cpu_or_memory``) are kept with the figures so
that the hot scores take a few array operations each: at 5,000 nodes every operation saved is
one less pass over the nodes for every pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pymaster.scheduler.framework import CycleState, FilterPlugin, NodeInfo, PodInfo

# What a filter_array / score_array returns when the answer is the same for every node.
ALL_PASS = True
EQUAL = 0.0

BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
PREFER_NO_SCHEDULE = "PreferNoSchedule"


class NodeArrays:
    """Per-node figures of a snapshot's NodeInfos (``infos``), by index."""

    def __init__(self, infos: Sequence[NodeInfo]):
        self.infos = infos
        n = len(infos)
        self.index = {info.name: i for i, info in enumerate(infos)}
        self.alloc_cpu = np.zeros(n)
        self.alloc_memory = np.zeros(n)
        self.req_cpu = np.zeros(n)
        self.req_memory = np.zeros(n)
        # What is left to request (allocatable - requested; pod slots: allocatable - pods).
        self.free_cpu = np.zeros(n)
        self.free_memory = np.zeros(n)
        self.free_storage = np.zeros(n)
        self.free_pods = np.zeros(n)
        self.nonzero_cpu = np.zeros(n)
        self.nonzero_memory = np.zeros(n)
        # 1 / allocatable (1 where nothing is allocatable), and what the non-zero requests leave.
        self.inv_alloc_cpu = np.zeros(n)
        self.inv_alloc_memory = np.zeros(n)
        self.free_nonzero_cpu = np.zeros(n)
        self.free_nonzero_memory = np.zeros(n)
        self.lacks_cpu_or_memory = np.zeros(n, dtype=bool)
        self.ready = np.zeros(n, dtype=bool)
        self.unschedulable = np.zeros(n, dtype=bool)
        # A NoSchedule/NoExecute taint: only those nodes need a toleration check.
        self.tainted = np.zeros(n, dtype=bool)
        # A PreferNoSchedule taint: only those nodes can score below the others for taints.
        self.soft_tainted = np.zeros(n, dtype=bool)
        for i in range(n):
            self._load(i)

    def __len__(self) -> int:
        return len(self.infos)

    def refresh(self, names: Iterable[str]) -> None:
        """Reloads the rows of the named nodes (names not in the snapshot are ignored)."""
        for name in names:
            i = self.index.get(name)
            if i is not None:
                self._load(i)

    def _load(self, i: int) -> None:
        info = self.infos[i]
        self.alloc_cpu[i] = info.allocatable_cpu_millis
        self.alloc_memory[i] = info.allocatable_memory_bytes
        self.req_cpu[i] = info.requested_cpu_millis
        self.req_memory[i] = info.requested_memory_bytes
        self.free_cpu[i] = info.allocatable_cpu_millis - info.requested_cpu_millis
        self.free_memory[i] = info.allocatable_memory_bytes - info.requested_memory_bytes
        self.free_storage[i] = (info.allocatable_ephemeral_storage_bytes
                                - info.requested_ephemeral_storage_bytes)
        self.free_pods[i] = info.allocatable_pods - info.pod_count
        self.nonzero_cpu[i] = info.nonzero_cpu_millis
        self.nonzero_memory[i] = info.nonzero_memory_bytes
        self.inv_alloc_cpu[i] = 1 / max(info.allocatable_cpu_millis, 1)
        self.inv_alloc_memory[i] = 1 / max(info.allocatable_memory_bytes, 1)
        self.free_nonzero_cpu[i] = info.allocatable_cpu_millis - info.nonzero_cpu_millis
        self.free_nonzero_memory[i] = info.allocatable_memory_bytes - info.nonzero_memory_bytes
        self.lacks_cpu_or_memory[i] = info.allocatable_cpu_millis <= 0 or info.allocatable_memory_bytes <= 0
        self.ready[i] = info.ready
        self.unschedulable[i] = info.node.spec.unschedulable
        taints = info.node.spec.taints
        self.tainted[i] = any(t.effect in BLOCKING_EFFECTS for t in taints)
        self.soft_tainted[i] = any(t.effect == PREFER_NO_SCHEDULE for t in taints)

    def scalar_filter(self, plugin: FilterPlugin, state: CycleState, pod: PodInfo,
                      where: np.ndarray) -> np.ndarray:
        """A mask: True where ``where`` is False, else the plugin's scalar filter (e.g. a taint
        check on the tainted nodes only: ``arrays.scalar_filter(self, state, pod, arrays.tainted)``)."""
        mask = np.ones(len(self.infos), dtype=bool)
        for i in np.flatnonzero(where):
            mask[i] = plugin.filter(state, pod, self.infos[i]).ok
        return mask
