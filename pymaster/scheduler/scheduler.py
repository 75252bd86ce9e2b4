"""The scheduler: binds pending pods to nodes, driven by store watches (no polling).

Two watch tasks (pods, nodes) keep an in-memory cache of the cluster and feed the scheduling
queue; one loop pops a pod, runs the framework over a NodeInfo snapshot and writes the result:

- fits: bind with a store.mutate (spec.nodeName + PodScheduled=True), only if the pod is still
  unbound, and put the result into the cache at once ("assume") so the next pod sees the node's
  new load before the watch event arrives;
- fits nowhere: PodScheduled=False, reason Unschedulable, with the "0/N nodes are available: ..."
  message (written only when it changes), and park the pod until the cluster changes.

Each outcome is an event about the pod (source ``default-scheduler``): ``Scheduled`` ("Successfully
assigned default/web to n1") or, on every failed attempt, ``FailedScheduling`` with the reasons
(repeats fold into one event with a count).

NodeInfos are rebuilt lazily: an event marks the nodes it touches dirty, and only dirty ones are
recomputed before an attempt. A watch that falls behind (TooOld) relists its kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import NotFound, TooOld
from pymaster.api.kinds import NODES, PODS
from pymaster.api.nodes import ready_status
from pymaster.api.pods import POD_SCHEDULED, is_pending_schedule, is_terminal, pod_key
from pymaster.metrics import MasterMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference
from pymaster.registry.pods import UNSCHEDULABLE
from pymaster.scheduler.framework import Framework, NodeInfo, PodInfo
from pymaster.scheduler.plugin_registry import build_framework
from pymaster.scheduler.queue import SchedulingQueue
from pymaster.store.base import DELETED

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"

# A pod whose attempt failed unexpectedly (store error) is retried after this long.
ERROR_RETRY_SECONDS = 1.0


def node_change_may_help(old: objects_pb2.Node | None, new: objects_pb2.Node | None) -> bool:
    """True when a node event may let parked pods fit: a node added or removed, or a change of
    labels, schedulability, allocatable or readiness. Heartbeats and usage reports are not."""
    if old is None or new is None:
        return True
    return (
        old.metadata.labels != new.metadata.labels
        or old.spec.unschedulable != new.spec.unschedulable
        or old.status.allocatable != new.status.allocatable
        or old.status.capacity != new.status.capacity
        or ready_status(old) != ready_status(new)
    )


def pod_change_frees_room(old: objects_pb2.Pod | None, new: objects_pb2.Pod | None) -> bool:
    """True when a pod event releases node resources: a bound pod deleted, moved off its node or
    finished (Succeeded/Failed)."""
    if old is None or not old.spec.node_name or is_terminal(old):
        return False
    return new is None or new.spec.node_name != old.spec.node_name or is_terminal(new)


class Scheduler:
    """The scheduling task of the master."""

    def __init__(self, registry: Registry, metrics: MasterMetrics, framework: Framework | None = None):
        self._store = registry.store
        self._pods_registry = registry.pods
        self._events = EventRecorder(registry.events, SCHEDULER_NAME)
        self._metrics = metrics
        self._framework = framework or build_framework()
        self.queue = SchedulingQueue(on_change=metrics.set_pending)
        self._pods: dict[str, objects_pb2.Pod] = {}
        self._nodes: dict[str, objects_pb2.Node] = {}
        # node name -> key -> pod, for every pod bound to the node (including unknown nodes).
        self._pods_by_node: dict[str, dict[str, objects_pb2.Pod]] = {}
        self._node_infos: dict[str, NodeInfo] = {}
        self._dirty: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._in_flight: str | None = None

    async def start(self) -> None:
        """Loads the cluster from the store and starts the watch and scheduling tasks."""
        pods_rv = self._relist_pods()
        nodes_rv = self._relist_nodes()
        self._events.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                self._watch(PODS.resource, pods_rv, self._on_pod, self._relist_pods), name="sched-pods"
            ),
            loop.create_task(
                self._watch(NODES.resource, nodes_rv, self._on_node, self._relist_nodes), name="sched-nodes"
            ),
            loop.create_task(self._schedule_loop(), name="sched-loop"),
        ]
        log.info(
            "scheduler started pods=%d nodes=%d pending=%d",
            len(self._pods),
            len(self._nodes),
            self.queue.active_count,
        )

    async def stop(self) -> None:
        """Cancels the tasks and waits for them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._events.stop()

    # ---- cache maintenance ----

    def _relist_pods(self) -> int:
        pods, rv = self._store.list(PODS.resource)
        for key in list(self._pods):
            self.queue.remove(key)
        self._pods, self._pods_by_node = {}, {}
        self._dirty.update(self._node_infos)
        for pod in pods:
            self._put_pod(pod_key(pod), pod)
            if is_pending_schedule(pod):
                self.queue.add(pod_key(pod))
        self.queue.move_all_to_active()
        return rv

    def _relist_nodes(self) -> int:
        nodes, rv = self._store.list(NODES.resource)
        self._nodes = {node.metadata.name: node for node in nodes}
        self._node_infos = {}
        self._dirty = set(self._nodes)
        self.queue.move_all_to_active()
        return rv

    def _put_pod(self, key: str, pod: objects_pb2.Pod | None) -> objects_pb2.Pod | None:
        """Replaces a pod in the cache (None removes it); returns the old one."""
        old = self._pods.pop(key, None)
        if old is not None and old.spec.node_name:
            self._pods_by_node.get(old.spec.node_name, {}).pop(key, None)
            self._dirty.add(old.spec.node_name)
        if pod is not None:
            self._pods[key] = pod
            if pod.spec.node_name:
                self._pods_by_node.setdefault(pod.spec.node_name, {})[key] = pod
                self._dirty.add(pod.spec.node_name)
        return old

    def _on_pod(self, event_type: str, pod: objects_pb2.Pod, rv: int) -> None:
        key = pod_key(pod)
        cached = self._pods.get(key)
        if cached is not None and int(cached.metadata.resource_version or 0) > rv:
            return  # the cache already holds a newer version (our own bind, assumed)
        new = None if event_type == DELETED else pod
        old = self._put_pod(key, new)
        if new is not None and is_pending_schedule(new):
            # A parked pod, or the one being attempted, needs no new attempt unless its spec changed
            # (our own status write, whose event may arrive before the attempt ends, is not news).
            waiting = self.queue.is_unschedulable(key) or key == self._in_flight
            if not (waiting and old is not None and old.spec == new.spec):
                self.queue.add(key)
        else:
            self.queue.remove(key)
        if pod_change_frees_room(old, new):
            self.queue.move_all_to_active()

    def _assume(self, key: str, stored: objects_pb2.Pod) -> None:
        """Puts the result of our own write into the cache before its watch event arrives. The
        queue is left alone: the attempt in flight decides where the pod goes. A pod gone from the
        cache was deleted meanwhile (its events already applied) and must not come back."""
        cached = self._pods.get(key)
        if cached is not None and int(cached.metadata.resource_version or 0) < int(
            stored.metadata.resource_version
        ):
            self._put_pod(key, stored)

    def _on_node(self, event_type: str, node: objects_pb2.Node, rv: int) -> None:
        name = node.metadata.name
        old = self._nodes.pop(name, None)
        new = None if event_type == DELETED else node
        if new is not None:
            self._nodes[name] = new
        else:
            self._node_infos.pop(name, None)
        self._dirty.add(name)
        if node_change_may_help(old, new):
            self.queue.move_all_to_active()

    async def _watch(
        self,
        kind: str,
        rv: int,
        apply: Callable[[str, objects_pb2.Pod | objects_pb2.Node, int], None],
        relist: Callable[[], int],
    ) -> None:
        while True:
            try:
                watch = self._store.watch(kind, rv)
                try:
                    async for event in watch:
                        apply(event.type, event.object, event.resource_version)
                        rv = event.resource_version
                finally:
                    watch.close()
                return  # the store closed
            except TooOld as err:
                log.info("scheduler relisting kind=%s reason=%s", kind, err.message)
                rv = relist()

    def _snapshot(self) -> list[NodeInfo]:
        for name in self._dirty:
            node = self._nodes.get(name)
            if node is not None:
                self._node_infos[name] = NodeInfo.from_node(node, self._pods_by_node.get(name, {}).values())
        self._dirty.clear()
        return list(self._node_infos.values())

    # ---- scheduling ----

    async def _schedule_loop(self) -> None:
        while True:
            key = await self.queue.pop()
            pod = self._pods.get(key)
            if pod is None or not is_pending_schedule(pod):
                continue
            self._in_flight = key
            try:
                await self._schedule_one(key, pod)
            except asyncio.CancelledError:
                raise
            except NotFound:
                log.debug("pod vanished while scheduling pod=%s", key)
            except Exception:
                log.exception("scheduling attempt failed pod=%s", key)
                self._metrics.schedule_attempts.labels(result="error").inc()
                asyncio.get_running_loop().call_later(ERROR_RETRY_SECONDS, self._retry, key)
            finally:
                self._in_flight = None

    def _retry(self, key: str) -> None:
        pod = self._pods.get(key)
        if pod is not None and is_pending_schedule(pod):
            self.queue.add(key)

    async def _schedule_one(self, key: str, pod: objects_pb2.Pod) -> None:
        cycle = self.queue.move_cycle
        result = self._framework.schedule(PodInfo.from_pod(pod), self._snapshot())
        if result.node_name is not None:
            await self._bind(key, pod, result.node_name)
        else:
            await self._mark_unschedulable(key, pod, result.message, cycle)

    async def _bind(self, key: str, pod: objects_pb2.Pod, node_name: str) -> None:
        stored = await self._pods_registry.bind(pod, node_name)
        self._assume(key, stored)
        if stored.metadata.uid == pod.metadata.uid and stored.spec.node_name == node_name:
            self._metrics.schedule_attempts.labels(result="scheduled").inc()
            self._events.record(reference(stored), "Normal", "Scheduled",
                                f"Successfully assigned {key} to {node_name}")
            log.info("pod scheduled pod=%s node=%s", key, node_name)

    async def _mark_unschedulable(self, key: str, pod: objects_pb2.Pod, message: str, cycle: int) -> None:
        self._metrics.schedule_attempts.labels(result="unschedulable").inc()
        self._events.record(reference(pod), "Warning", "FailedScheduling", message)
        condition = find_condition(pod.status.conditions, POD_SCHEDULED)
        if condition is None or (condition.status, condition.reason, condition.message) != (
            "False",
            UNSCHEDULABLE,
            message,
        ):
            stored = await self._pods_registry.mark_unschedulable(pod, message)
            self._assume(key, stored)
            log.info("pod unschedulable pod=%s message=%r", key, message)
        current = self._pods.get(key)
        if current is not None and is_pending_schedule(current):
            self.queue.mark_unschedulable(key, cycle)
