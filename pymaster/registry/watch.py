"""Filtered lists and watches of any kind: the namespace, label selector and field selector of a
request, and the Kubernetes rules for what a filtered watcher sees.

A watch without a resourceVersion starts with ADDED events for the current state; with one, it
resumes after it (TooOld if the event log no longer reaches back: the client lists again). With
selectors, an object that starts matching is ADDED to the watcher, one that stops matching is
DELETED, one that keeps matching is MODIFIED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf.message import Message

from pymaster.api.errors import ValidationError
from pymaster.api.kinds import kind_of
from pymaster.api.selectors import FieldSelector, LabelSelector
from pymaster.store.base import Store


def parse_resource_version(value: str) -> int:
    """A request's resourceVersion as the store's counter.

    Raises:
        ValidationError: not a non-negative integer.
    """
    try:
        rv = int(value)
    except ValueError:
        raise ValidationError("resourceVersion", f"must be an integer, not {value!r}") from None
    if rv < 0:
        raise ValidationError("resourceVersion", "must not be negative")
    return rv


class ObjectFilter:
    """The namespace, label selector and field selector of a list or watch request.

    Bad selectors raise ValidationError (on ``labelSelector``/``fieldSelector``) at construction,
    before any response is sent.
    """

    def __init__(self, kind: str, namespace: str = "", label_selector: str = "", field_selector: str = ""):
        """
        Args:
            kind: The resource ("pods", "nodes"): which fields the field selector may name.
            namespace: Only this namespace; "" for all. Ignored for cluster-scoped kinds.
        """
        self.namespace = namespace if kind_of(kind).namespaced else ""
        self._labels = LabelSelector.parse(label_selector)
        self._fields = FieldSelector.parse(field_selector, kind)

    @property
    def has_selectors(self) -> bool:
        """True when a label or field selector is set (objects may enter and leave the selection)."""
        return not (self._labels.empty() and self._fields.empty())

    def matches(self, obj: Message) -> bool:
        """True if ``obj`` is in the namespace (when one is set) and matches both selectors."""
        if self.namespace and obj.metadata.namespace != self.namespace:
            return False
        return self._labels.matches(obj.metadata.labels) and self._fields.matches(obj)


def watch_event_type(store_type: str, matches: bool, was_matched: bool) -> str | None:
    """The event a filtered watcher sees for a store event, Kubernetes-style.

    An object that starts matching the selectors is ADDED, one that stops matching is DELETED,
    one that keeps matching is MODIFIED, one that never matched is not sent (None).

    Args:
        store_type: "ADDED", "MODIFIED" or "DELETED" from the store.
        matches: Whether the object after the event matches.
        was_matched: Whether the watcher had the object (it was sent before and still matched).
    """
    if store_type == "DELETED":
        return "DELETED" if (matches or was_matched) else None
    if matches:
        return "MODIFIED" if was_matched and store_type == "MODIFIED" else "ADDED"
    return "DELETED" if was_matched else None


def list_objects(store: Store, kind: str, selection: ObjectFilter) -> tuple[list[Message], int]:
    """The objects of ``kind`` the filter selects, and the resourceVersion they reflect."""
    items, rv = store.list(kind, selection.namespace or None)
    return [obj for obj in items if selection.matches(obj)], rv


# Events in one batch at most: enough to make one message of what a busy store writes between
# two sends, few enough to keep the message small.
MAX_BATCH_EVENTS = 100


def _key(obj: Message) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


async def watch_objects(
    store: Store, kind: str, selection: ObjectFilter, resource_version: str = ""
) -> AsyncIterator[tuple[str, Message]]:
    """(event type, object) pairs of one client's watch: ``watch_batches``, one by one."""
    async for batch in watch_batches(store, kind, selection, resource_version):
        for item in batch:
            yield item


async def watch_batches(
    store: Store, kind: str, selection: ObjectFilter, resource_version: str = "",
    limit: int = MAX_BATCH_EVENTS,
) -> AsyncIterator[list[tuple[str, Message]]]:
    """Lists of (event type, object) of one client's watch: the current state first when no
    resourceVersion is given, then every change, filtered by namespace and selectors; each list
    holds up to ``limit`` events that were ready together (one when the watch keeps up).

    Raises TooOld (OUT_OF_RANGE) if the resourceVersion is older than the event log, or if this
    watcher falls behind: the client lists again.
    """
    namespace = selection.namespace or None
    if resource_version:
        initial: list[Message] = []
        watch = store.watch(kind, parse_resource_version(resource_version))
        # What the client holds is unknown; assume what matches now (only matters for selectors).
        held = store.list(kind, namespace)[0] if selection.has_selectors else []
    else:
        initial, rv = store.list(kind, namespace)
        watch = store.watch(kind, rv)
        held = initial
    try:
        matching = [obj for obj in initial if selection.matches(obj)]
        for start in range(0, len(matching), limit):
            yield [("ADDED", obj) for obj in matching[start:start + limit]]
        # The keys the client holds, tracked only when selectors can make objects enter or leave.
        sent = {_key(o) for o in held if selection.matches(o)} if selection.has_selectors else set()
        async for first in watch:
            batch = []
            for event in (first, *watch.ready(limit - 1)):
                obj = event.object
                if namespace is not None and obj.metadata.namespace != namespace:
                    continue
                if not selection.has_selectors:
                    batch.append((event.type, obj))
                    continue
                key = _key(obj)
                out = watch_event_type(event.type, selection.matches(obj), key in sent)
                if out is None:
                    continue
                if out == "DELETED":
                    sent.discard(key)
                else:
                    sent.add(key)
                batch.append((out, obj))
            if batch:
                yield batch
    finally:
        watch.close()
