"""The garbage collector (Kubernetes' ``pkg/controller/garbagecollector``): deletes the objects
whose owners are gone, and carries out the Foreground and Orphan deletion of owners.

It follows every namespaced kind that can be a dependent (pods, replicasets, deployments,
daemonsets, jobs, configmaps, secrets), indexed by the uids of their ownerReferences; a work
item is one object ("resource/namespace/name"), synced level-triggered:

- an object marked for deletion with the ``foregroundDeletion`` finalizer (an owner deleted with
  propagationPolicy Foreground) gets its dependents deleted (each dependent's own sync sees its
  owner "waiting for dependents deletion": workloads are deleted Foreground in turn, so a
  Deployment waits for its ReplicaSets, which wait for their pods; pods are deleted gracefully);
  once no dependent with ``blockOwnerDeletion`` remains, the finalizer is removed and the owner goes;
- an object marked with the ``orphan`` finalizer gets its reference removed from every dependent,
  then the finalizer;
- an object with ownerReferences: each owner is looked up by apiVersion+kind (in the object's
  namespace; "" for a cluster-scoped owner) and is gone when not found or found with another
  uid. Before believing the informer's "not found", the store is asked (the informer may be a
  step behind: kube's "virtual node" check). When every owner is gone (or waiting for its
  dependents' deletion) the object is deleted: pods gracefully, workloads with propagation
  Background (Foreground when an owner waits), others at once. When only some owners are gone,
  the references to them are removed instead, as kube does. An owner of a kind the master does
  not serve is taken as present (the object is left alone; said once in the log).

Every object is checked once at start (the informers' first list), and again whenever its
ownerReferences or deletion state change, or one of its owners or dependents goes away.

Choices where Kubernetes leaves room: the dependent a foreground owner waits for is one whose
reference to it has ``blockOwnerDeletion: true`` (what controllers set), as in kube; other
dependents are deleted but not waited for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

from pymaster.api.errors import NotFound
from pymaster.api.kinds import kind_of_type
from pymaster.controllers.informer import Informer, InformerFactory, by_owner_uids, split_key
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry
from pymaster.registry.workloads import BACKGROUND, FOREGROUND, FOREGROUND_FINALIZER, ORPHAN_FINALIZER

log = logging.getLogger(__name__)

DEPENDENT_RESOURCES = (
    "pods", "replicasets", "deployments", "daemonsets", "jobs", "configmaps", "secrets", "endpointslices",
)
OWNERS_INDEX = "owners"

SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"


def item_key(resource: str, obj: Message) -> str:
    """The work item of an object: "resource/namespace/name"."""
    return f"{resource}/{obj.metadata.namespace}/{obj.metadata.name}"


def split_item(key: str) -> tuple[str, str, str]:
    """(resource, namespace, name) of a work item made by ``item_key``."""
    resource, _, rest = key.partition("/")
    return resource, *split_key(rest)


def _marked(obj: Message, finalizer: str) -> bool:
    return obj.metadata.HasField("deletion_timestamp") and finalizer in obj.metadata.finalizers


class GarbageCollector(Controller):
    """Deletes dependents of gone owners; Foreground and Orphan deletion (module docstring).

    Args:
        registry: The registry deletions and reference changes go through.
        informers: The shared informers (one per dependent kind, indexed by owner uid).
        metrics: The work queue's metrics.
        clock: Unused beyond the common constructor (deletions carry the registry's clock).
    """

    name = "garbagecollector"
    workers = 4

    def __init__(
        self,
        registry: Registry,
        informers: InformerFactory,
        metrics: WorkQueueMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(informers=informers, metrics=metrics)
        self._registry = registry
        self._clock = clock
        self._unknown_kinds: set[tuple[str, str]] = set()
        self._by_resource: dict[str, Informer] = {}
        for resource in DEPENDENT_RESOURCES:
            informer = self.informer(resource, {OWNERS_INDEX: by_owner_uids})
            self._by_resource[resource] = informer
            informer.add_handler(self._handler(resource))

    # ---- events -> work items ----

    def _handler(self, resource: str) -> Callable[[Message | None, Message | None], None]:
        def changed(old: Message | None, new: Message | None) -> None:
            if old is not None and new is not None and old.metadata.uid != new.metadata.uid:
                changed(old, None)  # deleted and recreated under the same name (a relist)
                changed(None, new)
                return
            if new is None:
                self._enqueue_dependents(old.metadata.uid)
                self._enqueue_owners(old)  # a foreground owner may wait for this one
                return
            meta = new.metadata
            if old is not None:
                before = old.metadata
                if before.owner_references != meta.owner_references:
                    self._enqueue_owners(old)  # released: an owner may wait for one less
                elif (before.HasField("deletion_timestamp") == meta.HasField("deletion_timestamp")
                      and before.finalizers == meta.finalizers):
                    return  # nothing the collector decides on changed (a status update)
            if meta.owner_references or (meta.HasField("deletion_timestamp") and meta.finalizers):
                self.enqueue(item_key(resource, new))

        return changed

    def _enqueue_dependents(self, uid: str) -> None:
        for resource, dependent in self._dependents(uid):
            self.enqueue(item_key(resource, dependent))

    def _enqueue_owners(self, obj: Message) -> None:
        for ref in obj.metadata.owner_references:
            kind = kind_of_type(ref.api_version, ref.kind)
            if kind is not None and kind.resource in self._by_resource:
                self.enqueue(f"{kind.resource}/{obj.metadata.namespace}/{ref.name}")

    def _dependents(self, uid: str) -> Iterator[tuple[str, Message]]:
        for resource, informer in self._by_resource.items():
            for dependent in informer.by_index(OWNERS_INDEX, uid):
                yield resource, dependent

    # ---- sync ----

    async def sync(self, key: str) -> None:
        resource, namespace, name = split_item(key)
        informer = self._by_resource.get(resource)
        obj = informer.get(namespace, name) if informer is not None else None
        if obj is None:
            return
        owner_kind = resource in self._registry.workloads  # the kinds deletion propagation marks
        if owner_kind and _marked(obj, FOREGROUND_FINALIZER):
            await self._delete_dependents(resource, obj)
        elif owner_kind and _marked(obj, ORPHAN_FINALIZER):
            await self._orphan_dependents(resource, obj)
        elif obj.metadata.owner_references and not obj.metadata.HasField("deletion_timestamp"):
            await self._check_owners(resource, obj)

    async def _delete_dependents(self, resource: str, owner: Message) -> None:
        """Foreground: each dependent's sync deletes it (its owner waits); the finalizer goes
        once no blocking dependent is left."""
        uid = owner.metadata.uid
        blocking = 0
        for dep_resource, dependent in self._dependents(uid):
            if not dependent.metadata.HasField("deletion_timestamp"):
                self.enqueue(item_key(dep_resource, dependent))
            refs = dependent.metadata.owner_references
            if any(ref.uid == uid and ref.block_owner_deletion for ref in refs):
                blocking += 1
        if blocking:
            log.debug("garbage collector waiting for dependents owner=%s blocking=%d",
                      item_key(resource, owner), blocking)
            return
        await self._registry.workloads[resource].remove_finalizer(
            owner.metadata.namespace, owner.metadata.name, uid, FOREGROUND_FINALIZER)
        log.info("garbage collector: dependents deleted, finalizer removed owner=%s",
                 item_key(resource, owner))

    async def _orphan_dependents(self, resource: str, owner: Message) -> None:
        """Orphan: the owner's reference comes off every dependent, then the finalizer."""
        uid = owner.metadata.uid
        for dep_resource, dependent in list(self._dependents(uid)):
            await self._remove_references(dep_resource, dependent, {uid})
        await self._registry.workloads[resource].remove_finalizer(
            owner.metadata.namespace, owner.metadata.name, uid, ORPHAN_FINALIZER)
        log.info("garbage collector: dependents orphaned, finalizer removed owner=%s",
                 item_key(resource, owner))

    async def _check_owners(self, resource: str, obj: Message) -> None:
        states: dict[str, list[str]] = {SOLID: [], DANGLING: [], WAITING: []}
        for ref in obj.metadata.owner_references:
            states[self._owner_state(ref, obj.metadata.namespace)].append(ref.uid)
        if not states[DANGLING] and not states[WAITING]:
            return
        if states[SOLID]:
            await self._remove_references(resource, obj, {*states[DANGLING], *states[WAITING]})
            return
        await self._delete(resource, obj, FOREGROUND if states[WAITING] else BACKGROUND)

    def _owner_state(self, ref: Message, namespace: str) -> str:
        """SOLID (present), DANGLING (gone) or WAITING (being deleted Foreground)."""
        kind = kind_of_type(ref.api_version, ref.kind)
        if kind is None:
            if (ref.api_version, ref.kind) not in self._unknown_kinds:
                self._unknown_kinds.add((ref.api_version, ref.kind))
                log.warning("garbage collector: owner of an unknown kind, dependents left alone "
                            "apiVersion=%s kind=%s", ref.api_version, ref.kind)
            return SOLID
        owner_namespace = namespace if kind.namespaced else ""
        informer = self._by_resource.get(kind.resource)
        owner = informer.get(owner_namespace, ref.name) if informer is not None else None
        if owner is None or owner.metadata.uid != ref.uid:
            try:  # the informer may lag behind the store: ask the store before deleting anything
                owner = self._registry.of(kind.resource).get(owner_namespace, ref.name)
            except NotFound:
                return DANGLING
            if owner.metadata.uid != ref.uid:
                return DANGLING
        return WAITING if _marked(owner, FOREGROUND_FINALIZER) else SOLID

    async def _remove_references(self, resource: str, obj: Message, uids: set[str]) -> None:
        meta = obj.metadata
        try:
            await self._registry.of(resource).update_owner_references(
                meta.namespace, meta.name, meta.uid,
                lambda refs: [ref for ref in refs if ref.uid not in uids])
        except NotFound:
            return
        log.info("garbage collector removed owner references object=%s owners=%s", item_key(resource, obj),
                 ",".join(sorted(uids)))

    async def _delete(self, resource: str, obj: Message, policy: str) -> None:
        meta = obj.metadata
        registry = self._registry.of(resource)
        try:
            if registry.get(meta.namespace, meta.name).metadata.uid != meta.uid:
                return  # replaced by another object of the same name meanwhile
            if resource == "pods":
                await self._registry.pods.delete(meta.namespace, meta.name)
            elif resource in self._registry.workloads:
                await self._registry.workloads[resource].delete_propagating(meta.namespace, meta.name, policy)
            else:
                await registry.delete(meta.namespace, meta.name)
        except NotFound:
            return
        log.info("garbage collector deleted object=%s reason=%s", item_key(resource, obj),
                 "owner-deleting-foreground" if policy == FOREGROUND else "owners-gone")
