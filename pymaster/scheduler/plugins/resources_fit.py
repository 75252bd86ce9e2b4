"""NodeResourcesFit: a filter and a score plugin, as in kube-scheduler.

Filter: the pod's cpu, memory, ephemeral-storage and extended resource requests fit in what the
node has left (allocatable minus the requests of the pods bound to it), and the node is below its
pod limit. Like kube-scheduler, a resource the pod does not request is not checked, every shortage
is reported in kube-scheduler's order (a node short of cpu and memory counts in both), with its
reasons ("Too many pods", "Insufficient cpu", "Insufficient ephemeral-storage", "Insufficient
example.com/dongle"); a resource the node does not report (an extended one it lacks, or
ephemeral-storage from an agent that does not advertise it) counts as 0 there, so nothing is ever
overcommitted.

Score: the configured scoring strategy (``least_allocated``: LeastAllocated by default, or
MostAllocated) over the configured resource weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pymaster.scheduler.framework import CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import NodeArrays
from pymaster.scheduler.plugins.least_allocated import (
    DEFAULT_RESOURCES,
    LEAST_ALLOCATED,
    STRATEGIES,
    resource_score,
    resource_score_array,
)

INSUFFICIENT = "Insufficient {}"
INSUFFICIENT_CPU = INSUFFICIENT.format("cpu")
INSUFFICIENT_MEMORY = INSUFFICIENT.format("memory")
INSUFFICIENT_EPHEMERAL_STORAGE = INSUFFICIENT.format("ephemeral-storage")
TOO_MANY_PODS = "Too many pods"


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def __init__(self, strategy: str = LEAST_ALLOCATED, resources: Mapping[str, int] | None = None):
        """
        Args:
            strategy: "LeastAllocated" or "MostAllocated".
            resources: resource name -> weight of the score (default cpu and memory, 1 each).
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown scoring strategy {strategy!r}")
        self.strategy = strategy
        self.resources = dict(resources or DEFAULT_RESOURCES)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        reasons = []
        if node.pod_count + 1 > node.allocatable_pods:
            reasons.append(TOO_MANY_PODS)
        if pod.cpu_millis > 0 and pod.cpu_millis > node.allocatable_cpu_millis - node.requested_cpu_millis:
            reasons.append(INSUFFICIENT_CPU)
        if (
            pod.memory_bytes > 0
            and pod.memory_bytes > node.allocatable_memory_bytes - node.requested_memory_bytes
        ):
            reasons.append(INSUFFICIENT_MEMORY)
        storage = pod.ephemeral_storage_bytes
        free_storage = node.allocatable_ephemeral_storage_bytes - node.requested_ephemeral_storage_bytes
        if storage > 0 and storage > free_storage:
            reasons.append(INSUFFICIENT_EPHEMERAL_STORAGE)
        for name, count in sorted(pod.extended.items()):
            free = node.allocatable_extended.get(name, 0) - node.requested_extended.get(name, 0)
            if count > free:
                reasons.append(INSUFFICIENT.format(name))
        return Status.unschedulable(*reasons) if reasons else Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        return resource_score(self.strategy, self.resources, pod, node)

    def filter_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | None:
        """``filter`` over every node at once (None for a pod with extended resources)."""
        if pod.extended:
            return None
        mask = arrays.free_pods >= 1
        for wanted, free in (
            (pod.cpu_millis, arrays.free_cpu),
            (pod.memory_bytes, arrays.free_memory),
            (pod.ephemeral_storage_bytes, arrays.free_storage),
        ):
            if wanted > 0:
                mask &= free >= wanted
        return mask

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | None:
        """``score`` of every node (None unless the weights are on cpu and memory only)."""
        return resource_score_array(self.strategy, self.resources, pod, arrays)
