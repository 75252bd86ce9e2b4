"""Event expiry: deletes each event ``ttl`` seconds after its last occurrence (kube-apiserver's
``--event-ttl``, default one hour), so events never fill the store.

Fed by a watch of events: every stored event's deadline (lastTimestamp + ttl) goes into a heap;
the controller sleeps until the earliest deadline, then deletes the events whose deadline passed,
reading each again first (a fold moved lastTimestamp later: it gets a new deadline instead). A
watch that falls behind relists.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.api.kinds import EVENTS
from pymaster.controllers.waiting import wait_event
from pymaster.registry import Registry
from pymaster.store.base import DELETED, WatchEvent
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

DEFAULT_EVENT_TTL_SECONDS = 3600.0


class EventTTLController:
    """Deletes expired events.

    Args:
        registry: The registry (events are read from its store, deleted through it).
        ttl: Seconds an event lives after its last occurrence.
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(self, registry: Registry, ttl: float = DEFAULT_EVENT_TTL_SECONDS,
                 clock: Callable[[], float] = time.time):
        self._store = registry.store
        self._events = registry.events
        self.ttl = ttl
        self._clock = clock
        self._heap: list[tuple[float, str, str]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Loads the stored events' deadlines and starts following the store."""
        rv = self._relist()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch(rv), name="event-ttl-watch"),
            loop.create_task(self._expire(), name="event-ttl"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _deadline(self, event: objects_pb2.Event) -> float:
        return event.last_timestamp.seconds + self.ttl

    def _push(self, event: objects_pb2.Event) -> None:
        heapq.heappush(self._heap, (self._deadline(event), event.metadata.namespace, event.metadata.name))
        self._changed.set()

    def _relist(self) -> int:
        events, rv = self._store.list(EVENTS.resource)
        self._heap = []
        for event in events:
            self._push(event)
        return rv

    async def _watch(self, rv: int) -> None:
        def apply(change: WatchEvent) -> None:
            if change.type != DELETED:
                self._push(change.object)

        await follow(self._store, EVENTS.resource, rv, apply, self._relist)

    async def _expire(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                _, namespace, name = heapq.heappop(self._heap)
                try:
                    await self._expire_one(namespace, name, now)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cannot expire event event=%s/%s", namespace, name)
            self._changed.clear()
            delay = self._heap[0][0] - self._clock() if self._heap else None
            await wait_event(self._changed, delay)

    async def _expire_one(self, namespace: str, name: str, now: float) -> None:
        try:
            event = self._store.get(EVENTS.resource, namespace, name)
        except NotFound:
            return
        if self._deadline(event) > now:
            return  # folded since: its newer deadline is in the heap too
        try:
            await self._events.delete(namespace, name)
        except NotFound:
            return
        log.debug("event expired event=%s/%s reason=%s", namespace, name, event.reason)
