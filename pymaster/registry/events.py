"""The event registry: what happened to pods and nodes, for people (``pyctl get events``, the Events
of ``pyctl describe``).

- ``record`` is how the scheduler and the agents report events: a repeat of an event already
  stored (same object, reason, message, type and source) is folded into it (``count`` + 1, a new
  ``lastTimestamp``) instead of stored again, as the kubelet's event correlator does; recent
  events are found through a bounded in-memory index, so a repeat after the index forgot it (or
  after a master restart) simply starts a new event.
- A node may record events only as itself (``source.host``) and only about itself or the pods
  bound to it, and at most ``RATE`` per second with bursts of ``BURST`` (a token bucket per node):
  a chatty or hostile agent cannot flood the store; what is over the limit is dropped and
  counted.
- Events expire ``--event-ttl`` after their last occurrence (the event TTL controller deletes
  them; default one hour, like kube-apiserver's). A reporter's timestamps in the future are
  brought back to the master's now, so a clock ahead (or a hostile node) cannot keep events
  forever.
- A batch is judged whole before anything is stored: an invalid or forbidden event refuses the
  batch and nothing of it is kept, so a retry never counts anything twice.
- Users may create and delete events; events are never updated by users.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.checks import check_metadata
from pymaster.api.conditions import timestamp
from pymaster.api.errors import Forbidden, MethodNotAllowed, NotFound
from pymaster.api.kinds import EVENTS, NODES, PODS, kind_of_message
from pymaster.api.limits import check_object_size, check_timestamps
from pymaster.api.validation import validate_event
from pymaster.registry.base import KindRegistry, namespace_or_default
from pymaster.store.base import Store

log = logging.getLogger(__name__)

RATE = 10.0  # events per second a node may record, on average
BURST = 50  # and at once
INDEX_SIZE = 4096  # recent events remembered for folding repeats
MAX_COUNT = 2**31 - 1  # count is an int32: a repeat at the top stays there
_NAME_PREFIX_MAX = 253 - 17  # room for "." and 16 hex digits


def default_event(event: objects_pb2.Event, now: float) -> None:
    """Fills what a reporter may leave out, in place: type meta, the namespace (the involved
    object's, else "default"), type Normal, count 1, first and last timestamps now; timestamps
    after ``now`` become ``now``.

    Raises:
        ValidationError: a timestamp RFC 3339 cannot express (naming it).
    """
    check_timestamps("", event)
    event.api_version = event.api_version or "v1"
    event.kind = event.kind or "Event"
    meta = event.metadata
    meta.namespace = meta.namespace or event.involved_object.namespace or "default"
    event.type = event.type or "Normal"
    event.count = event.count or 1
    if not event.HasField("first_timestamp"):
        event.first_timestamp.CopyFrom(timestamp(now))
    if not event.HasField("last_timestamp"):
        event.last_timestamp.CopyFrom(event.first_timestamp)
    for stamp in (event.first_timestamp, event.last_timestamp):
        if stamp.seconds > now:
            stamp.CopyFrom(timestamp(now))


def event_name(involved_name: str) -> str:
    """A new event's name: the involved object's name and a unique suffix (as Kubernetes does)."""
    return f"{involved_name[:_NAME_PREFIX_MAX].rstrip('.-')}.{uuid.uuid4().hex[:16]}"


def fold_key(event: objects_pb2.Event) -> tuple:
    """What makes two events the same happening (the kubelet's aggregation key)."""
    o = event.involved_object
    return (
        event.metadata.namespace, o.kind, o.namespace, o.name, o.uid, o.field_path,
        event.reason, event.message, event.type, event.source.component, event.source.host,
    )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class EventRegistry(KindRegistry):
    """Writes of events.

    Args:
        store: The store.
        clock: Epoch seconds (tests pass a fake).
        rate: Events per second a node may record.
        burst: Events a node may record at once.
    """

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        rate: float = RATE,
        burst: int = BURST,
    ):
        super().__init__(store, EVENTS)
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self._index: OrderedDict[tuple, str] = OrderedDict()
        self.dropped = 0

    # ---- users ----

    async def create(self, request: objects_pb2.Event) -> objects_pb2.Event:
        """Creates an event as given (defaulted and validated; a name is made when missing)."""
        event = objects_pb2.Event()
        event.CopyFrom(request)
        now = self._clock()
        default_event(event, now)
        named = bool(event.metadata.name)
        if not named:
            # Judged before a name is made from it: the error names involvedObject, not metadata.
            validate_event(event, named=False)
            event.metadata.name = event_name(event.involved_object.name)
            check_metadata(event.metadata, namespaced=True)
        else:
            validate_event(event)
        return await self._create(event, now)

    async def apply(
        self, request: objects_pb2.Event, *, record: bool = True
    ) -> tuple[objects_pb2.Event, str]:
        raise MethodNotAllowed("events cannot be applied: create them, or let the cluster record them")

    async def update(self, request: objects_pb2.Event) -> objects_pb2.Event:
        raise MethodNotAllowed("events cannot be updated: repeats are folded by the cluster")

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> objects_pb2.Event:
        """Deletes an event at once."""
        self.check_key(namespace, name)
        return await self._store.delete(EVENTS.resource, namespace_or_default(namespace), name)

    # ---- the scheduler and the agents ----

    async def record(self, events: Iterable[objects_pb2.Event], node: str | None = None) -> int:
        """Stores what happened, folding repeats into counts; returns how many were taken.

        Args:
            events: The events (name, timestamps and count may be left out).
            node: The reporting node (None: the master itself); its events must name it as
                ``source.host`` and be about it or a pod bound to it, and are rate-limited.

        Raises:
            ValidationError: an invalid event (nothing of the batch is recorded).
            Forbidden: a node reporting as another node or about what is not its own (nothing
                of the batch is recorded).
        """
        now = self._clock()
        batch = []
        for request in events:
            event = objects_pb2.Event()
            event.CopyFrom(request)
            default_event(event, now)
            validate_event(event, named=False)
            # A fresh name: a new event keeps it, a repeat is folded into the stored one instead.
            event.metadata.name = event_name(event.involved_object.name)
            check_metadata(event.metadata, namespaced=True)  # the rest is judged already
            if node is not None:
                self._check_reporter(event, node)
            batch.append(event)
        # Events of different objects and reasons are written together (one commit for the
        # batch); repeats of one are folded in order.
        repeats: dict[tuple, list[objects_pb2.Event]] = {}
        for event in batch:
            if node is not None and not self._take(node, now):
                self.dropped += 1
                continue
            repeats.setdefault(fold_key(event), []).append(event)

        async def write(key: tuple, events: list[objects_pb2.Event]) -> None:
            for event in events:
                await self._fold_or_create(key, event, now)

        results = await asyncio.gather(*(write(k, e) for k, e in repeats.items()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(len(events) for events in repeats.values())

    async def _fold_or_create(self, key: tuple, event: objects_pb2.Event, now: float) -> objects_pb2.Event:
        """Folds ``event`` into the stored one of its ``key`` (``fold_key``), or creates it."""
        name = self._index.get(key)
        if name is not None:
            self._index.move_to_end(key)

            def fold(current: objects_pb2.Event) -> objects_pb2.Event:
                current.count = min(current.count + 1, MAX_COUNT)
                current.last_timestamp.CopyFrom(timestamp(now))
                return current

            try:
                return await self._store.mutate(EVENTS.resource, event.metadata.namespace, name, fold)
            except NotFound:  # expired meanwhile: a new one
                del self._index[key]
        created = await self._create(event, now)
        self._index[key] = created.metadata.name
        while len(self._index) > INDEX_SIZE:
            self._index.popitem(last=False)
        return created

    async def _create(self, event: objects_pb2.Event, now: float) -> objects_pb2.Event:
        check_object_size("event", event)
        meta = event.metadata
        meta.uid = str(uuid.uuid4())
        meta.creation_timestamp.CopyFrom(timestamp(now))
        meta.resource_version = ""
        return await self._store.create(EVENTS.resource, event)

    def _check_reporter(self, event: objects_pb2.Event, node: str) -> None:
        """A node reports only as itself, about itself or the pods bound to it."""
        if event.source.host != node:
            raise Forbidden(f'node "{node}" may not record events as source.host "{event.source.host}"')
        involved = event.involved_object
        if involved.kind == NODES.kind and involved.name == node:
            return
        if involved.kind == PODS.kind:
            try:
                pod = self._store.get(PODS.resource, namespace_or_default(involved.namespace), involved.name)
            except NotFound:
                pod = None
            if pod is not None and pod.spec.node_name == node and involved.uid in ("", pod.metadata.uid):
                return
        what = f"{involved.namespace}/{involved.name}" if involved.namespace else involved.name
        raise Forbidden(
            f'node "{node}" may record events only about itself and the pods bound to it, '
            f"not {involved.kind} {what}"
        )

    def _take(self, node: str, now: float) -> bool:
        """Takes a token from the node's bucket; False when it is empty."""
        bucket = self._buckets.get(node)
        if bucket is None:
            bucket = self._buckets[node] = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


def reference(obj: Message, field_path: str = "") -> objects_pb2.ObjectReference:
    """The ObjectReference of an object of a served kind (an event's involvedObject)."""
    kind = kind_of_message(obj)
    meta = obj.metadata
    return objects_pb2.ObjectReference(
        kind=kind.kind, api_version=kind.api_version, namespace=meta.namespace, name=meta.name,
        uid=meta.uid, resource_version=meta.resource_version, field_path=field_path,
    )


class EventRecorder:
    """Events of one of the master's own components (the scheduler, the controllers), written
    from a task of their own so recording never slows the component (kube's event broadcaster).
    When ``QUEUE_SIZE`` events wait, more are dropped (and counted): events are for people.

    Args:
        events: The event registry.
        component: The ``source.component`` ("default-scheduler").
    """

    QUEUE_SIZE = 1000
    BATCH_SIZE = 256

    def __init__(self, events: EventRegistry, component: str):
        self._events = events
        self.component = component
        self._queue: asyncio.Queue[objects_pb2.Event] = asyncio.Queue(self.QUEUE_SIZE)
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def record(self, involved: objects_pb2.ObjectReference, type_: str, reason: str, message: str) -> None:
        """Queues an event about ``involved`` (never waits)."""
        event = objects_pb2.Event(
            involved_object=involved, type=type_, reason=reason, message=message,
            source=objects_pb2.EventSource(component=self.component), reporting_component=self.component,
        )
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"events-{self.component}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            # What queued meanwhile goes in one write: one event per commit could not keep up
            # with a scheduler binding hundreds of pods a second, and the queue overflowed.
            events = [await self._queue.get()]
            while not self._queue.empty() and len(events) < self.BATCH_SIZE:
                events.append(self._queue.get_nowait())
            try:
                await self._events.record(events)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # an event is not worth a crash: say it and go on
                log.warning("cannot record events component=%s count=%d reasons=%s error=%s", self.component,
                            len(events), ",".join(sorted({e.reason for e in events})), err)
