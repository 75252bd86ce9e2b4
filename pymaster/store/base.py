"""The storage contract every backend of the master implements (SQLite now, etcd later).

A store keeps API objects by kind ("pods", "nodes") and (namespace, name); cluster-scoped kinds
such as nodes use the namespace "". Every write takes the next value of one cluster-wide counter,
the resourceVersion, which is also the position of the write in the event log that watches read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One write as a watcher sees it.

    Attributes:
        type: "ADDED", "MODIFIED" or "DELETED".
        object: The object after the write; for DELETED its last state, with
            metadata.resourceVersion set to the deletion's resourceVersion. The message is shared by
            every watcher of the kind: treat it as read-only and copy it before changing it.
        resource_version: The resourceVersion of the write.
    """

    type: str
    object: Message
    resource_version: int


class Watch(Protocol):
    """An async iterator of WatchEvents in resourceVersion order.

    Iteration raises TooOld when the watcher fell too far behind (it should list again) and stops
    when the watch or the store is closed.
    """

    def __aiter__(self) -> Watch: ...

    async def __anext__(self) -> WatchEvent: ...

    def ready(self, limit: int) -> list[WatchEvent]:
        """Up to ``limit`` more events available without waiting (a batch after ``__anext__``)."""
        ...

    def close(self) -> None:
        """Stops the watch; a pending or later ``__anext__`` ends the iteration."""
        ...


class ValueTransformer(Protocol):
    """How a backend turns an object's serialized bytes into what it writes, and back (Kubernetes'
    storage value transformers): encryption at rest (``pymaster.store.encryption``). Both are
    called off the event loop, on the backend's own thread.
    """

    def to_storage(self, kind: str, namespace: str, name: str, data: bytes) -> bytes:
        """What to write for ``data``, the serialized object of ``kind`` at (namespace, name)."""
        ...

    def from_storage(self, kind: str, namespace: str, name: str, stored: bytes) -> bytes:
        """The serialized object back from what was written.

        Raises:
            ValueError: ``stored`` cannot be read back (a wrong or missing key ...), saying why.
        """
        ...


class Store(Protocol):
    """Durable, versioned storage of API objects with reads from memory and watches.

    Writes are durable before they return. Reads return copies the caller may change freely.
    Errors come from pymaster.api.errors: NotFound, AlreadyExists, Conflict, TooOld, Unavailable
    (store closed).
    """

    @property
    def current_rv(self) -> int:
        """The resourceVersion of the latest write (0 for an empty, new store)."""
        ...

    async def open(self) -> None:
        """Opens the backend and loads every object into memory."""
        ...

    async def close(self) -> None:
        """Waits for the write in flight, ends every watch and releases the backend."""
        ...

    async def create(self, kind: str, obj: Message) -> Message:
        """Stores a new object; returns it with metadata.resourceVersion set. Raises AlreadyExists."""
        ...

    async def update(self, kind: str, obj: Message) -> Message:
        """Replaces an object whose metadata.resourceVersion is the stored one.

        Raises NotFound, or Conflict when the resourceVersion is stale.
        """
        ...

    async def mutate(
        self, kind: str, namespace: str, name: str, fn: Callable[[Message], Message | None]
    ) -> Message:
        """Read-modify-write under the write lock, so it cannot conflict.

        ``fn`` gets a copy of the stored object and returns the new state, or None to write
        nothing. If ``fn`` raises, nothing is written and the exception propagates. Raises NotFound.
        """
        ...

    async def mutate_many(
        self, kind: str, items: Sequence[tuple[str, str, Callable[[Message], Message | None]]]
    ) -> list[Message | Exception]:
        """Several ``mutate``s (namespace, name, fn) in one durable write (one transaction, one
        fsync); per item the object after it, or the ApiError/ValueError it raised (the other
        items are still written)."""
        ...

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> Message:
        """Removes an object; returns its last state with the deletion's resourceVersion.

        Raises NotFound, or Conflict when ``uid`` is given and is not the stored object's uid.
        """
        ...

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """Returns a copy of one object. Raises NotFound."""
        ...

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        """Returns copies of the objects of a kind (one namespace, or all when None), sorted by
        (namespace, name), and the resourceVersion they reflect."""
        ...

    def watch(self, kind: str, resource_version: int) -> Watch:
        """Watches every write of ``kind`` after ``resource_version``, in order.

        Raises TooOld when the event log no longer reaches back to ``resource_version``.
        """
        ...
