"""What every kind's registry shares: reads (get, filtered list and watch) over the store, the
request-key checks, the resourceVersion conflict error, and the verbs of kinds only users write
(``UserObjectRegistry``: ConfigMaps, Secrets).

A registry is the only writer of its kind: servicers, the scheduler and the controllers all call
it, so every write of a kind goes through the same rules. Reads may come straight from the store
(the informer caches of the scheduler and the controllers do).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.conditions import timestamp
from pymaster.api.errors import Conflict, MethodNotAllowed, NotFound
from pymaster.api.kinds import Kind
from pymaster.api.limits import check_name, check_namespace
from pymaster.registry import applied
from pymaster.registry.watch import ObjectFilter, list_objects, watch_batches, watch_objects
from pymaster.store.base import Store

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"

M = TypeVar("M", bound=Message)


def namespace_or_default(namespace: str) -> str:
    """A request's namespace: "" means "default"."""
    return namespace or DEFAULT_NAMESPACE


def conflict(kind: Kind, name: str) -> Conflict:
    """The error of a write based on a stale resourceVersion (Kubernetes' wording)."""
    return Conflict(
        f'{kind.resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def merge_user_update(
    current: M, desired: M, adjust_spec: Callable[[Message, Message], None] | None = None
) -> M:
    """The object to store when a user sends ``desired`` over the stored ``current``: labels,
    annotations and spec from ``desired``, everything the system set (uid, timestamps, status,
    resourceVersion) from ``current``; metadata.generation goes up when the spec changes.

    Args:
        adjust_spec: Called as ``adjust_spec(merged.spec, current.spec)`` before the comparison,
            to keep what the user leaves unset (a pod's nodeName).
    """
    merged = type(current)()
    merged.CopyFrom(current)
    merged.metadata.ClearField("labels")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.ClearField("annotations")
    merged.metadata.annotations.update(desired.metadata.annotations)
    merged.spec.CopyFrom(desired.spec)
    if adjust_spec is not None:
        adjust_spec(merged.spec, current.spec)
    if merged.spec != current.spec:
        merged.metadata.generation = current.metadata.generation + 1
    return merged


class KindRegistry:
    """Reads of one kind, the helpers its writes share, and the generic verbs (create, apply,
    update, delete) a kind's registry implements when the kind supports them."""

    def __init__(self, store: Store, kind: Kind):
        self._store = store
        self.kind = kind

    @property
    def store(self) -> Store:
        return self._store

    def check_key(self, namespace: str, name: str, prefix: str = "") -> None:
        """A request's namespace and name are well formed (``prefix``: "metadata." for an object's).

        Raises:
            ValidationError: naming the field.
        """
        if self.kind.namespaced:
            check_namespace(f"{prefix}namespace", namespace)
        check_name(f"{prefix}name", name)

    def _namespace(self, namespace: str) -> str:
        return namespace_or_default(namespace) if self.kind.namespaced else ""

    def get(self, namespace: str, name: str) -> Message:
        """One object ("" namespace: "default"; ignored for cluster-scoped kinds). Raises NotFound."""
        return self._store.get(self.kind.resource, self._namespace(namespace), name)

    def list(self, selection: ObjectFilter) -> tuple[list[Message], int]:
        """The objects the filter selects, and the resourceVersion they reflect."""
        return list_objects(self._store, self.kind.resource, selection)

    def watch(
        self, selection: ObjectFilter, resource_version: str = ""
    ) -> AsyncIterator[tuple[str, Message]]:
        """(event type, object) pairs of a filtered watch (see ``pymaster.registry.watch``)."""
        return watch_objects(self._store, self.kind.resource, selection, resource_version)

    def watch_batches(
        self, selection: ObjectFilter, resource_version: str = ""
    ) -> AsyncIterator[list[tuple[str, Message]]]:
        """The same watch, the events that were ready together in one list."""
        return watch_batches(self._store, self.kind.resource, selection, resource_version)

    async def create(self, request: Message) -> Message:
        """Creates an object from a user's manifest."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be created through the API")

    async def apply(self, request: Message, *, record: bool = True) -> tuple[Message, str]:
        """Creates the object or updates what may change; returns it and kubectl's action word.
        ``record``: keep kubectl's last-applied record (``registry.applied``); the master's own
        objects do without."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be applied")

    async def update(self, request: Message) -> Message:
        """Updates what a user may change."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be updated")

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> Message:
        """Deletes an object (``grace_period``/``force``: for kinds with graceful deletion)."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be deleted")

    async def update_owner_references(
        self,
        namespace: str,
        name: str,
        uid: str,
        change: Callable[[list[objects_pb2.OwnerReference]], list[objects_pb2.OwnerReference] | None],
    ) -> Message:
        """Sets the ownerReferences of the object with this uid to ``change(current references)``
        (None: leave them): how the controllers adopt and release objects and the garbage
        collector orphans them. Raises NotFound (also when the uid differs)."""

        def update(current: Message) -> Message | None:
            if current.metadata.uid != uid:
                raise NotFound(f'{self.kind.resource} "{name}" not found')
            refs = change(list(current.metadata.owner_references))
            if refs is None or refs == list(current.metadata.owner_references):
                return None
            del current.metadata.owner_references[:]
            current.metadata.owner_references.extend(refs)
            return current

        return await self._store.mutate(self.kind.resource, self._namespace(namespace), name, update)

    def _exists(self, resource: str, namespace: str, name: str) -> bool:
        try:
            self._store.get(resource, namespace, name)
        except NotFound:
            return False
        return True


