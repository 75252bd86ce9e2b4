"""LeastAllocated score: prefer the node with the most room left, the mean over cpu and memory of
the free fraction after placing the pod (kube-scheduler's default strategy, which spreads pods).

Request-less pods count at the framework's defaults (100m, 200Mi) here, as in kube-scheduler.

The score is a float, not kube-scheduler's whole points: on a 64-cpu node one 100m pod moves the
free fraction by 0.16 points, and rounding would make nodes holding different numbers of pods
tie, so equal pods would no longer spread evenly.
"""

from __future__ import annotations

from pymaster.scheduler.framework import (
    DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_BYTES,
    MAX_SCORE,
    NodeInfo,
    PodInfo,
)


def _free_score(allocatable: int, requested: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) * MAX_SCORE / allocatable


class LeastAllocated:
    name = "LeastAllocated"

    def score(self, pod: PodInfo, node: NodeInfo) -> float:
        cpu = node.nonzero_cpu_millis + (pod.cpu_millis or DEFAULT_CPU_MILLIS)
        memory = node.nonzero_memory_bytes + (pod.memory_bytes or DEFAULT_MEMORY_BYTES)
        cpu_score = _free_score(node.allocatable_cpu_millis, cpu)
        memory_score = _free_score(node.allocatable_memory_bytes, memory)
        return (cpu_score + memory_score) / 2
