"""The desired pods of this node, from the master's ``WatchBoundPods`` stream (swarmkit's
dispatcher session): a SNAPSHOT with the complete set first, then UPSERT/REMOVED changes.

The set is replaced by every SNAPSHOT, so after a gap (reconnect, master restart) whatever the
agent missed is settled by the next snapshot: a pod absent from it is removed. Every change only
says "sync pod <uid>" to the pod workers, which read the set again (level-triggered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pykubelet.backoff import Backoff
from pymaster.api import errors, objects_pb2, services_pb2
from pymaster.client import Client

log = logging.getLogger(__name__)

_EventType = services_pb2.BoundPodsEvent.Type


def apply_event(pods: dict[str, objects_pb2.Pod], event: services_pb2.BoundPodsEvent) -> set[str]:
    """Applies one stream event to the desired set (uid -> Pod) in place.

    Returns:
        The uids whose desired state changed: added, modified (resourceVersion differs) or
        removed (absent from a SNAPSHOT, or REMOVED).
    """
    changed: set[str] = set()
    if event.type == _EventType.SNAPSHOT:
        fresh = {pod.metadata.uid: pod for pod in event.pods}
        changed.update(uid for uid in pods if uid not in fresh)
        changed.update(
            uid
            for uid, pod in fresh.items()
            if uid not in pods or pods[uid].metadata.resource_version != pod.metadata.resource_version
        )
        pods.clear()
        pods.update(fresh)
    elif event.type == _EventType.UPSERT:
        for pod in event.pods:
            pods[pod.metadata.uid] = pod
            changed.add(pod.metadata.uid)
    elif event.type == _EventType.REMOVED:
        for pod in event.pods:
            pods.pop(pod.metadata.uid, None)
            changed.add(pod.metadata.uid)
    return changed


class ConfigSource:
    """Keeps the desired pod set of a node in step with the master.

    Args:
        client: the master's client.
        node_name: this node.
        on_change: called with a pod uid whenever that pod's desired state changed.

    Attributes:
        pods: the desired set, uid -> Pod. Read it, never write it.
        synced: set once the first SNAPSHOT arrived; before that nothing may be removed.
    """

    def __init__(self, client: Client, node_name: str, on_change: Callable[[str], None]):
        self._client = client
        self._node_name = node_name
        self._on_change = on_change
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        """Follows the stream until cancelled, reconnecting with capped, jittered back-off."""
        backoff = Backoff()
        while True:
            try:
                async for event in self._client.watch_bound_pods(self._node_name):
                    self._handle(event)
                    if event.type == _EventType.SNAPSHOT:
                        backoff.reset()
                reason = "stream ended"
            except errors.ApiError as err:
                reason = f"{err.code.name}: {err.message}"
            delay = backoff.next_delay()
            log.warning("pod stream lost node=%s error=%s retry_in=%.2fs", self._node_name, reason, delay)
            await asyncio.sleep(delay)

    def _handle(self, event: services_pb2.BoundPodsEvent) -> None:
        changed = apply_event(self.pods, event)
        if event.type == _EventType.SNAPSHOT:
            log.info("pod snapshot node=%s pods=%d changed=%d", self._node_name, len(self.pods), len(changed))
            self.synced.set()
        for uid in changed:
            log.debug("pod changed uid=%s event=%s", uid, _EventType.Name(event.type))
            self._on_change(uid)
