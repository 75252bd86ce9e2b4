"""The scheduling framework (kube-scheduler's, pared down): the per-pod and per-node facts plugins
read, the plugin protocols, and one scheduling decision: filter every node, score the feasible
ones, pick the best, or explain why none fits.

Plugins are pure: ``filter(pod, node) -> Status`` and ``score(pod, node) -> 0..100`` over the
precomputed PodInfo and NodeInfo, so a cycle never parses a quantity twice and the tests need
nothing but protos.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pymaster.api import objects_pb2
from pymaster.api.nodes import ready_status
from pymaster.api.pods import is_extended_resource, is_terminal, pod_key, pod_resource_requests
from pymaster.api.quantity import cpu_millis, memory_bytes, parse_quantity

MAX_SCORE = 100
# What a pod without requests counts as when scoring (kube-scheduler's non-zero defaults), so
# request-less pods still spread across nodes; filters use the real requests.
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024
EPHEMERAL_STORAGE = "ephemeral-storage"


@dataclass(frozen=True)
class Status:
    """A filter's verdict on one node.

    Attributes:
        ok: The pod may run there.
        reasons: Why not (each counted once per node in the "0/N nodes are available" message),
            e.g. "Insufficient cpu"; a plugin may report several.
    """

    ok: bool
    reasons: tuple[str, ...] = ()

    @classmethod
    def success(cls) -> Status:
        return _SUCCESS

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(False, reasons)

    @property
    def reason(self) -> str:
        """The reasons as one string ("" when ok)."""
        return ", ".join(self.reasons)


_SUCCESS = Status(True)


@dataclass(frozen=True)
class PodInfo:
    """A pod and what it requests, computed once per scheduling attempt.

    ``extended`` holds the extended resources it requests (name -> count, only those above 0).
    """

    pod: objects_pb2.Pod
    key: str
    cpu_millis: int
    memory_bytes: int
    extended: Mapping[str, int] = field(default_factory=dict)
    ephemeral_storage_bytes: int = 0

    @classmethod
    def from_pod(cls, pod: objects_pb2.Pod) -> PodInfo:
        """Raises ValueError if a quantity does not parse (an unvalidated pod)."""
        requests = pod_resource_requests(pod)
        extended = {name: n for name, n in requests.items() if is_extended_resource(name) and n > 0}
        return cls(
            pod, pod_key(pod), requests.get("cpu", 0), requests.get("memory", 0), extended,
            requests.get(EPHEMERAL_STORAGE, 0),
        )


@dataclass
class NodeInfo:
    """A node and the sums of what the pods bound to it request (terminal pods excluded).

    ``nonzero_*`` count request-less pods at the scoring defaults; ``allocatable_extended`` and
    ``requested_extended`` are the extended resources (name -> count); ephemeral-storage counts
    in bytes, like memory (not in scores: kube-scheduler's default scores cpu and memory only).
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
    ready: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ready = ready_status(self.node) == "True"

    @property
    def name(self) -> str:
        return self.node.metadata.name

    @classmethod
    def from_node(cls, node: objects_pb2.Node, pods: Iterable[objects_pb2.Pod] = ()) -> NodeInfo:
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

    def add_pod(self, pod: objects_pb2.Pod) -> None:
        """Counts a pod bound to this node (skipped when terminal, or when its requests do not
        parse: it was stored unvalidated and must not block scheduling of others)."""
        if is_terminal(pod):
            return
        try:
            requests = pod_resource_requests(pod)
        except ValueError:
            requests = {}
        cpu, memory = requests.get("cpu", 0), requests.get("memory", 0)
        for name, amount in requests.items():
            if is_extended_resource(name):
                self.requested_extended[name] = self.requested_extended.get(name, 0) + amount
        self.requested_cpu_millis += cpu
        self.requested_memory_bytes += memory
        self.requested_ephemeral_storage_bytes += requests.get(EPHEMERAL_STORAGE, 0)
        self.nonzero_cpu_millis += cpu or DEFAULT_CPU_MILLIS
        self.nonzero_memory_bytes += memory or DEFAULT_MEMORY_BYTES
        self.pod_count += 1


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


class FilterPlugin(Protocol):
    """Says whether a pod may run on a node."""

    name: str

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status: ...


class ScorePlugin(Protocol):
    """Ranks a feasible node for a pod: 0 (worst) to 100 (best); fractions count."""

    name: str

    def score(self, pod: PodInfo, node: NodeInfo) -> float: ...


@dataclass(frozen=True)
class ScheduleResult:
    """The outcome of one attempt: ``node_name`` if the pod fits somewhere, else ``message``."""

    node_name: str | None
    message: str = ""


NO_NODES = "no nodes available to schedule pods"


def unschedulable_message(total_nodes: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError message: ``0/3 nodes are available: 1 Insufficient memory, 2
    node(s) were unschedulable.`` (the "count reason" entries sorted as strings, as Kubernetes
    does), or ``no nodes available to schedule pods`` when there is no node."""
    if total_nodes == 0:
        return NO_NODES
    summary = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    return f"0/{total_nodes} nodes are available: {summary}."


class Framework:
    """Runs the filter plugins (in order, stopping at a node's first failure) and the weighted
    score plugins for one pod over a snapshot of nodes."""

    def __init__(
        self,
        filters: Sequence[FilterPlugin],
        scores: Sequence[tuple[ScorePlugin, int]],
        rng: random.Random | None = None,
    ):
        """
        Args:
            filters: Filter plugins, in the order they run.
            scores: (plugin, weight) pairs.
            rng: Breaks ties between equally scored nodes (random, like kube-scheduler, so equal
                nodes share the load); seed it in tests.
        """
        self.filters = tuple(filters)
        self.scores = tuple(scores)
        self._rng = rng or random.Random()

    def run_filters(self, pod: PodInfo, node: NodeInfo) -> Status:
        """The first failing filter's status, or success."""
        for plugin in self.filters:
            status = plugin.filter(pod, node)
            if not status.ok:
                return status
        return Status.success()

    def score(self, pod: PodInfo, node: NodeInfo) -> float:
        """The weighted sum of the score plugins for a feasible node."""
        return sum(weight * min(max(plugin.score(pod, node), 0), MAX_SCORE) for plugin, weight in self.scores)

    def schedule(self, pod: PodInfo, nodes: Iterable[NodeInfo]) -> ScheduleResult:
        """Picks the best feasible node for ``pod``, or explains why none fits."""
        total = 0
        reasons: Counter[str] = Counter()
        best: list[str] = []
        best_score = -1
        for node in nodes:
            total += 1
            status = self.run_filters(pod, node)
            if not status.ok:
                reasons.update(set(status.reasons))
                continue
            score = self.score(pod, node)
            if score > best_score:
                best, best_score = [node.name], score
            elif score == best_score:
                best.append(node.name)
        if not best:
            return ScheduleResult(None, unschedulable_message(total, reasons))
        return ScheduleResult(best[0] if len(best) == 1 else self._rng.choice(sorted(best)))
