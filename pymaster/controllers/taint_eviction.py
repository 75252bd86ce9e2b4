"""NoExecute taint eviction (Kubernetes' taint manager, ``pkg/controller/tainteviction``): deletes
the pods of a node with a NoExecute taint they do not tolerate.

For every pod bound to a node with NoExecute taints (the node lifecycle controller's
``unreachable``/``not-ready`` or an admin's ``pyctl taint``), ``eviction_time`` decides:

- a taint no toleration of the pod matches: the pod is deleted at once;
- every taint tolerated, some tolerations with ``tolerationSeconds``: deleted when the smallest of
  those seconds (of the first toleration matching each taint, as Kubernetes) has passed;
- every taint tolerated for ever (no ``tolerationSeconds``): never.

The clock starts at the earliest ``timeAdded`` of the node's NoExecute taints, or when the pod was
bound if that is later (a pod placed on an already tainted node gets its full toleration).
Kubernetes counts from when its controller first noticed; counting from the stored times gives the
same answer and survives a master restart (a restarted master neither forgets nor restarts the
clock). A deletion is graceful (``PodRegistry.delete``: marked, the node's agent stops the pod
when it reaches the master) with a Normal ``TaintManagerEviction`` event "Marking for deletion Pod
ns/name"; a pending eviction whose taint goes away (or is tolerated for ever) is cancelled with
"Cancelling deletion of Pod ns/name".

The controller follows pods and nodes by store watches (a watch that falls behind relists) and
sleeps until the earliest pending deadline. Each deadline is checked against the current state
when it comes (level-triggered: a stale heap entry is skipped).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.api.kinds import NODES, PODS
from pymaster.api.pods import POD_SCHEDULED, is_terminal
from pymaster.api.taints import NO_EXECUTE, tolerates
from pymaster.controllers.waiting import wait_event
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference
from pymaster.store.base import DELETED, WatchEvent
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

COMPONENT = "taint-eviction-controller"
EVICTION_REASON = "TaintManagerEviction"
AT_ONCE = 0.0  # an eviction time: as soon as possible
RETRY_SECONDS = 1.0  # after a failed deletion


# ---- the decision (pure) ----


def no_execute_taints(taints: Iterable[objects_pb2.Taint]) -> tuple[objects_pb2.Taint, ...]:
    return tuple(t for t in taints if t.effect == NO_EXECUTE)


def bound_time(pod: objects_pb2.Pod) -> float:
    """When the pod was bound: its PodScheduled condition's transition, else its creation."""
    for condition in pod.status.conditions:
        bound = condition.last_transition_time.seconds
        if condition.type == POD_SCHEDULED and condition.status == "True" and bound:
            return float(bound)
    return float(pod.metadata.creation_timestamp.seconds)


def eviction_time(pod: objects_pb2.Pod, taints: Sequence[objects_pb2.Taint]) -> float | None:
    """When the taint manager deletes ``pod`` on a node with ``taints`` (epoch seconds).

    Returns:
        None: never (no NoExecute taint, or all tolerated for ever); ``AT_ONCE``: a NoExecute taint
        is not tolerated; else the start (see the module's docstring) plus the smallest
        tolerationSeconds of the tolerations used (negative ones count as 0).
    """
    no_execute = no_execute_taints(taints)
    if not no_execute:
        return None
    seconds: list[int] = []
    for taint in no_execute:
        used = next((t for t in pod.spec.tolerations if tolerates(t, taint)), None)
        if used is None:
            return AT_ONCE
        if used.HasField("toleration_seconds"):
            seconds.append(max(used.toleration_seconds, 0))
    if not seconds:
        return None
    added = [t.time_added.seconds for t in no_execute if t.HasField("time_added")]
    start = max(min(added, default=0), bound_time(pod))
    return start + min(seconds)


def evictable(pod: objects_pb2.Pod) -> bool:
    """Pods the taint manager looks at: bound, not terminal, not being deleted already."""
    return (
        bool(pod.spec.node_name)
        and not is_terminal(pod)
        and not pod.metadata.HasField("deletion_timestamp")
    )


