"""The fan-out behind NodeAgent.WatchBoundPods: one store watch of pods for the whole master,
indexed by spec.nodeName, dispatched to each agent's stream (swarmkit's dispatcher).

An agent stream subscribes for its node and first gets a SNAPSHOT (every pod bound to the node,
including ones marked for deletion) at the hub's resourceVersion, then UPSERT for each change of
such a pod and REMOVED when one is deleted or leaves the node. Because the snapshot comes from the
hub's own index, at the position of the last event the hub applied, nothing falls between the
snapshot and the changes.

Cost per pod event is a dict lookup or two, however many agents are connected, which is what
thousands of agent streams need (a store watcher per stream would filter every event N times).
A subscriber that lets its queue fill up is not allowed to hold memory: its queue is replaced by
a fresh SNAPSHOT (the agent reconciles to the full set, as after any gap). When the hub's own
watch falls behind (TooOld), it relists and every subscriber gets a fresh SNAPSHOT too. A stream
takes the next event only when gRPC has sent the previous one (HTTP/2 flow control), so a slow
agent costs at most its queue, never unbounded memory.

Must be used from one asyncio event loop.
"""

from __future__ import annotations

import asyncio
import logging

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.pods import pod_key
from pymaster.store.base import DELETED, Store
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

SNAPSHOT = services_pb2.BoundPodsEvent.SNAPSHOT
UPSERT = services_pb2.BoundPodsEvent.UPSERT
REMOVED = services_pb2.BoundPodsEvent.REMOVED
DEFAULT_QUEUE_SIZE = 1000


class Subscription:
    """One agent stream's view: an async iterator of BoundPodsEvents; ends when the hub stops."""

    def __init__(self, hub: BoundPodsHub, node_name: str, queue_size: int):
        self.node_name = node_name
        self._hub = hub
        self._queue: asyncio.Queue[services_pb2.BoundPodsEvent | None] = asyncio.Queue(queue_size)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> services_pb2.BoundPodsEvent:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Unsubscribes."""
        self._hub.unsubscribe(self)

    def offer(self, event: services_pb2.BoundPodsEvent) -> None:
        """Queues an event without waiting; a full queue is replaced by a fresh snapshot."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning(
                "bound pods subscriber overflow node=%s queue_size=%d; sending a snapshot",
                self.node_name,
                self._queue.maxsize,
            )
            self.reset(self._hub.snapshot(self.node_name))

    def reset(self, snapshot: services_pb2.BoundPodsEvent) -> None:
        """Drops what is queued and queues ``snapshot``."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(snapshot)

    def end(self) -> None:
        """Ends the iteration after what is queued (the hub stopped). A full queue loses one
        event: harmless, the agent gets a full snapshot when it reconnects."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class BoundPodsHub:
    """Indexes pods by node from one store watch and feeds the subscriptions."""

    def __init__(self, store: Store, queue_size: int = DEFAULT_QUEUE_SIZE):
        self._store = store
        self._queue_size = queue_size
        self._by_node: dict[str, dict[str, objects_pb2.Pod]] = {}
        self._node_of: dict[str, str] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._rv = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Lists the pods and starts following the store."""
        self._relist()
        self._ready.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bound-pods-hub")

    async def stop(self) -> None:
        """Stops following the store and ends every subscription."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for subscribers in list(self._subscribers.values()):
            for subscription in subscribers:
                subscription.end()
        self._subscribers.clear()

    async def subscribe(self, node_name: str) -> Subscription:
        """A new subscription for ``node_name``, its SNAPSHOT already queued. A node needs one:
        an earlier subscription of the same node ends (the agent reconnected, or a second client
        holds the node's credentials), so no node can pile up streams."""
        await self._ready.wait()
        for old in self._subscribers.pop(node_name, set()):
            log.info("bound pods stream replaced node=%s", node_name)
            old.end()
        subscription = Subscription(self, node_name, self._queue_size)
        subscription.offer(self.snapshot(node_name))
        self._subscribers[node_name] = {subscription}
        return subscription

    def disconnect(self, node_name: str) -> None:
        """Ends every subscription of ``node_name`` (the node was deleted: its agent must
        authenticate again, which its revoked certificate cannot)."""
        for subscription in self._subscribers.pop(node_name, set()):
            subscription.end()

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.node_name)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.node_name]

    def snapshot(self, node_name: str) -> services_pb2.BoundPodsEvent:
        """The SNAPSHOT event of ``node_name`` at the hub's current resourceVersion."""
        pods = self._by_node.get(node_name, {})
        return services_pb2.BoundPodsEvent(
            type=SNAPSHOT, pods=[pods[key] for key in sorted(pods)], resource_version=str(self._rv)
        )

    def _relist(self) -> None:
        pods, self._rv = self._store.list("pods")
        self._by_node, self._node_of = {}, {}
        for pod in pods:
            if pod.spec.node_name:
                self._index(pod_key(pod), pod)

    def _index(self, key: str, pod: objects_pb2.Pod) -> None:
        self._by_node.setdefault(pod.spec.node_name, {})[key] = pod
        self._node_of[key] = pod.spec.node_name

    def _unindex(self, key: str) -> str | None:
        node = self._node_of.pop(key, None)
        if node is not None:
            pods = self._by_node[node]
            del pods[key]
            if not pods:
                del self._by_node[node]
        return node

    async def _run(self) -> None:
        def relist() -> int:
            self._relist()
            for node, subscribers in self._subscribers.items():
                snapshot = self.snapshot(node)
                for subscription in subscribers:
                    subscription.reset(snapshot)
            return self._rv

        await follow(self._store, "pods", self._rv,
                     lambda event: self._apply(event.type, event.object, event.resource_version), relist)

    def _apply(self, event_type: str, pod: objects_pb2.Pod, rv: int) -> None:
        key = pod_key(pod)
        old_node = self._unindex(key)
        new_node = "" if event_type == DELETED else pod.spec.node_name
        if new_node:
            self._index(key, pod)
        self._rv = rv
        if old_node and old_node != new_node:
            self._send(
                old_node, services_pb2.BoundPodsEvent(type=REMOVED, pods=[pod], resource_version=str(rv))
            )
        if new_node:
            self._send(
                new_node, services_pb2.BoundPodsEvent(type=UPSERT, pods=[pod], resource_version=str(rv))
            )

    def _send(self, node_name: str, event: services_pb2.BoundPodsEvent) -> None:
        for subscription in tuple(self._subscribers.get(node_name, ())):
            subscription.offer(event)
