"""kube-state-metrics-style series of the cluster on the master's /metrics:
``kube_pod_status_phase{namespace,pod,phase}`` (1 for the pod's phase, 0 for the others),
``kube_node_status_condition{node,condition,status}`` and ``pykube_store_resource_version``.

What they need (each pod's phase, each node's conditions) is kept from watches of the store, and a
scrape writes the exposition text itself: at 5,000 pods, listing the pods (a copy of each) and
formatting their 25,000 samples through prometheus_client took 300 ms a scrape, most of it holding
the GIL the master's event loop needs; rendered here it takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from google.protobuf.message import Message

from pymaster.api.kinds import NODES, PODS
from pymaster.api.pods import POD_PHASES
from pymaster.store.base import DELETED, Store
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

CONDITION_STATUSES = ("true", "false", "unknown")

_PHASE_HELP = "The pods' current phase (1 for the current one)."
_CONDITION_HELP = "The condition of a cluster node."
_RV_HELP = "The store's current resourceVersion (writes so far)."
_ONE, _ZERO = "1.0", "0.0"


class StateSnapshot(NamedTuple):
    """What a scrape renders: ((namespace, pod), phase), (node, ((condition, status), ...)), rv."""

    phases: list[tuple[tuple[str, str], str]]
    conditions: list[tuple[str, tuple[tuple[str, str], ...]]]
    resource_version: int


EMPTY = StateSnapshot([], [], 0)


class ClusterStateMetrics:
    """Pod phases and node conditions by key, followed from the store; ``snapshot`` on the event
    loop, ``render`` anywhere."""

    def __init__(self, store: Store):
        self._store = store
        self._phases: dict[tuple[str, str], str] = {}
        self._conditions: dict[str, tuple[tuple[str, str], ...]] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Lists pods and nodes and follows them (on the running loop)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow(PODS.resource, self._phases, self._set_pod),
                             name="state-metrics-pods"),
            loop.create_task(self._follow(NODES.resource, self._conditions, self._set_node),
                             name="state-metrics-nodes"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def snapshot(self) -> StateSnapshot:
        """The current figures (call on the event loop: the watches change them there)."""
        return StateSnapshot(list(self._phases.items()), list(self._conditions.items()),
                             self._store.current_rv)

    def _set_pod(self, pod: Message, deleted: bool) -> None:
        key = (pod.metadata.namespace, pod.metadata.name)
        if deleted:
            self._phases.pop(key, None)
        else:
            self._phases[key] = pod.status.phase

    def _set_node(self, node: Message, deleted: bool) -> None:
        name = node.metadata.name
        if deleted:
            self._conditions.pop(name, None)
        else:
            self._conditions[name] = tuple((c.type, c.status.lower()) for c in node.status.conditions)

    async def _follow(self, kind: str, kept: dict, apply) -> None:
        """Keeps ``kept`` (through ``apply``) from the store's objects of ``kind``."""

        def relist() -> int:
            items, rv = self._store.list(kind)
            kept.clear()
            for obj in items:
                apply(obj, False)
            return rv

        await follow(self._store, kind, relist(), lambda event: apply(event.object, event.type == DELETED),
                     relist)


def render(state: StateSnapshot) -> str:
    """The three families in the exposition text format (which OpenMetrics shares for gauges),
    labels in name order as prometheus_client writes them, samples in key order."""
    lines = _head("kube_pod_status_phase", _PHASE_HELP)
    for (namespace, pod), current in sorted(state.phases):
        # Names are DNS labels and subdomains (validated): nothing to escape.
        for phase in POD_PHASES:
            labels = f'namespace="{namespace}",phase="{phase}",pod="{pod}"'
            lines.append(f"kube_pod_status_phase{{{labels}}} {_ONE if phase == current else _ZERO}")
    lines += _head("kube_node_status_condition", _CONDITION_HELP)
    for node, conditions in sorted(state.conditions):
        for condition, current in conditions:
            condition = _escape(condition)  # an agent's string
            for status in CONDITION_STATUSES:
                labels = f'condition="{condition}",node="{node}",status="{status}"'
                lines.append(f"kube_node_status_condition{{{labels}}} {_ONE if status == current else _ZERO}")
    lines += _head("pykube_store_resource_version", _RV_HELP)
    lines.append(f"pykube_store_resource_version {float(state.resource_version)}")
    return "\n".join(lines) + "\n"


def _head(name: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
