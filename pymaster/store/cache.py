"""The in-memory copy of the stored objects and the event log behind watches, shared by every
store backend: a backend makes a write durable, then hands it to ``ObjectCache.apply``, which
updates the copy and feeds the watchers in resourceVersion order.

Reads come from here and return copies, so callers can never change the cache. Stored messages
are never changed in place, only replaced; the event log gets its own copy of each.

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from pymaster.api.errors import NotFound, Unavailable
from pymaster.api.kinds import KINDS
from pymaster.store.base import DELETED, WatchEvent
from pymaster.store.events import DEFAULT_HISTORY, DEFAULT_QUEUE_SIZE, EventLog, Watcher


def copy_message(obj: Message) -> Message:
    """A deep copy of a protobuf message."""
    clone = type(obj)()
    clone.CopyFrom(obj)
    return clone


class ObjectCache:
    """Objects by kind, namespace and name at one resourceVersion, and their event log."""

    def __init__(self, history: int = DEFAULT_HISTORY, watch_queue_size: int = DEFAULT_QUEUE_SIZE):
        """
        Args:
            history: How many events the watch log keeps for watches to resume from.
            watch_queue_size: How many undelivered events a watcher may have before it is ended
                with TooOld.
        """
        self.event_log = EventLog(history, watch_queue_size)
        # kind -> namespace -> name -> object.
        self._objects: dict[str, dict[str, dict[str, Message]]] = {kind: {} for kind in KINDS}
        self._rv = 0
        self.is_open = False

    @property
    def rv(self) -> int:
        """The resourceVersion of the latest write applied."""
        return self._rv

    def load(self, objects: Iterable[tuple[str, Message]], rv: int) -> int:
        """Replaces the contents with ``objects`` ((kind, object) pairs) at ``rv`` and opens the
        cache; the event log starts empty there. Returns how many objects were loaded."""
        self._objects = {kind: {} for kind in KINDS}
        count = 0
        for kind, obj in objects:
            self._objects[kind].setdefault(obj.metadata.namespace, {})[obj.metadata.name] = obj
            count += 1
        self._rv = rv
        self.event_log.reset(rv)
        self.is_open = True
        return count

    def close(self) -> None:
        """Ends every watch; reads and writes fail with Unavailable from now on."""
        self.is_open = False
        self.event_log.close()

    def check_open(self) -> None:
        """Raises Unavailable when the store is closed."""
        if not self.is_open:
            raise Unavailable("store is closed")

    def by_kind(self, kind: str) -> dict[str, dict[str, Message]]:
        """namespace -> name -> object of ``kind`` (the stored messages: do not change them).

        Raises:
            ValueError: an unknown kind.
        """
        try:
            return self._objects[kind]
        except KeyError:
            raise ValueError(f'unknown kind "{kind}"; known: {", ".join(KINDS)}') from None

    def stored(self, kind: str, namespace: str, name: str) -> Message:
        """The stored message of one object (do not change it).

        Raises:
            NotFound: no such object.
        """
        self.check_open()
        obj = self.by_kind(kind).get(namespace, {}).get(name)
        if obj is None:
            raise NotFound(f'{kind} "{name}" not found')
        return obj

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """A copy of one object. Raises NotFound."""
        return copy_message(self.stored(kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        """Copies of the objects of ``kind`` sorted by (namespace, name), and the resourceVersion."""
        self.check_open()
        by_namespace = self.by_kind(kind)
        namespaces = sorted(by_namespace) if namespace is None else [namespace]
        items: list[Message] = []
        for ns in namespaces:
            by_name = by_namespace.get(ns, {})
            items.extend(copy_message(by_name[name]) for name in sorted(by_name))
        return items, self._rv

    def watch(self, kind: str, resource_version: int) -> Watcher:
        """Every write of ``kind`` after ``resource_version``, in order. Raises TooOld."""
        self.by_kind(kind)
        self.check_open()
        return self.event_log.watch(kind, resource_version)

    def check_type(self, kind: str, obj: Message) -> None:
        """Raises TypeError when ``obj`` is not the message type of ``kind`` (ValueError: unknown)."""
        self.by_kind(kind)
        expected = KINDS[kind].message
        if not isinstance(obj, expected):
            raise TypeError(f"{kind} must be {expected.__name__}, not {type(obj).__name__}")

    def apply(self, event_type: str, kind: str, obj: Message, rv: int) -> None:
        """Records a durable write: ``obj`` (owned by the cache from now on; for DELETED its last
        state) with resourceVersion ``rv``, then hands a copy to the kind's watchers."""
        meta = obj.metadata
        by_namespace = self._objects[kind]
        if event_type == DELETED:
            by_name = by_namespace.get(meta.namespace, {})
            by_name.pop(meta.name, None)
            if not by_name:
                by_namespace.pop(meta.namespace, None)
        else:
            by_namespace.setdefault(meta.namespace, {})[meta.name] = obj
        self._rv = rv
        # The log gets its own copy: a watcher that changes its event cannot reach the cache.
        self.event_log.append(kind, WatchEvent(event_type, copy_message(obj), rv))
