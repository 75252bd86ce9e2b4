"""LeastAllocated score: prefer the node with the most room left, the mean over cpu and memory of
the free fraction after placing the pod (kube-scheduler's default strategy, which spreads pods).

Request-less pods count at the framework's defaults (100m, 200Mi) here, as in kube-scheduler.
"""

from __future__ import annotations

from pymaster.scheduler.framework import (
    DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_BYTES,
    MAX_SCORE,
    NodeInfo,
    PodInfo,
)


def _free_score(allocatable: int, requested: int) -> int:
    if allocatable <= 0 or requested > allocatable:
        return 0
    return (allocatable - requested) * MAX_SCORE // allocatable


class LeastAllocated:
    name = "LeastAllocated"

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        cpu = node.nonzero_cpu_millis + (pod.cpu_millis or DEFAULT_CPU_MILLIS)
        memory = node.nonzero_memory_bytes + (pod.memory_bytes or DEFAULT_MEMORY_BYTES)
        cpu_score = _free_score(node.allocatable_cpu_millis, cpu)
        memory_score = _free_score(node.allocatable_memory_bytes, memory)
        return (cpu_score + memory_score) // 2
