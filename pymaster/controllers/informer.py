"""Informers: an in-memory copy of one kind of the store, kept by list + watch, with secondary
indexes and change handlers (client-go's shared informer and indexer, in-process).

An informer lists its kind once (``has_synced`` is set then), then follows the store's watch; when
the watch falls behind (TooOld) it lists again and tells its handlers the difference: adds,
updates of the objects whose resourceVersion changed, deletes of the objects gone. So handlers see
every change as ``(old, new)``, without client-go's DeletedFinalStateUnknown tombstones: a delete
found by a relist still carries the last state this informer saw.

Objects are the store's messages, shared with the store's other watchers and with every reader of
the informer: never change one; copy it first (``pymaster.store.cache.copy_message``) to build
an update. Handlers run synchronously on the watch task and must be cheap (enqueue keys, adjust
expectations); one that raises is logged and the others still run.

``InformerFactory`` hands out one informer per kind so that the controllers of one master share
their pod cache instead of each keeping a copy (client-go's SharedInformerFactory).

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from google.protobuf.message import Message

from pymaster.api.errors import TooOld, Unavailable
from pymaster.store.base import DELETED, Store

log = logging.getLogger(__name__)

Handler = Callable[[Message | None, Message | None], None]
IndexFunc = Callable[[Message], Iterable[str]]


def object_key(obj: Message) -> str:
    """The work-queue key of an object: "namespace/name", or "name" when cluster-scoped."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key made by ``object_key``; namespace "" when cluster-scoped."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


# ---- common indexers ----


def by_namespace(obj: Message) -> list[str]:
    """Index value: the object's namespace."""
    return [obj.metadata.namespace]


def by_controller_uid(obj: Message) -> list[str]:
    """Index value: the uid of the owner reference with controller=true (none when there is none)."""
    return [ref.uid for ref in obj.metadata.owner_references if ref.controller][:1]


def by_owner_uids(obj: Message) -> list[str]:
    """Index values: the uid of every owner reference."""
    return [ref.uid for ref in obj.metadata.owner_references]


def by_node_name(pod: Message) -> list[str]:
    """Index value: the node a pod is bound to (none while unscheduled)."""
    return [pod.spec.node_name] if pod.spec.node_name else []