def pod_key(pod: objects_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


# ---- the controller ----


class TaintEvictionController:
    """Deletes pods from nodes with NoExecute taints they do not tolerate (long enough).

    Args:
        registry: The registry (pods deleted through it, events recorded through it).
        metrics_registry: Where ``taint_eviction_controller_pod_deletions_total`` goes.
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(
        self,
        registry: Registry,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._store = registry.store
        self._pods_registry = registry.pods
        self._events = EventRecorder(registry.events, COMPONENT)
        self._clock = clock
        self.deletions = Counter(
            "taint_eviction_controller_pod_deletions_total",
            "Pods deleted by the taint eviction controller since it started.",
            registry=metrics_registry or CollectorRegistry(),
        )
        self._taints: dict[str, tuple[objects_pb2.Taint, ...]] = {}  # node -> its NoExecute taints
        self._pods: dict[str, objects_pb2.Pod] = {}  # evictable bound pods by key
        self._by_node: dict[str, set[str]] = {}
        self._due: dict[str, float] = {}  # key -> pending eviction time
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Loads nodes and pods from the store and starts following them."""
        nodes_rv = self._relist_nodes()
        pods_rv = self._relist_pods()
        loop = asyncio.get_running_loop()
        self._events.start()
        self._tasks = [
            loop.create_task(self._watch(NODES.resource, nodes_rv, self._on_node, self._relist_nodes),
                             name="taint-eviction-nodes"),
            loop.create_task(self._watch(PODS.resource, pods_rv, self._on_pod, self._relist_pods),
                             name="taint-eviction-pods"),
            loop.create_task(self._run(), name="taint-eviction"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._events.stop()

    def pending(self) -> dict[str, float]:
        """The pending evictions: pod key -> eviction time."""
        return dict(self._due)

    # ---- following the store ----

    def _relist_nodes(self) -> int:
        nodes, rv = self._store.list(NODES.resource)
        names = {node.metadata.name for node in nodes}
        for name in [n for n in self._taints if n not in names]:
            self._on_node(name, None)
        for node in nodes:
            self._on_node(node.metadata.name, node)
        return rv

    def _relist_pods(self) -> int:
        pods, rv = self._store.list(PODS.resource)
        keys = {pod_key(pod) for pod in pods}
        for key in [k for k in self._pods if k not in keys]:
            self._forget_pod(key)
        for pod in pods:
            self._on_pod(pod_key(pod), pod)
        return rv

    async def _watch(
        self, kind: str, rv: int, on_change: Callable, relist: Callable[[], int]
    ) -> None:
        def apply(change: WatchEvent) -> None:
            obj = change.object
            name = obj.metadata.name if kind == NODES.resource else pod_key(obj)
            on_change(name, None if change.type == DELETED else obj)

        await follow(self._store, kind, rv, apply, relist)

    def _on_node(self, name: str, node: objects_pb2.Node | None) -> None:
        taints = no_execute_taints(node.spec.taints) if node is not None else ()
        if taints == self._taints.get(name, ()):
            return
        if taints:
            self._taints[name] = taints
        else:
            self._taints.pop(name, None)
        for key in list(self._by_node.get(name, ())):
            self._decide(key)

    def _on_pod(self, key: str, pod: objects_pb2.Pod | None) -> None:
        if pod is None or not evictable(pod):
            # Gone or already being deleted: nothing to cancel in words.
            self._forget_pod(key)
            return
        old = self._pods.get(key)
        if old is not None and old.spec.node_name != pod.spec.node_name:
            self._by_node.get(old.spec.node_name, set()).discard(key)
        self._pods[key] = pod
        self._by_node.setdefault(pod.spec.node_name, set()).add(key)
        self._decide(key)

    def _forget_pod(self, key: str) -> None:
        pod = self._pods.pop(key, None)
        if pod is not None:
            keys = self._by_node.get(pod.spec.node_name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_node[pod.spec.node_name]
        self._due.pop(key, None)

    # ---- deciding and evicting ----

    def _decide(self, key: str) -> None:
        pod = self._pods[key]
        when = eviction_time(pod, self._taints.get(pod.spec.node_name, ()))
        before = self._due.get(key)
        if when == before:
            return
        if when is None:
            del self._due[key]
            log.info("taint eviction cancelled pod=%s node=%s", key, pod.spec.node_name)
            message = f"Cancelling deletion of Pod {key}"
            self._events.record(reference(pod), "Normal", EVICTION_REASON, message)
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        self._changed.set()
        log.info("taint eviction scheduled pod=%s node=%s in_seconds=%.1f", key, pod.spec.node_name,
                 max(when - self._clock(), 0.0))

    async def _run(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                when, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # cancelled or rescheduled since
                try:
                    await self._evict(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cannot evict pod=%s; retrying", key)
                    if self._due.get(key) == when:
                        self._due[key] = retry = self._clock() + RETRY_SECONDS
                        heapq.heappush(self._heap, (retry, key))
            self._changed.clear()
            delay = max(self._heap[0][0] - self._clock(), 0.0) if self._heap else None
            await wait_event(self._changed, delay)

    async def _evict(self, key: str) -> None:
        pod = self._pods[key]
        namespace, name = pod.metadata.namespace, pod.metadata.name
        try:
            stored = self._store.get(PODS.resource, namespace, name)
        except NotFound:
            self._forget_pod(key)
            return
        if stored.metadata.uid != pod.metadata.uid:
            return  # another pod of that name: its own watch event decides
        await self._pods_registry.delete(namespace, name)
        self._due.pop(key, None)
        self.deletions.inc()
        log.warning("taint eviction pod=%s node=%s", key, pod.spec.node_name)
        self._events.record(reference(pod), "Normal", EVICTION_REASON, f"Marking for deletion Pod {key}")
