"""InterPodAffinity filter and score (kube-scheduler's InterPodAffinity plugin).

A pod affinity term selects pods (``labelSelector``, plus ``matchLabelKeys`` / ``mismatchLabelKeys``
read from the term owner's labels) in some namespaces (``namespaces``, ``namespaceSelector``,
or the owner's own namespace when neither is set) and names a ``topologyKey``: the nodes sharing
that label's value form one domain.

Filter, from counts per (topologyKey, value) computed once per attempt in ``pre_filter``:
- required pod affinity: on the node's domain of every term there is a pod matching all the
  terms (``node(s) didn't match pod affinity rules``); the first pod of a group whose terms
  select the pod itself may go anywhere the topology labels exist, as in Kubernetes;
- required pod anti-affinity: no pod matching a term in the node's domain
  (``node(s) didn't match pod anti-affinity rules``);
- symmetry: no existing pod whose required anti-affinity selects the incoming pod in the node's
  domain (``node(s) didn't satisfy existing pods anti-affinity rules``).

Score: for each domain, + the weight of each preferred affinity term of the pod matched by a pod
there, - each preferred anti-affinity one; and the same for existing pods' terms that match the
incoming pod (their required affinity at weight 1, kube-scheduler's hardPodAffinityWeight);
normalised min..max to 0..100.

pykube has no Namespace objects: a namespace's labels are only the automatic
``kubernetes.io/metadata.name: <name>``, so ``namespaceSelector: {}`` means every namespace and a
selector on that label picks namespaces by name. Kubernetes merges matchLabelKeys into the
selector at pod creation; here they are applied when matching, with the same result while a
pod's labels do not change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pymaster.api import objects_pb2
from pymaster.api.label_selectors import IN, NOT_IN, label_selector_matches
from pymaster.scheduler.framework import MAX_SCORE, CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays

AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The score an existing pod's required affinity term adds (kube-scheduler's default
# hardPodAffinityWeight).
HARD_POD_AFFINITY_WEIGHT = 1
_SNAPSHOT = "InterPodAffinity/snapshot"
_WITH_AFFINITY = "InterPodAffinity/podsWithAffinity"
_SCORE_STATE = "InterPodAffinity/score"

TopologyPair = tuple[str, str]


def namespace_labels(namespace: str) -> dict[str, str]:
    """The labels of a namespace: pykube has no Namespace objects, so only the automatic one."""
    return {NAMESPACE_NAME_LABEL: namespace}


@dataclass(frozen=True)
class AffinityTerm:
    """A PodAffinityTerm resolved against the pod that owns it."""

    topology_key: str
    selector: objects_pb2.LabelSelector | None  # None (unset) selects no pod
    label_requirements: tuple[tuple[str, str, str], ...]  # (key, In|NotIn, value)
    namespaces: frozenset[str]
    namespace_selector: objects_pb2.LabelSelector | None
    weight: int = 0

    @classmethod
    def of(cls, term: objects_pb2.PodAffinityTerm, owner: objects_pb2.Pod, weight: int = 0) -> AffinityTerm:
        own_labels = owner.metadata.labels
        requirements = tuple(
            [(key, IN, own_labels[key]) for key in term.match_label_keys if key in own_labels]
            + [(key, NOT_IN, own_labels[key]) for key in term.mismatch_label_keys if key in own_labels]
        )
        namespaces = frozenset(term.namespaces)
        has_ns_selector = term.HasField("namespace_selector")
        if not namespaces and not has_ns_selector:
            namespaces = frozenset((owner.metadata.namespace,))
        return cls(
            term.topology_key,
            term.label_selector if term.HasField("label_selector") else None,
            requirements,
            namespaces,
            term.namespace_selector if has_ns_selector else None,
            weight,
        )

    def matches(self, pod: objects_pb2.Pod) -> bool:
        """Whether ``pod`` is one of the pods this term selects."""
        namespace = pod.metadata.namespace
        if namespace not in self.namespaces and not (
            self.namespace_selector is not None
            and label_selector_matches(self.namespace_selector, namespace_labels(namespace))
        ):
            return False
        if self.selector is None:
            return False
        labels = pod.metadata.labels
        if not label_selector_matches(self.selector, labels):
            return False
        return all((labels.get(key) == value) == (op == IN) for key, op, value in self.label_requirements)


@dataclass(frozen=True)
class PodTerms:
    """The pod (anti-)affinity terms of one pod."""

    required_affinity: tuple[AffinityTerm, ...] = ()
    required_anti_affinity: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti_affinity: tuple[AffinityTerm, ...] = ()

    @classmethod
    def of(cls, pod: objects_pb2.Pod) -> PodTerms:
        if not has_pod_affinity(pod):
            return _NO_TERMS
        affinity = pod.spec.affinity

        def required(terms: Iterable[objects_pb2.PodAffinityTerm]) -> tuple[AffinityTerm, ...]:
            return tuple(AffinityTerm.of(t, pod) for t in terms)

        def preferred(terms: Iterable[objects_pb2.WeightedPodAffinityTerm]) -> tuple[AffinityTerm, ...]:
            return tuple(AffinityTerm.of(t.pod_affinity_term, pod, t.weight) for t in terms if t.weight)

        positive, negative = affinity.pod_affinity, affinity.pod_anti_affinity
        return cls(
            required(positive.required_during_scheduling_ignored_during_execution),
            required(negative.required_during_scheduling_ignored_during_execution),
            preferred(positive.preferred_during_scheduling_ignored_during_execution),
            preferred(negative.preferred_during_scheduling_ignored_during_execution),
        )


_NO_TERMS = PodTerms()


def has_pod_affinity(pod: objects_pb2.Pod) -> bool:
    """Whether ``pod`` has pod affinity or anti-affinity (kube-scheduler's PodsWithAffinity test,
    for a scheduler cache that keeps the nodes holding such pods)."""
    spec = pod.spec
    return spec.HasField("affinity") and (
        spec.affinity.HasField("pod_affinity") or spec.affinity.HasField("pod_anti_affinity")
    )


def pods_with_affinity(snapshot_or_nodes) -> list[tuple[NodeInfo, PodInfo]]:
    """Every bound pod with pod (anti-)affinity, with its node.

    Scanning every bound pod costs milliseconds per attempt on thousands of pods, so a scheduler
    cache may keep what kube-scheduler's does, and it is used when present: the snapshot's
    ``have_pods_with_affinity`` (the NodeInfos holding such pods) and a NodeInfo's
    ``pods_with_affinity`` (key -> PodInfo of those pods).
    """
    nodes = getattr(snapshot_or_nodes, "have_pods_with_affinity", None)
    if nodes is None:
        nodes = getattr(snapshot_or_nodes, "nodes", snapshot_or_nodes)
    if nodes and hasattr(nodes[0], "pods_with_affinity"):
        return [(node, info) for node in nodes for info in node.pods_with_affinity.values()]
    return [(node, info) for node in nodes for info in node.pods.values() if has_pod_affinity(info.pod)]


def _add(counts: Counter[TopologyPair], labels: Mapping[str, str], key: str, value: int = 1) -> None:
    if key in labels:
        counts[(key, labels[key])] += value


@dataclass(frozen=True)
class _FilterState:
    terms: PodTerms
    affinity_counts: Counter[TopologyPair]
    anti_affinity_counts: Counter[TopologyPair]
    existing_anti_affinity_counts: Counter[TopologyPair]


class InterPodAffinity:
    name = "InterPodAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot) -> Status:
        # pre_score needs every node (not only the feasible ones) and the same scan.
        state[_SNAPSHOT] = snapshot
        with_affinity = state[_WITH_AFFINITY] = pods_with_affinity(snapshot)
        incoming = pod.pod
        existing_anti: Counter[TopologyPair] = Counter()
        for node, existing in with_affinity:
            labels = node.node.metadata.labels
            for term in PodTerms.of(existing.pod).required_anti_affinity:
                if term.matches(incoming):
                    _add(existing_anti, labels, term.topology_key)
        terms = PodTerms.of(incoming)
        if not terms.required_affinity and not terms.required_anti_affinity and not existing_anti:
            return Status.skip()
        affinity: Counter[TopologyPair] = Counter()
        anti: Counter[TopologyPair] = Counter()
        if terms.required_affinity or terms.required_anti_affinity:
            for node in snapshot.nodes:
                labels = node.node.metadata.labels
                for existing in node.pods.values():
                    other = existing.pod
                    if terms.required_affinity and all(t.matches(other) for t in terms.required_affinity):
                        for term in terms.required_affinity:
                            _add(affinity, labels, term.topology_key)
                    for term in terms.required_anti_affinity:
                        if term.matches(other):
                            _add(anti, labels, term.topology_key)
        state[self.name] = _FilterState(terms, affinity, anti, existing_anti)
        return Status.success()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        s: _FilterState = state[self.name]
        labels = node.node.metadata.labels
        if not _satisfies_affinity(s, pod.pod, labels):
            return Status.unschedulable(AFFINITY_REASON)
        for term in s.terms.required_anti_affinity:
            key = term.topology_key
            if key in labels and s.anti_affinity_counts[(key, labels[key])] > 0:
                return Status.unschedulable(ANTI_AFFINITY_REASON)
        if s.existing_anti_affinity_counts and any(
            s.existing_anti_affinity_counts[pair] > 0 for pair in labels.items()
        ):
            return Status.unschedulable(EXISTING_ANTI_AFFINITY_REASON)
        return Status.success()

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        # No preferred term of the pod and no bound pod with affinity terms (pre_filter's scan):
        # equal scores everywhere, no per-node pass needed.
        terms = PodTerms.of(pod.pod)
        if terms.preferred_affinity or terms.preferred_anti_affinity or state.get(_WITH_AFFINITY, True):
            return None
        return EQUAL

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        snapshot = state.get(_SNAPSHOT)
        all_nodes = snapshot.nodes if snapshot is not None else nodes
        incoming = pod.pod
        terms = PodTerms.of(incoming)
        has_preferred = bool(terms.preferred_affinity or terms.preferred_anti_affinity)
        if has_preferred:
            pairs = [(node, existing) for node in all_nodes for existing in node.pods.values()]
        else:  # only the existing pods' own terms can say something
            pairs = state.get(_WITH_AFFINITY)
            if pairs is None:
                pairs = pods_with_affinity(nodes)
        scores: dict[str, Counter[str]] = defaultdict(Counter)
        for node, existing in pairs:
            labels = node.node.metadata.labels
            if not labels:
                continue
            other = existing.pod
            theirs = PodTerms.of(other)
            weighted = (
                [(t, t.weight) for t in terms.preferred_affinity if t.matches(other)]
                + [(t, -t.weight) for t in terms.preferred_anti_affinity if t.matches(other)]
                + [(t, HARD_POD_AFFINITY_WEIGHT) for t in theirs.required_affinity if t.matches(incoming)]
                + [(t, t.weight) for t in theirs.preferred_affinity if t.matches(incoming)]
                + [(t, -t.weight) for t in theirs.preferred_anti_affinity if t.matches(incoming)]
            )
            for term, weight in weighted:
                if term.topology_key in labels:
                    scores[term.topology_key][labels[term.topology_key]] += weight
        if not scores:
            return Status.skip()
        state[_SCORE_STATE] = scores
        return Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        scores: dict[str, Counter[str]] = state[_SCORE_STATE]
        labels = node.node.metadata.labels
        return float(sum(values[labels[key]] for key, values in scores.items() if key in labels))

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        if not scores:
            return
        low, high = min(scores.values()), max(scores.values())
        for name, score in scores.items():
            scores[name] = MAX_SCORE * (score - low) / (high - low) if high > low else 0.0


def _satisfies_affinity(s: _FilterState, pod: objects_pb2.Pod, labels: Mapping[str, str]) -> bool:
    pods_exist = True
    for term in s.terms.required_affinity:
        key = term.topology_key
        if key not in labels:  # every topology label must exist on the node
            return False
        if s.affinity_counts[(key, labels[key])] <= 0:
            pods_exist = False
    if pods_exist:
        return True
    # The first pod of a group with affinity to itself: no pod anywhere matches yet, so it may
    # go to any node with the topology labels, or it would wait forever.
    return not s.affinity_counts and all(t.matches(pod) for t in s.terms.required_affinity)