class Informer:
    """Follows one kind of the store: objects by key, secondary indexes, change handlers.

    Args:
        store: The store (its in-memory reads and watches).
        resource: The kind's resource name ("pods", "replicasets").
        indexers: Index name -> function giving an object's values in that index.
    """

    def __init__(self, store: Store, resource: str, indexers: dict[str, IndexFunc] | None = None):
        self.store = store
        self.resource = resource
        self.has_synced = asyncio.Event()
        self._objects: dict[str, dict[str, Message]] = {}  # namespace -> name -> object
        self._indexers: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}  # index -> value -> keys
        self._indexed: dict[str, dict[str, tuple[str, ...]]] = {}  # index -> key -> its values
        self._handlers: list[Handler] = []
        self._task: asyncio.Task | None = None
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    # ---- reading ----

    def get(self, namespace: str, name: str) -> Message | None:
        """The object (read-only), or None."""
        return self._objects.get(namespace, {}).get(name)

    def get_by_key(self, key: str) -> Message | None:
        """The object of a work-queue key (read-only), or None."""
        return self.get(*split_key(key))

    def list(self, namespace: str | None = None) -> list[Message]:
        """The objects (read-only) of one namespace, or of all when None; in no particular order."""
        if namespace is not None:
            return list(self._objects.get(namespace, {}).values())
        return [obj for by_name in self._objects.values() for obj in by_name.values()]

    def by_index(self, index_name: str, value: str) -> list[Message]:
        """The objects (read-only) whose ``index_name`` values include ``value``.

        Raises:
            KeyError: no such index.
        """
        try:
            keys = self._indexes[index_name].get(value, ())
        except KeyError:
            raise KeyError(f'{self.resource} informer has no index "{index_name}"; '
                           f'known: {", ".join(sorted(self._indexes)) or "none"}') from None
        return [obj for key in keys if (obj := self.get_by_key(key)) is not None]

    def __len__(self) -> int:
        return sum(len(by_name) for by_name in self._objects.values())

    # ---- wiring ----

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Adds an index (the objects already held are indexed at once).

        Raises:
            ValueError: an index of that name exists with another function.
        """
        if name in self._indexers:
            if self._indexers[name] is not fn:
                raise ValueError(f'{self.resource} informer: index "{name}" already exists')
            return
        self._indexers[name] = fn
        self._indexes[name] = {}
        self._indexed[name] = {}
        for obj in self.list():
            self._index_one(name, object_key(obj), obj)

    def add_handler(self, fn: Handler) -> None:
        """Calls ``fn(old, new)`` on every change: old None = added, new None = deleted. Added to
        an informer that has listed already, ``fn`` first gets every object held as an add (as
        client-go replays a shared informer's contents to a late handler)."""
        self._handlers.append(fn)
        if self.has_synced.is_set():
            for obj in self.list():
                fn(None, obj)

    # ---- running ----

    def start(self) -> None:
        """Lists at once (``has_synced`` is set on return) and follows the watch on a task.
        Does nothing when already running."""
        if self.running:
            return
        rv = self._relist()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._follow(rv), name=f"informer-{self.resource}")

    @property
    def running(self) -> bool:
        """Whether the informer follows the store's watch (started, not stopped, store open)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stops following the store (the objects held stay readable)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Lists, then follows the watch until the store closes."""
        await self._follow(self._relist())

    async def _follow(self, rv: int) -> None:
        while True:
            try:
                watch = self.store.watch(self.resource, rv)
                try:
                    async for event in watch:
                        rv = event.resource_version
                        self._apply(None if event.type == DELETED else event.object, event.object)
                finally:
                    watch.close()
                return  # the store closed
            except TooOld as err:
                log.info("informer relisting resource=%s reason=%s", self.resource, err.message)
            except Unavailable:
                return  # the store closed
            try:
                rv = self._relist()
            except Unavailable:
                return

    def _relist(self) -> int:
        """Replaces the contents with a fresh list; handlers see the difference."""
        objects, rv = self.store.list(self.resource)
        listed = {object_key(obj) for obj in objects}
        for obj in self.list():
            if object_key(obj) not in listed:
                self._apply(None, obj)
        for obj in objects:
            old = self.get(obj.metadata.namespace, obj.metadata.name)
            if old is None or old.metadata.resource_version != obj.metadata.resource_version:
                self._apply(obj, obj)
        self.has_synced.set()
        return rv

    def _apply(self, new: Message | None, latest: Message) -> None:
        """Records ``new`` (None: ``latest`` was deleted) and tells the handlers."""
        namespace, name = latest.metadata.namespace, latest.metadata.name
        key = object_key(latest)
        by_name = self._objects.get(namespace, {})
        old = by_name.get(name)
        if new is None:
            if old is None:
                return
            del by_name[name]
            if not by_name:
                del self._objects[namespace]
        else:
            self._objects.setdefault(namespace, {})[name] = new
        for index in self._indexers:
            self._index_one(index, key, new)
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("informer handler failed resource=%s key=%s", self.resource, key)

    def _index_one(self, index: str, key: str, obj: Message | None) -> None:
        values = tuple(dict.fromkeys(self._indexers[index](obj))) if obj is not None else ()
        by_key = self._indexed[index]
        before = by_key.get(key, ())
        if values == before:
            return
        by_value = self._indexes[index]
        for value in before:
            keys = by_value.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del by_value[value]
        for value in values:
            by_value.setdefault(value, set()).add(key)
        if values:
            by_key[key] = values
        else:
            by_key.pop(key, None)


class InformerFactory:
    """One shared informer per kind for the controllers of one master.

    Args:
        store: The store the informers follow.
    """

    def __init__(self, store: Store):
        self.store = store
        self._informers: dict[str, Informer] = {}

    def informer(self, resource: str, indexers: dict[str, IndexFunc] | None = None) -> Informer:
        """The informer of ``resource`` (made on first use), with ``indexers`` added to it."""
        informer = self._informers.get(resource)
        if informer is None:
            informer = self._informers[resource] = Informer(self.store, resource)
        for name, fn in (indexers or {}).items():
            informer.add_indexer(name, fn)
        return informer

    def start(self) -> None:
        """Starts every informer made so far (each lists at once)."""
        for informer in self._informers.values():
            informer.start()

    async def stop(self) -> None:
        """Stops every informer."""
        await asyncio.gather(*(informer.stop() for informer in self._informers.values()))
