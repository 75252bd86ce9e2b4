"""NodeAffinity filter and score (kube-scheduler's NodeAffinity plugin).

Filter: the node must carry every ``spec.nodeSelector`` label AND satisfy one of the terms of
``spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`` (terms ORed, the
requirements of a term ANDed; In, NotIn, Exists, DoesNotExist, Gt, Lt over labels, matchFields
over ``metadata.name``). It covers the NodeSelector plugin, as kube-scheduler's does.

Score: the sum of the weights of the preferred terms the node matches, normalised to 0..100 by
the best node's sum (kube-scheduler's DefaultNormalizeScore).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pymaster.api import objects_pb2
from pymaster.api.label_selectors import node_selector_matches, node_selector_term_matches
from pymaster.scheduler.framework import MAX_SCORE, CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays

REASON = "node(s) didn't match Pod's node affinity/selector"


def required_node_affinity(pod: objects_pb2.Pod) -> objects_pb2.NodeSelector | None:
    """The pod's required node affinity, or None when it has none."""
    affinity = pod.spec.affinity
    if affinity.HasField("node_affinity"):
        node_affinity = affinity.node_affinity
        if node_affinity.HasField("required_during_scheduling_ignored_during_execution"):
            return node_affinity.required_during_scheduling_ignored_during_execution
    return None


def matches_required_node_affinity(pod: objects_pb2.Pod, node: objects_pb2.Node) -> bool:
    """kube-scheduler's ``GetRequiredNodeAffinity(pod).Match(node)``: the nodeSelector labels and
    the required node affinity terms (also what PodTopologySpread's nodeAffinityPolicy honours)."""
    labels = node.metadata.labels
    for key, value in pod.spec.node_selector.items():
        if labels.get(key) != value:
            return False
    required = required_node_affinity(pod)
    return required is None or node_selector_matches(required, node)


def normalize_by_max(scores: dict[str, float], *, reverse: bool = False) -> None:
    """kube-scheduler's DefaultNormalizeScore, in place: scale to 0..100 by the highest score
    (reversed: 100 minus that); all zero stays 0 (100 when reversed)."""
    highest = max(scores.values(), default=0)
    for name, score in scores.items():
        if highest <= 0:
            scores[name] = MAX_SCORE if reverse else 0
            continue
        scaled = MAX_SCORE * score / highest
        scores[name] = MAX_SCORE - scaled if reverse else scaled


class NodeAffinity:
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot) -> Status:
        if not pod.pod.spec.node_selector and required_node_affinity(pod.pod) is None:
            return Status.skip()
        return Status.success()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if matches_required_node_affinity(pod.pod, node.node):
            return Status.success()
        return Status.unschedulable(REASON)

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        # No preferred term: equal scores everywhere, no per-node pass needed.
        return EQUAL if not _preferred_terms(pod.pod) else None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        terms = _preferred_terms(pod.pod)
        if not terms:
            return Status.skip()
        state[self.name] = terms
        return Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        terms = state[self.name]
        return float(sum(t.weight for t in terms if node_selector_term_matches(t.preference, node.node)))

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        normalize_by_max(scores)


def _preferred_terms(pod: objects_pb2.Pod) -> Sequence[objects_pb2.PreferredSchedulingTerm]:
    affinity = pod.spec.affinity
    if not affinity.HasField("node_affinity"):
        return ()
    return tuple(
        term
        for term in affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
        if term.weight > 0
    )
