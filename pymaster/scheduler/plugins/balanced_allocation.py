"""NodeResourcesBalancedAllocation score (kube-scheduler's): prefer the node whose resources would
be used most evenly after placing the pod, ``(1 - std) * 100`` where std is the standard deviation
of the requested/allocatable fractions of the configured resources (default cpu and memory), each
capped at 1.

As in kube-scheduler, the real requests count (not the non-zero defaults), and a pod that requests
none of the resources is not scored by this plugin (pre-score skip): it could not unbalance a node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from pymaster.scheduler.framework import (
    EPHEMERAL_STORAGE,
    MAX_SCORE,
    CycleState,
    NodeInfo,
    PodInfo,
    Status,
)
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays

DEFAULT_RESOURCES: Mapping[str, int] = {"cpu": 1, "memory": 1}


def _requested(pod: PodInfo, resource: str) -> int:
    if resource == "cpu":
        return pod.cpu_millis
    if resource == "memory":
        return pod.memory_bytes
    if resource == EPHEMERAL_STORAGE:
        return pod.ephemeral_storage_bytes
    return pod.extended.get(resource, 0)


def _node_figures(node: NodeInfo, resource: str) -> tuple[int, int]:
    """(requested by the node's pods, allocatable)."""
    if resource == "cpu":
        return node.requested_cpu_millis, node.allocatable_cpu_millis
    if resource == "memory":
        return node.requested_memory_bytes, node.allocatable_memory_bytes
    if resource == EPHEMERAL_STORAGE:
        return node.requested_ephemeral_storage_bytes, node.allocatable_ephemeral_storage_bytes
    return node.requested_extended.get(resource, 0), node.allocatable_extended.get(resource, 0)


def balanced_score(fractions: Sequence[float]) -> float:
    """(1 - population std of ``fractions``) * 100."""
    if len(fractions) < 2:
        return float(MAX_SCORE)
    mean = sum(fractions) / len(fractions)
    std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return (1 - std) * MAX_SCORE


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def __init__(self, resources: Mapping[str, int] | None = None):
        """``resources``: the resources compared (weights are accepted but, as in
        kube-scheduler, do not change this score)."""
        self.resources = tuple(resources or DEFAULT_RESOURCES)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        if not any(_requested(pod, resource) for resource in self.resources):
            return Status.skip()
        return Status.success()

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        """``score`` of every node (None unless the resources are cpu and memory)."""
        if set(self.resources) != {"cpu", "memory"}:
            return None
        if not (pod.cpu_millis or pod.memory_bytes):
            return EQUAL  # what pre_score skips: the same for every node
        cpu = arrays.req_cpu + pod.cpu_millis
        cpu *= arrays.inv_alloc_cpu
        np.minimum(cpu, 1.0, out=cpu)
        memory = arrays.req_memory + pod.memory_bytes
        memory *= arrays.inv_alloc_memory
        np.minimum(memory, 1.0, out=memory)
        # For two fractions the population std is half their distance (what ``score`` computes):
        # the score is (1 - |cpu - memory| / 2) * 100.
        score = cpu
        score -= memory
        np.abs(score, out=score)
        score *= -MAX_SCORE / 2
        score += MAX_SCORE
        # A node lacking one of the two leaves one fraction: perfectly balanced, as in ``score``.
        if arrays.lacks_cpu_or_memory.any():  # rarely: the masked write costs more than the test
            score[arrays.lacks_cpu_or_memory] = MAX_SCORE
        return score

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        fractions = []
        for resource in self.resources:
            requested, allocatable = _node_figures(node, resource)
            if allocatable <= 0:
                continue  # a resource the node lacks does not count (kube-scheduler skips it)
            fractions.append(min((requested + _requested(pod, resource)) / allocatable, 1.0))
        return balanced_score(fractions)
