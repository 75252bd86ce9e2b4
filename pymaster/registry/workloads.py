"""The registry of the workload kinds (ReplicaSet, Deployment, DaemonSet, Job; kube-apiserver's
``pkg/registry/apps`` and ``pkg/registry/batch`` strategies), one class for the four:

- create: defaults (``pymaster.api.workloads``), a Job's generated selector, validation of the
  object and of its pod template as a pod (``pymaster.api.workload_validation``, with the
  master's admission policy), generation 1;
- update (and apply): labels, annotations and spec from the request (the selector, and a Job's
  template and completions, are immutable), status and the server's fields kept; the generation
  goes up when the spec changes, which is what the controllers' ``observedGeneration`` follows;
- status: written by the controllers only (``update_status``), never by a user's update;
- ``scale``: the /scale subresource of Deployments and ReplicaSets (read or set spec.replicas);
- delete with a ``propagationPolicy``: Background (the default) removes the object at once and
  the garbage collector deletes its dependents; Foreground and Orphan mark it (deletionTimestamp)
  with the ``foregroundDeletion`` or ``orphan`` finalizer, and the garbage collector removes the
  finalizer once the dependents are gone or released, which removes the object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.conditions import timestamp
from pymaster.api.errors import NotFound, ValidationError
from pymaster.api.kinds import DEPLOYMENTS, REPLICA_SETS, Kind
from pymaster.api.workload_validation import validate_workload, validate_workload_update
from pymaster.api.workloads import WorkloadMessage, default_workload, label_job, selector_string
from pymaster.registry.base import (
    UserObjectRegistry,
    conflict,
    merge_user_update,
    namespace_or_default,
    prepare_new_metadata,
)
from pymaster.store.base import Store

log = logging.getLogger(__name__)

BACKGROUND = "Background"
FOREGROUND = "Foreground"
ORPHAN = "Orphan"
PROPAGATION_POLICIES = (BACKGROUND, FOREGROUND, ORPHAN)
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
SCALABLE = (DEPLOYMENTS.resource, REPLICA_SETS.resource)


def check_propagation_policy(policy: str) -> str:
    """A request's propagationPolicy, "" meaning Background.

    Raises:
        ValidationError: on ``propagationPolicy``: not one of the three.
    """
    if policy and policy not in PROPAGATION_POLICIES:
        supported = ", ".join(f'"{p}"' for p in PROPAGATION_POLICIES)
        raise ValidationError("propagationPolicy",
                              f'Unsupported value: "{policy}": supported values: {supported}')
    return policy or BACKGROUND


class WorkloadRegistry(UserObjectRegistry):
    """One workload kind's registry.

    Args:
        store: The store.
        kind: One of ``pymaster.api.kinds.WORKLOADS``.
        admission: The master's admission policy, applied to the pod template at create and
            update (the pods are checked again when the controller creates them).
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(
        self,
        store: Store,
        kind: Kind,
        admission: AdmissionPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(store, kind, clock)
        self._admission = admission or AdmissionPolicy()

    def prepare_create(self, obj: Message, uid: str, now: float) -> None:
        default_workload(obj)
        prepare_new_metadata(obj.metadata, uid, now)
        obj.metadata.generation = 1
        obj.ClearField("status")
        if self.kind.kind == "Job":
            label_job(obj)
        validate_workload(obj, self._admission)

    def prepare_update(self, current: Message, request: Message) -> Message | None:
        desired = type(request)()
        desired.CopyFrom(request)
        desired.metadata.namespace = current.metadata.namespace
        default_workload(desired)
        if self.kind.kind == "Job" and not desired.spec.manual_selector:
            # The generated selector and labels are the server's: keep them as they are.
            desired.spec.selector.CopyFrom(current.spec.selector)
            desired.spec.template.metadata.labels.update(current.spec.template.metadata.labels)
        desired.metadata.uid = current.metadata.uid
        validate_workload(desired, self._admission)
        validate_workload_update(current, desired)
        merged = merge_user_update(current, desired)
        return None if merged == current else merged

    # ---- the controllers ----

    async def update_status(
        self, namespace: str, name: str, uid: str, change: Callable[[Message], bool]
    ) -> Message:
        """Applies ``change(obj)`` (it edits ``obj.status`` in place and returns whether anything
        changed) to the stored object with this uid, writing only on a change.

        Raises:
            NotFound: the object is gone (or was replaced by another of the same name).
        """

        def update(current: Message) -> Message | None:
            if current.metadata.uid != uid:
                raise NotFound(f'{self.kind.resource} "{name}" not found')
            return current if change(current) else None

        return await self._store.mutate(self.kind.resource, namespace, name, update)

    async def remove_finalizer(self, namespace: str, name: str, uid: str, finalizer: str) -> Message | None:
        """Takes ``finalizer`` off the object; the object goes when it was the last one on an
        object marked for deletion. Returns the object as stored, or None once removed."""

        def remove(current: Message) -> Message | None:
            if current.metadata.uid != uid or finalizer not in current.metadata.finalizers:
                return None
            current.metadata.finalizers.remove(finalizer)
            return current

        try:
            obj = await self._store.mutate(self.kind.resource, namespace, name, remove)
        except NotFound:
            return None
        meta = obj.metadata
        if meta.uid != uid or meta.finalizers or not meta.HasField("deletion_timestamp"):
            return obj
        try:
            await self._store.delete(self.kind.resource, namespace, name, uid=uid)
        except NotFound:
            pass
        log.info("%s deleted namespace=%s name=%s (finalizers done)", self.kind.singular, namespace, name)
        return None

    # ---- users ----

    async def delete_propagating(self, namespace: str, name: str, policy: str) -> Message:
        """Deletes with a propagationPolicy (see the module docstring); returns the object as
        removed or as marked."""
        policy = check_propagation_policy(policy)
        if policy == BACKGROUND:
            return await self.delete(namespace, name)
        self.check_key(namespace, name)
        finalizer = FOREGROUND_FINALIZER if policy == FOREGROUND else ORPHAN_FINALIZER
        now = self._clock()

        def mark(current: Message) -> Message | None:
            meta = current.metadata
            if meta.HasField("deletion_timestamp") and finalizer in meta.finalizers:
                return None
            if not meta.HasField("deletion_timestamp"):
                meta.deletion_timestamp.CopyFrom(timestamp(now))
                meta.deletion_grace_period_seconds = 0
            for other in (FOREGROUND_FINALIZER, ORPHAN_FINALIZER):
                if other in meta.finalizers:
                    meta.finalizers.remove(other)
            meta.finalizers.append(finalizer)
            return current

        marked = await self._store.mutate(self.kind.resource, namespace_or_default(namespace), name, mark)
        log.info("%s marked for deletion namespace=%s name=%s propagation=%s", self.kind.singular,
                 marked.metadata.namespace, name, policy)
        return marked

    async def scale(
        self, namespace: str, name: str, replicas: int | None, resource_version: str = ""
    ) -> objects_pb2.Scale:
        """The /scale subresource: reads spec.replicas, or sets it (``replicas`` not None).

        Raises:
            ValidationError: a kind without /scale, or negative replicas; NotFound; Conflict:
                ``resource_version`` set and stale.
        """
        if self.kind.resource not in SCALABLE:
            raise ValidationError("resource", f"{self.kind.resource} have no scale subresource; "
                                              f"supported: {', '.join(SCALABLE)}")
        self.check_key(namespace, name)
        if replicas is not None and replicas < 0:
            raise ValidationError("spec.replicas",
                                  f"Invalid value: {replicas}: must be greater than or equal to 0")
        namespace = namespace_or_default(namespace)
        if replicas is None:
            obj = self.get(namespace, name)
        else:

            def rescale(current: Message) -> Message | None:
                if resource_version and current.metadata.resource_version != resource_version:
                    raise conflict(self.kind, name)
                if current.spec.replicas == replicas:
                    return None
                current.spec.replicas = replicas
                current.metadata.generation += 1
                return current

            obj = await self._store.mutate(self.kind.resource, namespace, name, rescale)
            log.info("%s scaled namespace=%s name=%s replicas=%d", self.kind.singular, namespace, name,
                     replicas)
        return scale_of(obj)


def scale_of(obj: WorkloadMessage) -> objects_pb2.Scale:
    """The autoscaling/v1 Scale of a Deployment or ReplicaSet."""
    scale = objects_pb2.Scale(api_version="autoscaling/v1", kind="Scale")
    meta, source = scale.metadata, obj.metadata
    meta.name, meta.namespace, meta.uid = source.name, source.namespace, source.uid
    meta.resource_version = source.resource_version
    meta.creation_timestamp.CopyFrom(source.creation_timestamp)
    scale.spec.replicas = obj.spec.replicas
    scale.status.replicas = obj.status.replicas
    scale.status.selector = selector_string(obj.spec.selector)
    return scale
