"""The resource scoring strategies of NodeResourcesFit (kube-scheduler's ``scoringStrategy``):
LeastAllocated (the default: prefer the node with the most room left, which spreads pods) and
MostAllocated (prefer the fullest node, which packs them), each the weighted mean over the
configured resources (default cpu and memory, weight 1 each) of the free (or used) fraction after
placing the pod, 0..100.

Request-less pods count at the framework's defaults (100m, 200Mi) for cpu and memory, as in
kube-scheduler. Other resources (ephemeral-storage, extended ones) count at their real requests;
a node that lacks a weighted resource scores 0 for it (kube-scheduler leaves it out; pykube keeps
it in, so a node without the resource is never preferred for it).

The score is a float, not kube-scheduler's whole points: on a 64-cpu node one 100m pod moves the
free fraction by 0.16 points, and rounding would make nodes holding different numbers of pods
tie, so equal pods would no longer spread evenly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pymaster.scheduler.framework import EPHEMERAL_STORAGE, MAX_SCORE, NodeInfo, PodInfo
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
STRATEGIES = (LEAST_ALLOCATED, MOST_ALLOCATED)
DEFAULT_RESOURCES: Mapping[str, int] = {"cpu": 1, "memory": 1}


def requested_and_allocatable(pod: PodInfo, node: NodeInfo, resource: str) -> tuple[int, int]:
    """What the node's pods plus ``pod`` request of ``resource`` (cpu and memory at the non-zero
    defaults), and what the node has."""
    if resource == "cpu":
        return node.nonzero_cpu_millis + pod.nonzero_cpu_millis, node.allocatable_cpu_millis
    if resource == "memory":
        return node.nonzero_memory_bytes + pod.nonzero_memory_bytes, node.allocatable_memory_bytes
    if resource == EPHEMERAL_STORAGE:
        return (node.requested_ephemeral_storage_bytes + pod.ephemeral_storage_bytes,
                node.allocatable_ephemeral_storage_bytes)
    return (node.requested_extended.get(resource, 0) + pod.extended.get(resource, 0),
            node.allocatable_extended.get(resource, 0))


def free_score(allocatable: int, requested: int) -> float:
    if allocatable <= 0 or requested > allocatable:
        return 0.0
    return (allocatable - requested) * MAX_SCORE / allocatable


def used_score(allocatable: int, requested: int) -> float:
    if allocatable <= 0:
        return 0.0
    return min(requested, allocatable) * MAX_SCORE / allocatable


def resource_score_array(strategy: str, weights: Mapping[str, int], pod: PodInfo,
                         arrays: NodeArrays) -> np.ndarray | float | None:
    """``resource_score`` of every node (None when a weight is on another resource than cpu or
    memory: the scalar path handles those), from the arrays' derived rows: the free share is
    max(allocatable - requested, 0) / allocatable, the used share min(requested, allocatable) /
    allocatable, both 0 where nothing is allocatable (1 / allocatable is 1 there, and the
    numerators 0)."""
    if not set(weights) <= {"cpu", "memory"}:
        return None
    total: np.ndarray | None = None
    weight_sum = 0
    for resource, weight in weights.items():
        if resource == "cpu":
            free, used, pod_nonzero = arrays.free_nonzero_cpu, arrays.nonzero_cpu, pod.nonzero_cpu_millis
            allocatable, inverse = arrays.alloc_cpu, arrays.inv_alloc_cpu
        else:
            free, used = arrays.free_nonzero_memory, arrays.nonzero_memory
            pod_nonzero = pod.nonzero_memory_bytes
            allocatable, inverse = arrays.alloc_memory, arrays.inv_alloc_memory
        if strategy == LEAST_ALLOCATED:
            share = free - pod_nonzero
            np.maximum(share, 0, out=share)
        else:
            share = used + pod_nonzero
            np.minimum(share, allocatable, out=share)
        share *= inverse
        if weight != 1:
            share *= weight
        if total is None:
            total = share
        else:
            total += share
        weight_sum += weight
    if total is None or not weight_sum:
        return EQUAL
    total *= MAX_SCORE / weight_sum
    return total


def resource_score(strategy: str, weights: Mapping[str, int], pod: PodInfo, node: NodeInfo) -> float:
    """The strategy's weighted mean over ``weights`` (resource -> weight), 0..100."""
    fraction = free_score if strategy == LEAST_ALLOCATED else used_score
    total = weight_sum = 0.0
    for resource, weight in weights.items():
        requested, allocatable = requested_and_allocatable(pod, node, resource)
        total += weight * fraction(allocatable, requested)
        weight_sum += weight
    return total / weight_sum if weight_sum else 0.0