def prepare_new_metadata(meta: objects_pb2.ObjectMeta, uid: str, now: float) -> None:
    """What the server owns in a new object's metadata, in place: its uid and creationTimestamp;
    no resourceVersion, generation or deletion marks from the request."""
    meta.uid = uid
    meta.creation_timestamp.CopyFrom(timestamp(now))
    meta.resource_version = ""
    meta.generation = 0
    meta.ClearField("deletion_timestamp")
    meta.ClearField("deletion_grace_period_seconds")


class UserObjectRegistry(KindRegistry):
    """A kind users write (ConfigMaps, Secrets, workloads, pods): create, apply (create, else
    replace what a user may change), update (checked against metadata.resourceVersion when it is
    set) and deletion at once. A subclass gives the two pure rules: ``prepare_create`` and
    ``prepare_update``.

    Args:
        store: The store.
        kind: The kind.
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(self, store: Store, kind: Kind, clock: Callable[[], float] = time.time):
        super().__init__(store, kind)
        self._clock = clock

    def prepare_create(self, obj: Message, uid: str, now: float) -> None:
        """Makes a user's object the one to store, in place (defaults, validation, server fields).

        Raises:
            ValidationError: naming the field.
        """
        raise NotImplementedError

    def prepare_update(self, current: Message, request: Message) -> Message | None:
        """The object to store for a user's ``request`` over ``current``, or None when nothing
        changes.

        Raises:
            ValidationError: naming the field.
        """
        raise NotImplementedError

    async def create(self, request: Message) -> Message:
        obj = type(request)()
        obj.CopyFrom(request)
        self.prepare_create(obj, str(uuid.uuid4()), self._clock())
        created = await self._store.create(self.kind.resource, obj)
        log.info("%s created namespace=%s name=%s uid=%s", self.kind.singular, created.metadata.namespace,
                 created.metadata.name, created.metadata.uid)
        return created

    async def apply(self, request: Message, *, record: bool = True) -> tuple[Message, str]:
        """Creates the object, or replaces what a user may change; returns it and kubectl's action
        word ("created", "configured" or "unchanged")."""
        self.check_key(request.metadata.namespace, request.metadata.name, "metadata.")
        last_applied = applied.record(request) if record else None
        try:
            self.get(request.metadata.namespace, request.metadata.name)
        except NotFound:
            created = request if last_applied is None else applied.with_record(request, last_applied)
            return await self.create(created), "created"
        obj, changed = await self._update(request, check_rv=False, last_applied=last_applied)
        return obj, "configured" if changed else "unchanged"

    async def update(self, request: Message) -> Message:
        """Replaces what a user may change; metadata.resourceVersion, when set, must be the stored
        one (else Conflict)."""
        self.check_key(request.metadata.namespace, request.metadata.name, "metadata.")
        obj, _ = await self._update(request, check_rv=bool(request.metadata.resource_version))
        return obj

    async def _update(
        self, request: Message, *, check_rv: bool, last_applied: str | None = None
    ) -> tuple[Message, bool]:
        """Writes a user's ``request`` over the stored object; an apply's (``last_applied``, its
        record) merges labels and annotations with the stored ones (``registry.applied``)."""
        changed = False

        def update(current: Message) -> Message | None:
            nonlocal changed
            if check_rv and current.metadata.resource_version != request.metadata.resource_version:
                raise conflict(self.kind, current.metadata.name)
            wanted = request if last_applied is None else applied.merge(current, request, last_applied)
            merged = self.prepare_update(current, wanted)
            changed = merged is not None
            return merged

        namespace, name = namespace_or_default(request.metadata.namespace), request.metadata.name
        obj = await self._store.mutate(self.kind.resource, namespace, name, update)
        if changed:
            log.info("%s updated namespace=%s name=%s", self.kind.singular, namespace, name)
        return obj, changed

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> Message:
        """Deletes the object at once (there is nothing to wait for)."""
        self.check_key(namespace, name)
        deleted = await self._store.delete(self.kind.resource, namespace_or_default(namespace), name)
        log.info("%s deleted namespace=%s name=%s", self.kind.singular, deleted.metadata.namespace, name)
        return deleted
