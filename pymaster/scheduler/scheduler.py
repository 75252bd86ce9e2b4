"""The scheduler: binds pending pods to nodes, driven by store watches (no polling).

Two watch tasks (pods, nodes) keep the cache (``pymaster.scheduler.cache``) and feed the
scheduling queue (``pymaster.scheduler.queue``); one loop pops the highest-priority pod, runs the
framework over the cache's snapshot and acts on the result:

- fits: the pod is assumed on the node at once (the next pod sees the node's new load) and its
  bind (spec.nodeName + PodScheduled=True, only if the pod is still the same unbound pod) joins
  the next batch; a binder task writes each batch in one store transaction (one fsync) while the
  loop goes on scheduling. A bind that does not happen (the pod was deleted or changed) drops the
  assumption;
- fits nowhere: PodScheduled=False, reason Unschedulable, with the "0/N nodes are available: ..."
  message (written only when it changes), and the pod waits in the unschedulable queue until a
  cluster event that may help it (or its back-off, when the event came during the attempt);
- gated (spec.schedulingGates): never attempted; PodScheduled=False, reason SchedulingGated,
  until an update removes the last gate.

Each outcome is an event about the pod (source ``default-scheduler``): ``Scheduled`` ("Successfully
assigned default/web to n1") or, on every failed attempt, ``FailedScheduling`` with the reasons
(repeats fold into one event with a count). A watch that falls behind (TooOld) relists its kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import NotFound
from pymaster.api.kinds import NODES, PODS
from pymaster.api.nodes import ready_status
from pymaster.api.pods import POD_SCHEDULED, is_pending_schedule, is_terminal, pod_key
from pymaster.metrics import MasterMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference
from pymaster.registry.pods import SCHEDULING_GATED, UNSCHEDULABLE
from pymaster.scheduler.cache import SchedulerCache
from pymaster.scheduler.config import load_config
from pymaster.scheduler.framework import Framework, PodInfo, pod_priority
from pymaster.scheduler.plugin_registry import Profile, framework_for
from pymaster.scheduler.queue import SchedulingQueue
from pymaster.store.base import DELETED
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
# Binds written per store transaction at most; more wait for the next one.
MAX_BIND_BATCH = 256


def node_change_may_help(old: objects_pb2.Node | None, new: objects_pb2.Node | None) -> bool:
    """True when a node event may let parked pods fit: a node added or removed, or a change of
    labels, taints, schedulability, allocatable or readiness. Heartbeats and usage reports are not."""
    if old is None or new is None:
        return True
    return (
        old.metadata.labels != new.metadata.labels
        or old.spec.unschedulable != new.spec.unschedulable
        or list(old.spec.taints) != list(new.spec.taints)
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


def is_gated(pod: objects_pb2.Pod) -> bool:
    return len(pod.spec.scheduling_gates) > 0


def scheduler_framework(config_path: str | None) -> Framework:
    """The profile a KubeSchedulerConfiguration file (``--config``) asks for; None: the defaults.

    Raises:
        ConfigError (a ValueError): the file is refused; the message names the field.
    """
    return framework_for(load_config(config_path) if config_path is not None else Profile())


class Scheduler:
    """The scheduling task of the master."""

    def __init__(
        self,
        registry: Registry,
        metrics: MasterMetrics,
        framework: Framework | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """
        Args:
            framework: The profile to run (``scheduler_framework`` of the ``--config`` file);
                None: the default profile.
        """
        self._store = registry.store
        self._pods_registry = registry.pods
        self._events = EventRecorder(registry.events, SCHEDULER_NAME)
        self._metrics = metrics
        self._framework = framework or scheduler_framework(None)
        self.queue = SchedulingQueue(clock=clock)
        self.cache = SchedulerCache()
        self._tasks: list[asyncio.Task] = []
        self._side_tasks: set[asyncio.Task] = set()
        self._in_flight: str | None = None
        self._binds: list[tuple[str, objects_pb2.Pod, str, float]] = []
        self._bind_ready = asyncio.Event()

    async def start(self) -> None:
        """Loads the cluster from the store and starts the watch, scheduling and binder tasks."""
        pods_rv = self._relist_pods()
        nodes_rv = self._relist_nodes()
        self._events.start()
        self._metrics.report_pending(self.queue.count)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                self._watch(PODS.resource, pods_rv, self._on_pod, self._relist_pods), name="sched-pods"
            ),
            loop.create_task(
                self._watch(NODES.resource, nodes_rv, self._on_node, self._relist_nodes), name="sched-nodes"
            ),
            loop.create_task(self._schedule_loop(), name="sched-loop"),
            loop.create_task(self._bind_loop(), name="sched-binder"),
        ]
        log.info("scheduler started pods=%d nodes=%d pending=%d", len(self.cache.pods),
                 len(self.cache.nodes), self.queue.active_count)

    async def stop(self) -> None:
        """Cancels the tasks and waits for them."""
        tasks = [*self._tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self._metrics.report_pending(None)
        await self._events.stop()

    # ---- cache maintenance ----

    def _relist_pods(self) -> int:
        pods, rv = self._store.list(PODS.resource)
        for key in list(self.cache.pods):
            self.queue.remove(key)
        self.cache.reset_pods(pods)
        for pod in pods:
            self._queue_if_pending(pod_key(pod), pod, None)
        self.queue.move_all()
        return rv

    def _relist_nodes(self) -> int:
        nodes, rv = self._store.list(NODES.resource)
        self.cache.reset_nodes(nodes)
        self.queue.move_all()
        return rv

    def _queue_if_pending(self, key: str, pod: objects_pb2.Pod, old: objects_pb2.Pod | None) -> None:
        if not is_pending_schedule(pod) or key in self.cache.assumed:
            self.queue.remove(key)
            return
        if is_gated(pod):
            self.queue.add(key, pod_priority(pod), gated=True)
            self._mark_gated(key, pod)
            return
        # A parked pod, or the one being attempted, needs no new attempt unless its spec changed
        # (our own status write, whose event may arrive before the attempt ends, is not news).
        waiting = self.queue.is_unschedulable(key) or key == self._in_flight
        if not (waiting and old is not None and old.spec == pod.spec):
            self.queue.add(key, pod_priority(pod))

    def _on_pod(self, event_type: str, pod: objects_pb2.Pod, rv: int) -> None:
        key = pod_key(pod)
        cached = self.cache.pods.get(key)
        if cached is not None and int(cached.metadata.resource_version or 0) > rv:
            return  # the cache already holds a newer version (our own write, assumed)
        new = None if event_type == DELETED else pod
        old = self.cache.set_pod(key, new)
        if new is None:
            self.queue.remove(key)
        else:
            self._queue_if_pending(key, new, old)
        if pod_change_frees_room(old, new):
            self.queue.move_all()

    def _put_written(self, key: str, stored: objects_pb2.Pod) -> None:
        """Puts the result of our own write into the cache before its watch event arrives. A pod
        gone from the cache was deleted meanwhile (its events already applied) and must not come
        back."""
        cached = self.cache.pods.get(key)
        if cached is not None and int(cached.metadata.resource_version or 0) < int(
            stored.metadata.resource_version
        ):
            self.cache.set_pod(key, stored)

    def _on_node(self, event_type: str, node: objects_pb2.Node, rv: int) -> None:
        name = node.metadata.name
        new = None if event_type == DELETED else node
        old = self.cache.set_node(name, new)
        if node_change_may_help(old, new):
            self.queue.move_all()

    async def _watch(
        self,
        kind: str,
        rv: int,
        apply: Callable[[str, objects_pb2.Pod | objects_pb2.Node, int], None],
        relist: Callable[[], int],
    ) -> None:
        await follow(self._store, kind, rv,
                     lambda event: apply(event.type, event.object, event.resource_version), relist)

    # ---- scheduling ----

    async def _schedule_loop(self) -> None:
        while True:
            key = await self.queue.pop()
            pod = self.cache.pods.get(key)
            if pod is None or not is_pending_schedule(pod) or key in self.cache.assumed:
                continue
            if is_gated(pod):
                self.queue.add(key, pod_priority(pod), gated=True)
                continue
            self._in_flight = key
            start = time.perf_counter()
            try:
                await self._schedule_one(key, pod, start)
            except asyncio.CancelledError:
                raise
            except NotFound:
                log.debug("pod vanished while scheduling pod=%s", key)
            except Exception:
                log.exception("scheduling attempt failed pod=%s", key)
                self._metrics.schedule_attempts.labels(result="error").inc()
                self.queue.requeue_with_backoff(key)
            finally:
                self._in_flight = None
            # pop() does not yield when pods are waiting: let the watches and the binder run.
            await asyncio.sleep(0)

    async def _schedule_one(self, key: str, pod: objects_pb2.Pod, start: float) -> None:
        cycle = self.queue.move_cycle
        info = PodInfo.from_pod(pod)
        result = self._framework.schedule(info, self.cache.snapshot())
        if result.node_name is not None:
            self.cache.assume(key, info, result.node_name)
            self._binds.append((key, pod, result.node_name, start))
            self._bind_ready.set()
        else:
            self._metrics.scheduling_attempt_duration.labels(result="unschedulable").observe(
                time.perf_counter() - start)
            await self._mark_unschedulable(key, pod, result.message, cycle)

    async def _bind_loop(self) -> None:
        while True:
            await self._bind_ready.wait()
            self._bind_ready.clear()
            while self._binds:
                batch, self._binds = self._binds[:MAX_BIND_BATCH], self._binds[MAX_BIND_BATCH:]
                try:
                    await self._bind_batch(batch)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("binding failed pods=%d", len(batch))
                    for key, *_ in batch:
                        self._unassume(key)

    async def _bind_batch(self, batch: list[tuple[str, objects_pb2.Pod, str, float]]) -> None:
        self._metrics.binding_batch_size.observe(len(batch))
        results = await self._pods_registry.bind_many([(pod, node) for _, pod, node, _ in batch])
        for (key, pod, node_name, start), stored in zip(batch, results, strict=True):
            if isinstance(stored, Exception):
                self._unassume(key)
                continue
            self._put_written(key, stored)
            if stored.metadata.uid != pod.metadata.uid or stored.spec.node_name != node_name:
                self._unassume(key)  # changed meanwhile (deleted and re-created, bound elsewhere)
                continue
            self._metrics.schedule_attempts.labels(result="scheduled").inc()
            self._metrics.pod_scheduling_attempts.observe(max(self.queue.attempts(key), 1))
            self._metrics.scheduling_attempt_duration.labels(result="scheduled").observe(
                time.perf_counter() - start)
            self._events.record(reference(stored), "Normal", "Scheduled",
                                f"Successfully assigned {key} to {node_name}")
            log.debug("pod scheduled pod=%s node=%s", key, node_name)
            self.queue.remove(key)

    def _unassume(self, key: str) -> None:
        """A bind that was not written: the pod no longer counts on the node; still pending, it
        is tried again after its back-off."""
        self.cache.forget(key)
        pod = self.cache.pods.get(key)
        if pod is not None and is_pending_schedule(pod):
            self.queue.requeue_with_backoff(key)
        else:
            self.queue.remove(key)

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
            self._put_written(key, stored)
            log.info("pod unschedulable pod=%s message=%r", key, message)
        current = self.cache.pods.get(key)
        if current is not None and is_pending_schedule(current) and not is_gated(current):
            self.queue.mark_unschedulable(key, cycle)

    def _mark_gated(self, key: str, pod: objects_pb2.Pod) -> None:
        """Writes PodScheduled=False/SchedulingGated (from a task of its own) unless it is there."""
        condition = find_condition(pod.status.conditions, POD_SCHEDULED)
        if condition is not None and (condition.status, condition.reason) == ("False", SCHEDULING_GATED):
            return

        async def write() -> None:
            try:
                self._put_written(key, await self._pods_registry.mark_gated(pod))
            except NotFound:
                pass
            except Exception as err:  # the next update of the pod tries again
                log.warning("cannot mark pod gated pod=%s error=%s", key, err)

        task = asyncio.get_running_loop().create_task(write())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
