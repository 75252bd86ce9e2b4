"""PodTopologySpread filter and score (kube-scheduler's PodTopologySpread plugin).

Each constraint counts the pods its ``labelSelector`` (plus ``matchLabelKeys``: the pod's own
values of those labels) selects in the pod's namespace, per domain: the nodes sharing a value of
``topologyKey``. Only nodes carrying every constraint's topology key are domains; with
``nodeAffinityPolicy: Honor`` (default) only nodes matching the pod's nodeSelector and required
node affinity count, with ``nodeTaintsPolicy: Honor`` (default Ignore) only nodes whose
NoSchedule/NoExecute taints the pod tolerates. Terminating pods do not count.

Filter (``whenUnsatisfiable: DoNotSchedule``): placing the pod on the node must keep
``count(domain) + 1 - min(count over domains) <= maxSkew``, the minimum being 0 while there are
fewer domains than ``minDomains`` (``node(s) didn't match pod topology spread constraints``);
a node without a topology key fails with ``... (missing required label)``.

Score (``whenUnsatisfiable: ScheduleAnyway``): the fewer matching pods in the node's domains the
better, each constraint weighted by log(number of domains + 2), normalised so the emptiest node
gets 100 (kube-scheduler's formula). Pods without constraints are skipped: there are no
cluster-default constraints (the SelectorSpread plugin spreads pods of one owner instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pymaster.api import objects_pb2
from pymaster.api.label_selectors import label_selector_matches
from pymaster.api.taints import untolerated
from pymaster.scheduler.framework import MAX_SCORE, CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.node_affinity import matches_required_node_affinity

REASON = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL_REASON = f"{REASON} (missing required label)"
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
HONOR, IGNORE = "Honor", "Ignore"
HOSTNAME_LABEL = "kubernetes.io/hostname"
_SNAPSHOT = "PodTopologySpread/snapshot"
_SCORE_STATE = "PodTopologySpread/score"


@dataclass(frozen=True)
class Constraint:
    """A TopologySpreadConstraint resolved against the pod that owns it."""

    max_skew: int
    topology_key: str
    selector: objects_pb2.LabelSelector | None  # None (unset) selects no pod
    match_labels: tuple[tuple[str, str], ...]  # from matchLabelKeys
    min_domains: int
    honor_node_affinity: bool
    honor_taints: bool

    @classmethod
    def of(cls, c: objects_pb2.TopologySpreadConstraint, pod: objects_pb2.Pod) -> Constraint:
        labels = pod.metadata.labels
        return cls(
            c.max_skew,
            c.topology_key,
            c.label_selector if c.HasField("label_selector") else None,
            tuple((key, labels[key]) for key in c.match_label_keys if key in labels),
            c.min_domains if c.HasField("min_domains") else 1,
            c.node_affinity_policy != IGNORE,
            c.node_taints_policy == HONOR,
        )

    def selects(self, labels) -> bool:
        if self.selector is None:
            return False
        return all(labels.get(k) == v for k, v in self.match_labels) and label_selector_matches(
            self.selector, labels
        )

    def count(self, pods: Iterable[PodInfo], namespace: str) -> int:
        """The matching pods among ``pods``: in ``namespace``, not terminating."""
        return sum(
            1
            for info in pods
            if info.pod.metadata.namespace == namespace
            and not info.pod.metadata.HasField("deletion_timestamp")
            and self.selects(info.pod.metadata.labels)
        )

    def includes(self, pod: objects_pb2.Pod, node: objects_pb2.Node) -> bool:
        """The node inclusion policies (nodeAffinityPolicy, nodeTaintsPolicy)."""
        if self.honor_node_affinity and not matches_required_node_affinity(pod, node):
            return False
        return not (self.honor_taints and untolerated(node.spec.taints, pod.spec.tolerations) is not None)


def constraints_of(pod: objects_pb2.Pod, when_unsatisfiable: str) -> tuple[Constraint, ...]:
    return tuple(
        Constraint.of(c, pod)
        for c in pod.spec.topology_spread_constraints
        if c.when_unsatisfiable == when_unsatisfiable
    )


def _has_keys(node: objects_pb2.Node, constraints: Sequence[Constraint]) -> bool:
    labels = node.metadata.labels
    return all(c.topology_key in labels for c in constraints)


@dataclass(frozen=True)
class _FilterState:
    constraints: tuple[Constraint, ...]
    counts: tuple[dict[str, int], ...]  # per constraint: domain value -> matching pods

    def min_match(self, i: int) -> float:
        counts = self.counts[i]
        if len(counts) < self.constraints[i].min_domains:
            return 0
        return min(counts.values(), default=math.inf)


@dataclass(frozen=True)
class _ScoreState:
    constraints: tuple[Constraint, ...]
    counts: tuple[dict[str, int], ...]  # per constraint: domain value -> matching pods
    weights: tuple[float, ...]
    ignored: frozenset[str]  # feasible nodes lacking a topology key: score 0


class PodTopologySpread:
    name = "PodTopologySpread"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot) -> Status:
        state[_SNAPSHOT] = snapshot  # pre_score counts over every node, not only the feasible ones
        constraints = constraints_of(pod.pod, DO_NOT_SCHEDULE)
        if not constraints:
            return Status.skip()
        namespace = pod.pod.metadata.namespace
        counts: tuple[dict[str, int], ...] = tuple({} for _ in constraints)
        for node in snapshot.nodes:
            if not _has_keys(node.node, constraints):
                continue
            for c, domain_counts in zip(constraints, counts, strict=True):
                if c.includes(pod.pod, node.node):
                    value = node.node.metadata.labels[c.topology_key]
                    found = c.count(node.pods.values(), namespace)
                    domain_counts[value] = domain_counts.get(value, 0) + found
        state[self.name] = _FilterState(constraints, counts)
        return Status.success()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        s: _FilterState = state[self.name]
        labels = node.node.metadata.labels
        for i, c in enumerate(s.constraints):
            value = labels.get(c.topology_key)
            if value is None:
                return Status.unschedulable(MISSING_LABEL_REASON)
            self_match = 1 if c.selects(pod.pod.metadata.labels) else 0
            if s.counts[i].get(value, 0) + self_match - s.min_match(i) > c.max_skew:
                return Status.unschedulable(REASON)
        return Status.success()

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        # No ScheduleAnyway constraint: equal scores everywhere, no per-node pass needed.
        return EQUAL if not constraints_of(pod.pod, SCHEDULE_ANYWAY) else None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        constraints = constraints_of(pod.pod, SCHEDULE_ANYWAY)
        if not constraints or not nodes:
            return Status.skip()
        ignored = frozenset(n.name for n in nodes if not _has_keys(n.node, constraints))
        # Only the domains of feasible nodes are counted; the node itself for hostname (in score).
        counts: tuple[dict[str, int], ...] = tuple({} for _ in constraints)
        for node in nodes:
            if node.name in ignored:
                continue
            for c, domain_counts in zip(constraints, counts, strict=True):
                if c.topology_key != HOSTNAME_LABEL:
                    domain_counts.setdefault(node.node.metadata.labels[c.topology_key], 0)
        sizes = [
            len(nodes) - len(ignored) if c.topology_key == HOSTNAME_LABEL else len(domain_counts)
            for c, domain_counts in zip(constraints, counts, strict=True)
        ]
        snapshot = state.get(_SNAPSHOT)
        namespace = pod.pod.metadata.namespace
        for node in snapshot.nodes if snapshot is not None else nodes:
            if not _has_keys(node.node, constraints):
                continue
            for c, domain_counts in zip(constraints, counts, strict=True):
                value = node.node.metadata.labels[c.topology_key]
                if value in domain_counts and c.includes(pod.pod, node.node):
                    domain_counts[value] += c.count(node.pods.values(), namespace)
        weights = tuple(math.log(size + 2) for size in sizes)
        state[_SCORE_STATE] = _ScoreState(constraints, counts, weights, ignored)
        return Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        s: _ScoreState = state[_SCORE_STATE]
        if node.name in s.ignored:
            return 0.0
        labels = node.node.metadata.labels
        namespace = pod.pod.metadata.namespace
        score = 0.0
        for i, c in enumerate(s.constraints):
            if c.topology_key == HOSTNAME_LABEL:
                count = c.count(node.pods.values(), namespace)
            else:
                count = s.counts[i][labels[c.topology_key]]
            # maxSkew - 1 waters down small differences, as in kube-scheduler.
            score += count * s.weights[i] + c.max_skew - 1
        return score

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        s: _ScoreState = state[_SCORE_STATE]
        valid = [score for name, score in scores.items() if name not in s.ignored]
        low, high = min(valid, default=0.0), max(valid, default=0.0)
        for name, score in scores.items():
            if name in s.ignored:
                scores[name] = 0.0
            elif high == 0:
                scores[name] = float(MAX_SCORE)
            else:
                scores[name] = MAX_SCORE * (high + low - score) / high
