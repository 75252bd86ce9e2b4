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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pymaster.api import objects_pb2
from pymaster.api.nodes import ready_status
from pymaster.api.pods import is_terminal, pod_key, pod_requests
from pymaster.api.quantity import cpu_millis, memory_bytes, parse_quantity

MAX_SCORE = 100
# What a pod without requests counts as when scoring (kube-scheduler's non-zero defaults), so
# request-less pods still spread across nodes; filters use the real requests.
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Status:
    """A filter's verdict on one node.

    Attributes:
        ok: The pod may run there.
        reasons: Why not (each counted once per node in the "0/N nodes available" message), e.g.
            "insufficient cpu"; a plugin may report several.
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
    """A pod and what it requests, computed once per scheduling attempt."""

    pod: objects_pb2.Pod
    key: str
    cpu_millis: int
    memory_bytes: int

    @classmethod
    def from_pod(cls, pod: objects_pb2.Pod) -> PodInfo:
        """Raises ValueError if a quantity does not parse (an unvalidated pod)."""
        cpu, memory = pod_requests(pod)
        return cls(pod, pod_key(pod), cpu, memory)


@dataclass
class NodeInfo:
    """A node and the sums of what the pods bound to it request (terminal pods excluded).

    ``nonzero_*`` count request-less pods at the scoring defaults.
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
        info = cls(
            node,
            allocatable_cpu_millis=_resource(status, "cpu", cpu_millis),
            allocatable_memory_bytes=_resource(status, "memory", memory_bytes),
            allocatable_pods=_resource(status, "pods", lambda s: int(parse_quantity(s))),
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
            cpu, memory = pod_requests(pod)
        except ValueError:
            cpu = memory = 0
        self.requested_cpu_millis += cpu
        self.requested_memory_bytes += memory
        self.nonzero_cpu_millis += cpu or DEFAULT_CPU_MILLIS
        self.nonzero_memory_bytes += memory or DEFAULT_MEMORY_BYTES
        self.pod_count += 1


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


def unschedulable_message(total_nodes: int, reasons: Counter[str]) -> str:
    """kube-scheduler's summary: ``0/3 nodes available: 1 insufficient memory, 2 node(s) were
    unschedulable`` (reasons sorted), or ``0/0 nodes available: no nodes registered``."""
    if total_nodes == 0:
        return "0/0 nodes available: no nodes registered"
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"0/{total_nodes} nodes available: {summary}"


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
