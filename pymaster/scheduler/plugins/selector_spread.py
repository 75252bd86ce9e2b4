"""SelectorSpread score: spread the pods of one owner (a ReplicaSet's replicas, a Job's pods)
across nodes and zones.

kube-scheduler's SelectorSpread (removed in 1.27 in favour of cluster-default topology spread
constraints) counted, per node, the pods selected by the Services and controllers selecting the
pod. pykube counts the pods sharing the pod's controller owner reference (the ownerReference with
``controller: true``, matched by uid) in its namespace, terminating ones excluded. Fewer is
better: ``100 * (max - count) / max`` over the feasible nodes, and when nodes carry
``topology.kubernetes.io/zone`` the zone's count weighs 2/3, as in Kubernetes. A pod without a
controller owner is skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import MAX_SCORE, CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays

ZONE_LABEL = "topology.kubernetes.io/zone"
ZONE_WEIGHTING = 2 / 3


def controller_uid(pod: objects_pb2.Pod) -> str:
    """The uid of the pod's controller owner reference, or ""."""
    for ref in pod.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return ref.uid
    return ""


@dataclass(frozen=True)
class _State:
    owner: str
    zones: dict[str, str]  # feasible node name -> zone, for nodes with one


class SelectorSpread:
    name = "SelectorSpread"

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        # A pod without a controller owner: equal scores everywhere, no per-node pass needed.
        return EQUAL if not controller_uid(pod.pod) else None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        owner = controller_uid(pod.pod)
        if not owner:
            return Status.skip()
        zones = {n.name: zone for n in nodes if (zone := n.node.metadata.labels.get(ZONE_LABEL))}
        state[self.name] = _State(owner, zones)
        return Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        s: _State = state[self.name]
        namespace = pod.pod.metadata.namespace
        return float(
            sum(
                1
                for info in node.pods.values()
                if info.pod.metadata.namespace == namespace
                and not info.pod.metadata.HasField("deletion_timestamp")
                and controller_uid(info.pod) == s.owner
            )
        )

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        s: _State = state[self.name]
        highest = max(scores.values(), default=0.0)
        by_zone: Counter[str] = Counter()
        for name, count in scores.items():
            if name in s.zones:
                by_zone[s.zones[name]] += count
        highest_zone = max(by_zone.values(), default=0.0)
        for name, count in scores.items():
            score = _fewer_is_better(count, highest)
            zone = s.zones.get(name)
            if zone is not None:
                zone_score = _fewer_is_better(by_zone[zone], highest_zone)
                score = score * (1 - ZONE_WEIGHTING) + zone_score * ZONE_WEIGHTING
            scores[name] = score


def _fewer_is_better(count: float, highest: float) -> float:
    return MAX_SCORE * (highest - count) / highest if highest > 0 else float(MAX_SCORE)
