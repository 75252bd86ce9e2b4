"""What every kind's registry shares: reads (get, filtered list and watch) over the store, the
request-key checks, and the resourceVersion conflict error.

A registry is the only writer of its kind: servicers, the scheduler and the controllers all call
it, so every write of a kind goes through the same rules. Reads may come straight from the store
(the informer caches of the scheduler and the controllers do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from google.protobuf.message import Message

from pymaster.api.errors import Conflict, MethodNotAllowed, NotFound
from pymaster.api.kinds import Kind
from pymaster.api.limits import check_name, check_namespace
from pymaster.registry.watch import ObjectFilter, list_objects, watch_objects
from pymaster.store.base import Store

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

    async def create(self, request: Message) -> Message:
        """Creates an object from a user's manifest."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be created through the API")

    async def apply(self, request: Message) -> tuple[Message, str]:
        """Creates the object or updates what may change; returns it and kubectl's action word."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be applied")

    async def update(self, request: Message) -> Message:
        """Updates what a user may change."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be updated")

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> Message:
        """Deletes an object (``grace_period``/``force``: for kinds with graceful deletion)."""
        raise MethodNotAllowed(f"{self.kind.resource} cannot be deleted")

    def _exists(self, resource: str, namespace: str, name: str) -> bool:
        try:
            self._store.get(resource, namespace, name)
        except NotFound:
            return False
        return True
