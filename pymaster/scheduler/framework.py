"""The scheduling framework (kube-scheduler's, pared down): the per-pod and per-node facts plugins
read, the plugin protocols, and one scheduling decision: pre-filter, filter the nodes (a sample of
them on large clusters), pre-score, score and normalise the feasible ones, pick the best, or
explain why none fits.

Plugins are pure (no store, no I/O): they read the precomputed PodInfo and NodeInfo and keep what
they precompute per attempt in the CycleState under their own name, so table tests need nothing
but protos. A plugin may be a filter, a score plugin, or both.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pymaster.api import objects_pb2
from pymaster.api.nodes import ready_status
from pymaster.api.pods import is_extended_resource, is_terminal, pod_key, pod_resource_requests
from pymaster.api.quantity import cpu_millis, memory_bytes, parse_quantity

if TYPE_CHECKING:
    from pymaster.scheduler.node_arrays import NodeArrays

MAX_SCORE = 100
# What a pod without requests counts as when scoring (kube-scheduler's non-zero defaults), so
# request-less pods still spread across nodes; filters use the real requests.
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024
EPHEMERAL_STORAGE = "ephemeral-storage"

# Per attempt, plugin name -> what that plugin precomputed (kube-scheduler's CycleState).
CycleState = dict[str, object]

SUCCESS, UNSCHEDULABLE, SKIP = "Success", "Unschedulable", "Skip"


@dataclass(frozen=True)
class Status:
    """A plugin's verdict.

    Attributes:
        code: SUCCESS, UNSCHEDULABLE or SKIP ("this plugin has nothing to say about this pod").
        reasons: Why not (each counted once per node in the "0/N nodes are available" message),
            e.g. "Insufficient cpu"; a plugin may report several.
    """

    code: str
    reasons: tuple[str, ...] = ()

    @classmethod
    def success(cls) -> Status:
        return _SUCCESS

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(UNSCHEDULABLE, reasons)

    @classmethod
    def skip(cls) -> Status:
        return _SKIP

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    @property
    def skipped(self) -> bool:
        return self.code == SKIP

    @property
    def reason(self) -> str:
        """The reasons as one string ("" when ok)."""
        return ", ".join(self.reasons)


_SUCCESS = Status(SUCCESS)
_SKIP = Status(SKIP)

# (hostIP, protocol, hostPort) of a container port that claims a port of the node.
HostPort = tuple[str, str, int]


def pod_host_ports(pod: objects_pb2.Pod) -> tuple[HostPort, ...]:
    """The host ports a pod claims (hostIP "" is 0.0.0.0, protocol defaults to TCP)."""
    return tuple(
        (port.host_ip or "0.0.0.0", port.protocol or "TCP", port.host_port)
        for container in [*pod.spec.init_containers, *pod.spec.containers]
        for port in container.ports
        if port.host_port > 0
    )


@dataclass(frozen=True)
class PodInfo:
    """A pod and what it requests, computed once per scheduling attempt (and once per bound pod
    in the scheduler's cache).

    ``extended`` holds the extended resources it requests (name -> count, only those above 0);
    ``host_ports`` the (hostIP, protocol, hostPort) it claims; ``priority`` spec.priority (0 unset).
    """

    pod: objects_pb2.Pod
    key: str
    cpu_millis: int
    memory_bytes: int
    extended: Mapping[str, int] = field(default_factory=dict)
    ephemeral_storage_bytes: int = 0
    host_ports: tuple[HostPort, ...] = ()
    priority: int = 0

    @classmethod
    def from_pod(cls, pod: objects_pb2.Pod) -> PodInfo:
        """Raises ValueError if a quantity does not parse (an unvalidated pod)."""
        requests = pod_resource_requests(pod)
        extended = {name: n for name, n in requests.items() if is_extended_resource(name) and n > 0}
        return cls(
            pod, pod_key(pod), requests.get("cpu", 0), requests.get("memory", 0), extended,
            requests.get(EPHEMERAL_STORAGE, 0), pod_host_ports(pod), pod_priority(pod),
        )

    @property
    def nonzero_cpu_millis(self) -> int:
        return self.cpu_millis or DEFAULT_CPU_MILLIS

    @property
    def nonzero_memory_bytes(self) -> int:
        return self.memory_bytes or DEFAULT_MEMORY_BYTES


def has_pod_affinity(pod: objects_pb2.Pod) -> bool:
    """Whether a pod has pod affinity or anti-affinity (kube-scheduler's PodsWithAffinity)."""
    spec = pod.spec
    return spec.HasField("affinity") and (
        spec.affinity.HasField("pod_affinity") or spec.affinity.HasField("pod_anti_affinity"))


def pod_priority(pod: objects_pb2.Pod) -> int:
    """spec.priority, 0 when unset (kube-scheduler's default for pods without a priority)."""
    return pod.spec.priority if pod.spec.HasField("priority") else 0


def bound_pod_info(pod: objects_pb2.Pod) -> PodInfo:
    """The info of a pod already bound: one whose requests do not parse (stored unvalidated)
    counts as requesting nothing, so it never blocks the scheduling of others."""
    try:
        return PodInfo.from_pod(pod)
    except ValueError:
        return PodInfo(pod, pod_key(pod), 0, 0, {}, 0, pod_host_ports(pod), pod_priority(pod))


@dataclass(eq=False)
class NodeInfo:
    """A node, the non-terminal pods bound to it (``pods``: key -> PodInfo) and the sums of what
    they request, kept up to date incrementally (``add_pod`` / ``remove_pod``).

    ``nonzero_*`` count request-less pods at the scoring defaults; ``allocatable_extended`` and
    ``requested_extended`` are the extended resources (name -> count); ephemeral-storage counts
    in bytes, like memory (not in scores: kube-scheduler's default scores cpu and memory only);
    ``used_ports`` counts the host ports the pods claim; ``pods_with_affinity`` are the pods
    with pod (anti-)affinity (kube-scheduler's PodsWithAffinity), so inter-pod affinity need not
    look at every pod.
    """

    node: objects_pb2.Node
    allocatable_cpu_millis: int = 0
    allocatable_memory_bytes: int = 0
    allocatable_pods: int = 0
    requested_cpu_millis: int = 0
    requested_memory_bytes: int = 0
    nonzero_cpu_millis: int = 0
    nonzero_memory_bytes: int = 0
    pod_count: int = 0
    allocatable_extended: dict[str, int] = field(default_factory=dict)
    requested_extended: dict[str, int] = field(default_factory=dict)
    allocatable_ephemeral_storage_bytes: int = 0
    requested_ephemeral_storage_bytes: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    used_ports: Counter[HostPort] = field(default_factory=Counter)
    pods_with_affinity: dict[str, PodInfo] = field(default_factory=dict)
    ready: bool = field(init=False)
    # Bumped on every change: caches of derived per-node state (the vectorised arrays) compare it.
    generation: int = 0

    def __post_init__(self) -> None:
        self.ready = ready_status(self.node) == "True"

    @property
    def name(self) -> str:
        return self.node.metadata.name

    @classmethod
    def from_node(cls, node: objects_pb2.Node, pods: Iterable[objects_pb2.Pod | PodInfo] = ()) -> NodeInfo:
        """Builds the info of ``node`` with ``pods`` bound to it.

        Allocatable falls back to capacity per resource; a missing or unparsable figure counts as
        0 (nothing fits), as a node that has not reported its resources yet should get no pods.
        """
        status = node.status
        extended_names = {n for n in [*status.capacity, *status.allocatable] if is_extended_resource(n)}
        info = cls(
            node,
            allocatable_cpu_millis=_resource(status, "cpu", cpu_millis),
            allocatable_memory_bytes=_resource(status, "memory", memory_bytes),
            allocatable_pods=_resource(status, "pods", _count),
            allocatable_extended={name: _resource(status, name, _count) for name in sorted(extended_names)},
            allocatable_ephemeral_storage_bytes=_resource(status, EPHEMERAL_STORAGE, memory_bytes),
        )
        for pod in pods:
            info.add_pod(pod)
        return info

    def set_node(self, node: objects_pb2.Node) -> None:
        """Takes an updated ``node`` (its allocatable, readiness, labels ...), keeping the pods."""
        fresh = NodeInfo.from_node(node)
        self.node, self.ready = node, fresh.ready
        self.allocatable_cpu_millis = fresh.allocatable_cpu_millis
        self.allocatable_memory_bytes = fresh.allocatable_memory_bytes
        self.allocatable_pods = fresh.allocatable_pods
        self.allocatable_extended = fresh.allocatable_extended
        self.allocatable_ephemeral_storage_bytes = fresh.allocatable_ephemeral_storage_bytes
        self.generation += 1

    def add_pod(self, pod: objects_pb2.Pod | PodInfo) -> None:
        """Counts a pod bound to this node (skipped when terminal; replaces an entry of the same key)."""
        info = pod if isinstance(pod, PodInfo) else bound_pod_info(pod)
        if is_terminal(info.pod):
            return
        if info.key in self.pods:
            self.remove_pod(info.key)
        self._apply(info, 1)
        self.pods[info.key] = info
        if has_pod_affinity(info.pod):
            self.pods_with_affinity[info.key] = info

    def remove_pod(self, key: str) -> PodInfo | None:
        """Stops counting the pod of ``key``; returns its info (None if it was not counted)."""
        info = self.pods.pop(key, None)
        if info is not None:
            self._apply(info, -1)
            self.pods_with_affinity.pop(key, None)
        return info

    def _apply(self, pod: PodInfo, sign: int) -> None:
        for name, amount in pod.extended.items():
            self.requested_extended[name] = self.requested_extended.get(name, 0) + sign * amount
        self.requested_cpu_millis += sign * pod.cpu_millis
        self.requested_memory_bytes += sign * pod.memory_bytes
        self.requested_ephemeral_storage_bytes += sign * pod.ephemeral_storage_bytes
        self.nonzero_cpu_millis += sign * pod.nonzero_cpu_millis
        self.nonzero_memory_bytes += sign * pod.nonzero_memory_bytes
        self.pod_count += sign
        for port in pod.host_ports:
            self.used_ports[port] += sign
            if self.used_ports[port] <= 0:
                del self.used_ports[port]
        self.generation += 1


def _count(quantity: str) -> int:
    return int(parse_quantity(quantity))


def _resource(status: objects_pb2.NodeStatus, name: str, parse: Callable[[str], int]) -> int:
    value = status.allocatable.get(name) or status.capacity.get(name)
    if not value:
        return 0
    try:
        return max(parse(value), 0)
    except ValueError:
        return 0


class Snapshot:
    """The nodes one attempt sees: ``nodes`` (every node, in a stable order), ``get(name)`` and
    ``have_pods_with_affinity``."""

    def __init__(self, nodes: Sequence[NodeInfo], by_name: Mapping[str, NodeInfo] | None = None,
                 arrays: NodeArrays | None = None,
                 affinity_nodes: Callable[[], Iterable[str]] | None = None):
        """
        Args:
            arrays: The nodes as arrays (same order), for the vectorised plugins; None: every
                plugin runs per node.
            affinity_nodes: The names of the nodes holding pods with pod (anti-)affinity, kept
                by the caller; None: found by looking at every node.
        """
        self.nodes = nodes
        self._by_name = by_name if by_name is not None else {info.name: info for info in nodes}
        self.arrays = arrays
        self._affinity_nodes = affinity_nodes

    @property
    def have_pods_with_affinity(self) -> list[NodeInfo]:
        """The nodes holding at least one pod with pod (anti-)affinity (kube-scheduler's
        HavePodsWithAffinityList); settable (tests) to a fixed list."""
        if self._affinity_nodes is None:
            return [info for info in self.nodes if info.pods_with_affinity]
        return [self._by_name[name] for name in sorted(self._affinity_nodes()) if name in self._by_name]

    @have_pods_with_affinity.setter
    def have_pods_with_affinity(self, nodes: Sequence[NodeInfo]) -> None:
        fixed = [info.name for info in nodes]
        self._affinity_nodes = lambda: fixed
        self._by_name = {**self._by_name, **{info.name: info for info in nodes}}

    def get(self, name: str) -> NodeInfo | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self.nodes)


class FilterPlugin(Protocol):
    """Says whether a pod may run on a node. May also define ``pre_filter(state, pod, snapshot)
    -> Status``, run once per attempt before any filter: SKIP means ``filter`` is not called for
    this pod, UNSCHEDULABLE that the pod fits no node (its reasons counted for every node)."""

    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


class ScorePlugin(Protocol):
    """Ranks a feasible node for a pod with a raw score. May also define ``pre_score(state, pod,
    nodes) -> Status`` over the feasible nodes (SKIP: not scored for this pod) and ``normalize(
    state, pod, scores)``, mapping the raw scores (node name -> raw) to 0..100 in place. Scores
    are then clamped to 0..100 and weighted; fractions count."""

    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float: ...


@dataclass(frozen=True)
class ScheduleResult:
    """The outcome of one attempt: ``node_name`` if the pod fits somewhere, else ``message``.
    ``evaluated``: how many nodes were filtered."""

    node_name: str | None
    message: str = ""
    evaluated: int = field(default=0, compare=False)


NO_NODES = "no nodes available to schedule pods"


def unschedulable_message(total_nodes: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError message: ``0/3 nodes are available: 1 Insufficient memory, 2
    node(s) were unschedulable.`` (the "count reason" entries sorted as strings, as Kubernetes
    does), or ``no nodes available to schedule pods`` when there is no node."""
    if total_nodes == 0:
        return NO_NODES
    summary = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    return f"0/{total_nodes} nodes are available: {summary}."


# kube-scheduler's defaults for percentageOfNodesToScore / minFeasibleNodesToFind.
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
DEFAULT_PERCENTAGE_BASE = 50


def feasible_nodes_to_find(total: int, percentage: int = 0) -> int:
    """How many feasible nodes an attempt looks for before it stops filtering (kube-scheduler's
    numFeasibleNodesToFind): all below 100 nodes; else ``percentage`` of them (0 = adaptive:
    50% minus 1% per 125 nodes, at least 5%), and at least 100."""
    if total < MIN_FEASIBLE_NODES or percentage >= 100:
        return total
    if percentage <= 0:
        percentage = max(DEFAULT_PERCENTAGE_BASE - total // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES)


class Framework:
    """Runs one profile: the filter plugins (in order, stopping at a node's first failure) and the
    weighted score plugins, for one pod over a snapshot of nodes."""

    def __init__(
        self,
        filters: Sequence[FilterPlugin],
        scores: Sequence[tuple[ScorePlugin, int]],
        rng: random.Random | None = None,
        percentage_of_nodes_to_score: int = 0,
    ):
        """
        Args:
            filters: Filter plugins, in the order they run.
            scores: (plugin, weight) pairs.
            rng: Breaks ties between equally scored nodes (random, like kube-scheduler, so equal
                nodes share the load); seed it in tests.
            percentage_of_nodes_to_score: Stop filtering once this share of the nodes is found
                feasible (0: kube-scheduler's adaptive default; 100: every node).
        """
        self.filters = tuple(filters)
        self.scores = tuple(scores)
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self._rng = rng or random.Random()
        self._np_rng = np.random.default_rng(self._rng.getrandbits(64))
        # Where the next attempt starts filtering (kube-scheduler's nextStartNodeIndex), so
        # sampled attempts take turns over the whole cluster.
        self._next_start = 0

    def run_filters(self, state: CycleState, pod: PodInfo, node: NodeInfo,
                    filters: Sequence[FilterPlugin] | None = None) -> Status:
        """The first failing filter's status, or success."""
        for plugin in self.filters if filters is None else filters:
            status = plugin.filter(state, pod, node)
            if not status.ok:
                return status
        return Status.success()

    def pre_filter(
        self, state: CycleState, pod: PodInfo, snapshot: Snapshot
    ) -> tuple[list[FilterPlugin], Status]:
        """Runs the pre-filters; returns the filters to run for this pod and success, or the
        first UNSCHEDULABLE status."""
        active = []
        for plugin in self.filters:
            pre = getattr(plugin, "pre_filter", None)
            status = pre(state, pod, snapshot) if pre is not None else Status.success()
            if status.skipped:
                continue
            if not status.ok:
                return [], status
            active.append(plugin)
        return active, Status.success()

    def find_feasible(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                      filters: Sequence[FilterPlugin]) -> tuple[list[NodeInfo], Counter[str], int]:
        """Filters nodes from the rotating start until enough are feasible; returns the feasible
        nodes, the reasons of the rejected ones and how many nodes were filtered."""
        nodes = snapshot.nodes
        total = len(nodes)
        wanted = feasible_nodes_to_find(total, self.percentage_of_nodes_to_score)
        start = self._next_start % total if total else 0
        feasible: list[NodeInfo] = []
        reasons: Counter[str] = Counter()
        processed = 0
        for offset in range(total):
            node = nodes[(start + offset) % total]
            processed += 1
            status = self.run_filters(state, pod, node, filters)
            if status.ok:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
            else:
                reasons.update(set(status.reasons))
        if total:
            self._next_start = (start + processed) % total
        return feasible, reasons, processed

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> dict[str, float]:
        """The weighted sum of the score plugins for each feasible node (name -> total)."""
        totals = dict.fromkeys((node.name for node in nodes), 0.0)
        for plugin, weight in self.scores:
            pre = getattr(plugin, "pre_score", None)
            if pre is not None and pre(state, pod, nodes).skipped:
                continue
            raw = {node.name: plugin.score(state, pod, node) for node in nodes}
            normalize = getattr(plugin, "normalize", None)
            if normalize is not None:
                normalize(state, pod, raw)
            for name, value in raw.items():
                totals[name] += weight * min(max(value, 0), MAX_SCORE)
        return totals

    def schedule(self, pod: PodInfo, snapshot: Snapshot | Sequence[NodeInfo]) -> ScheduleResult:
        """Picks the best feasible node for ``pod``, or explains why none fits."""
        if not isinstance(snapshot, Snapshot):
            snapshot = Snapshot(list(snapshot))
        total = len(snapshot.nodes)
        state: CycleState = {}
        filters, status = self.pre_filter(state, pod, snapshot)
        if not status.ok:
            reasons = Counter({reason: total for reason in set(status.reasons)})
            return ScheduleResult(None, unschedulable_message(total, reasons))
        if snapshot.arrays is not None and total:
            result = self._schedule_vectorised(state, pod, snapshot, filters)
            if result is not None:
                return result
        feasible, reasons, processed = self.find_feasible(state, pod, snapshot, filters)
        if not feasible:
            return ScheduleResult(None, unschedulable_message(total, reasons), processed)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated=processed)
        return ScheduleResult(self.pick(self.score_nodes(state, pod, feasible)), evaluated=processed)

    def _schedule_vectorised(self, state: CycleState, pod: PodInfo, snapshot: Snapshot,
                             filters: Sequence[FilterPlugin]) -> ScheduleResult | None:
        """The same decision over the snapshot's arrays; None when no node passes the array
        filters (the scalar path then explains why, node by node).

        The plugins with an array form filter and score every node at once. Plugins without one
        (and pods an array form declines) run per node on a sample: the nodes that passed the
        array filters, best array score first (ties in random order), until
        percentageOfNodesToScore of the nodes are found feasible; kube-scheduler samples the
        next nodes by index instead, which on a large cluster misses the emptiest nodes and
        lets equal pods spread unevenly. Without per-node plugins every node is scored.
        """
        arrays = snapshot.arrays
        assert arrays is not None
        mask: np.ndarray | None = None  # None: every node passed so far
        scalar_filters = []
        for plugin in filters:
            method = getattr(plugin, "filter_array", None)
            part = method(state, pod, arrays) if method is not None else None
            if part is None:
                scalar_filters.append(plugin)
            elif part is not True:  # True (node_arrays.ALL_PASS): every node passes
                mask = part.copy() if mask is None else np.logical_and(mask, part, out=mask)
        candidates = np.arange(len(arrays)) if mask is None else np.flatnonzero(mask)
        if not len(candidates):
            return None
        totals: np.ndarray | None = None  # None: equal so far
        scalar_scores = []
        for plugin, weight in self.scores:
            # The array form stands alone (no pre_score: that would look at every node); a
            # plugin with nothing to say returns equal scores, which change no ranking.
            method = getattr(plugin, "score_array", None)
            part = method(state, pod, arrays) if method is not None else None
            if part is None:
                scalar_scores.append((plugin, weight))
            elif not isinstance(part, float):  # a float (node_arrays.EQUAL): the same everywhere
                # Array forms are normalised to 0..100 by contract (the scalar path clips).
                if totals is None:
                    totals = part * weight  # a new array: the plugin's is not ours to change
                else:
                    totals += part if weight == 1 else part * weight
        totals = np.zeros(len(candidates)) if totals is None else totals[candidates]
        if not scalar_filters and not scalar_scores:
            return ScheduleResult(arrays.infos[int(candidates[self._best(totals)])].name,
                                  evaluated=len(arrays))
        # Best array score first; a random permutation first so equal nodes come in random order.
        shuffled = self._np_rng.permutation(len(candidates))
        order = shuffled[np.argsort(-totals[shuffled], kind="stable")]
        wanted = feasible_nodes_to_find(len(arrays), self.percentage_of_nodes_to_score)
        if scalar_filters:
            sample: list[int] = []  # positions in candidates
            for position, index in zip(order.tolist(), candidates[order].tolist(), strict=True):
                if self.run_filters(state, pod, arrays.infos[index], scalar_filters).ok:
                    sample.append(position)
                    if len(sample) >= wanted:
                        break
            if not sample:
                return None
            positions = np.array(sample, dtype=np.int64)
        else:
            positions = order[:wanted]
        nodes = [arrays.infos[index] for index in candidates[positions].tolist()]
        sample_totals = totals[positions]
        for plugin, weight in scalar_scores:
            pre = getattr(plugin, "pre_score", None)
            if pre is not None and pre(state, pod, nodes).skipped:
                continue
            raw = {node.name: plugin.score(state, pod, node) for node in nodes}
            normalize = getattr(plugin, "normalize", None)
            if normalize is not None:
                normalize(state, pod, raw)
            sample_totals += weight * np.clip(np.array([raw[node.name] for node in nodes]), 0, MAX_SCORE)
        return ScheduleResult(nodes[self._best(sample_totals)].name, evaluated=len(arrays))

    def _best(self, totals: np.ndarray) -> int:
        """The position of the highest total; ties broken at random."""
        best = np.flatnonzero(totals == totals.max())
        return int(best[0]) if len(best) == 1 else int(best[self._rng.randrange(len(best))])

    def pick(self, totals: Mapping[str, float]) -> str:
        """The best-scored node; ties broken at random so equal nodes fill evenly."""
        best_score = max(totals.values())
        best = [name for name, score in totals.items() if score == best_score]
        return best[0] if len(best) == 1 else self._rng.choice(sorted(best))

