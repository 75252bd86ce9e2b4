"""The in-memory event log behind every watch, and the fan-out of new events to watchers.

The log is a bounded ring of the latest writes (all kinds, one resourceVersion sequence). A watch
from resourceVersion R replays the logged events of its kind after R, then receives new ones. A
watch from before the ring's start raises TooOld: the client lists again and watches from the
list's resourceVersion (Kubernetes' "410 Gone" dance). The log is not persisted: after a restart it
starts empty at the store's current resourceVersion, so only a watch from exactly there resumes.

Writers never wait for watchers: each watcher has a bounded queue, and one that lets it fill up is
ended with TooOld (it relists) instead of slowing the writer or growing without bound.

Every event's object is shared by all watchers of its kind, so fan-out costs no copies; consumers
must treat it as read-only.

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from pymaster.api.errors import TooOld
from pymaster.store.base import WatchEvent

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000
DEFAULT_QUEUE_SIZE = 1_000

class Watcher:
    """One watch of one kind: an async iterator of WatchEvents (see pymaster.store.base.Watch),
    read by one task.

    Its queue is a deque and one future its reader waits on: every write reaches several
    watchers, and asyncio.Queue's bookkeeping (unfinished-task counts, getter lists) cost more
    than the rest of a delivery.
    """

    def __init__(self, owner: EventLog, kind: str, after_rv: int, backlog: list[WatchEvent], queue_size: int):
        self.kind = kind
        self._owner = owner
        # A watch from a resourceVersion the store has not reached yet skips writes up to it.
        self._after_rv = after_rv
        self._backlog = deque(backlog)
        self._items: deque[WatchEvent] = deque()
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None  # the reader's, while it waits
        self._closed = False
        self._error: TooOld | None = None

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._items:
                return self._items.popleft()
            if self._closed:
                self._end()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def ready(self, limit: int) -> list[WatchEvent]:
        """Up to ``limit`` more events that are here already, taken without waiting (what the
        next ``__anext__`` calls would return at once)."""
        events: list[WatchEvent] = []
        for source in (self._backlog, self._items):
            while source and len(events) < limit:
                events.append(source.popleft())
        return events

    def close(self) -> None:
        """Stops the watch; a pending or later ``__anext__`` ends the iteration."""
        self._finish(None)

    def offer(self, event: WatchEvent) -> None:
        """Queues a new event without waiting; a full queue ends the watch with TooOld."""
        if self._closed or event.resource_version <= self._after_rv:
            return
        if len(self._items) >= self._queue_size:
            log.warning(
                "watcher overflow kind=%s queue_size=%d resource_version=%d",
                self.kind, self._queue_size, event.resource_version,
            )
            self._finish(
                TooOld(
                    f"watch of {self.kind} fell behind by more than {self._queue_size} events "
                    f"at resourceVersion {event.resource_version}; list again"
                )
            )
            return
        self._items.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, error: TooOld | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        # Pending events are dropped: a closed watch has no reader, a failed one must relist anyway.
        self._backlog.clear()
        self._items.clear()
        self._wake()
        self._owner.discard(self)

    def _end(self) -> None:
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration


class EventLog:
    """A ring of the latest events, and the watchers to tell about new ones."""

    def __init__(self, history: int = DEFAULT_HISTORY, queue_size: int = DEFAULT_QUEUE_SIZE):
        """Creates an empty log at resourceVersion 0.

        Args:
            history: How many events (of all kinds together) the log keeps for watches to resume.
            queue_size: How many undelivered events a watcher may have before it is ended.
        """
        if history < 1 or queue_size < 1:
            raise ValueError("history and queue_size must be at least 1")
        self._events: deque[tuple[str, WatchEvent]] = deque(maxlen=history)
        self._queue_size = queue_size
        # The oldest resourceVersion a watch can start from: every later event is in the ring.
        self._start_rv = 0
        self._rv = 0
        self._watchers: dict[str, set[Watcher]] = {}

    @property
    def start_rv(self) -> int:
        """The oldest resourceVersion a watch can start from."""
        return self._start_rv

    def reset(self, resource_version: int) -> None:
        """Empties the log so that it starts at ``resource_version`` (the store's, at open)."""
        self._events.clear()
        self._start_rv = self._rv = resource_version

    def append(self, kind: str, event: WatchEvent) -> None:
        """Records a committed write and hands it to the kind's watchers.

        Raises:
            ValueError: the event's resourceVersion is not above the previous one; replaying
                out of order would make watchers skip or repeat writes.
        """
        if event.resource_version <= self._rv:
            raise ValueError(
                f"event resourceVersion {event.resource_version} is not after {self._rv}"
            )
        if len(self._events) == self._events.maxlen:
            self._start_rv = self._events[0][1].resource_version
        self._events.append((kind, event))
        self._rv = event.resource_version
        # A copy: an overflowing watcher removes itself from the set during the loop.
        for watcher in tuple(self._watchers.get(kind, ())):
            watcher.offer(event)

    def watch(self, kind: str, resource_version: int) -> Watcher:
        """Starts a watch of ``kind`` after ``resource_version``: logged events first, then new ones.

        Raises:
            TooOld: the log no longer holds every event after ``resource_version``.
        """
        if resource_version < self._start_rv:
            raise TooOld(
                f"resourceVersion {resource_version} is too old "
                f"(oldest available {self._start_rv}); list again"
            )
        # The ring is in resourceVersion order: scan back from the newest event only as far as needed.
        backlog: list[WatchEvent] = []
        for event_kind, event in reversed(self._events):
            if event.resource_version <= resource_version:
                break
            if event_kind == kind:
                backlog.append(event)
        backlog.reverse()
        watcher = Watcher(self, kind, resource_version, backlog, self._queue_size)
        self._watchers.setdefault(kind, set()).add(watcher)
        return watcher

    def discard(self, watcher: Watcher) -> None:
        """Forgets a watcher (called when it ends)."""
        watchers = self._watchers.get(watcher.kind)
        if watchers is not None:
            watchers.discard(watcher)

    def close(self) -> None:
        """Ends every watch (their iterators stop)."""
        for watchers in list(self._watchers.values()):
            for watcher in tuple(watchers):
                watcher.close()
        self._watchers.clear()

    def expire(self, reason: str) -> None:
        """Ends every watch with TooOld(reason): the history they follow is gone (the backend
        listed again, e.g. after etcd compacted it)."""
        error = TooOld(reason)
        for watchers in list(self._watchers.values()):
            for watcher in tuple(watchers):
                watcher._finish(error)

    def watcher_count(self) -> int:
        """How many watches are open (for metrics)."""
        return sum(len(watchers) for watchers in self._watchers.values())
