"""The agent's event recorder: what happened to its pods and its node (Pulling, Pulled, Created,
Started, Killing, Unhealthy, BackOff, FailedPostStartHook, Failed ...), for people (``pyctl get
events``, the Events of ``pyctl describe``).

Recording never waits: events go to a bounded queue and a task of their own sends them to the
master in batches (``NodeAgent.RecordEvents``), like the kubelet's event broadcaster, so a slow
or unreachable master never slows a pod sync. The master folds repeats into counts and
rate-limits each node; when the queue is full (the master is away for long), new events are
dropped and counted: events are for people, the pod status is the truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from pykubelet.backoff import Backoff
from pymaster.api import errors, objects_pb2
from pymaster.client import Client

log = logging.getLogger(__name__)

COMPONENT = "kubelet"  # what users look for in the From column, as with the kubelet
QUEUE_SIZE = 1000
BATCH_SIZE = 50


def field_path(pod: objects_pb2.Pod, container: str) -> str:
    """The involvedObject.fieldPath of one of the pod's containers (``spec.containers{web}``,
    ``spec.initContainers{setup}``); "" for the pod itself."""
    if not container:
        return ""
    if any(c.name == container for c in pod.spec.init_containers):
        return f"spec.initContainers{{{container}}}"
    return f"spec.containers{{{container}}}"


class EventRecorder:
    """Queues events and sends them from its own task (``run``).

    Args:
        client: the master's client (``record_events`` only).
        node_name: this node (``source.host``).
        on_dropped: called with the number of events dropped (queue full, refused by the
            master), e.g. a Prometheus counter's ``inc``.
    """

    def __init__(self, client: Client, node_name: str, on_dropped: Callable[[int], None] | None = None):
        self._client = client
        self._node_name = node_name
        self._queue: asyncio.Queue[objects_pb2.Event] = asyncio.Queue(QUEUE_SIZE)
        self._on_dropped = on_dropped
        self.dropped = 0

    def pod_event(
        self, pod: objects_pb2.Pod, type_: str, reason: str, message: str, container: str = ""
    ) -> None:
        """Records an event about ``pod`` (or one of its containers); never waits."""
        meta = pod.metadata
        involved = objects_pb2.ObjectReference(
            kind="Pod", api_version="v1", namespace=meta.namespace, name=meta.name, uid=meta.uid,
            field_path=field_path(pod, container),
        )
        self._put(involved, type_, reason, message)

    def node_event(self, type_: str, reason: str, message: str) -> None:
        """Records an event about this node; never waits."""
        involved = objects_pb2.ObjectReference(kind="Node", api_version="v1", name=self._node_name)
        self._put(involved, type_, reason, message)

    def _put(self, involved: objects_pb2.ObjectReference, type_: str, reason: str, message: str) -> None:
        event = objects_pb2.Event(
            involved_object=involved, type=type_, reason=reason, message=message[:1024],
            source=objects_pb2.EventSource(component=COMPONENT, host=self._node_name),
            reporting_component=COMPONENT, reporting_instance=self._node_name,
        )
        event.first_timestamp.GetCurrentTime()
        event.first_timestamp.nanos = 0
        event.last_timestamp.CopyFrom(event.first_timestamp)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop(1)

    def pending(self) -> int:
        """How many events wait to be sent."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Sends queued events in batches until cancelled, retrying with back-off while the
        master is unreachable."""
        backoff = Backoff()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_SIZE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while not await self._send(batch):
                await backoff.sleep()
            backoff.reset()

    async def _send(self, batch: Sequence[objects_pb2.Event]) -> bool:
        """Sends one batch; False when it should be retried."""
        try:
            accepted = await self._client.record_events(list(batch))
        except (errors.ValidationError, errors.Forbidden, errors.NotFound) as err:
            # Retrying cannot help (a pod gone meanwhile, a bug): the batch is dropped.
            log.warning("events refused node=%s count=%d error=%s", self._node_name, len(batch), err)
            self._drop(len(batch))
            return True
        except errors.ApiError as err:
            log.debug("events not sent node=%s count=%d error=%s", self._node_name, len(batch), err)
            return False
        if accepted < len(batch):
            self._drop(len(batch) - accepted)
        return True

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self._on_dropped is not None:
            self._on_dropped(count)
