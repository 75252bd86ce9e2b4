"""The Resources service: the generic verbs (create, apply, update, get, list, delete, watch;
and watch with the events that were ready together in one message) on every served kind, each
object in the ``Object`` envelope, and the /scale subresource of Deployments and ReplicaSets.
Thin: the request names a resource, the kinds table (``pymaster.api.kinds``) and the registry of
that kind (``pymaster.registry``) do the rest; errors are ApiErrors the interceptor turns into
statuses, after it authenticated and authorized the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import ValidationError
from pymaster.api.kinds import unwrap, wrap
from pymaster.api.limits import check_namespace, check_selectors
from pymaster.registry import Registry
from pymaster.registry.base import KindRegistry
from pymaster.registry.watch import ObjectFilter
from pymaster.registry.workloads import BACKGROUND, WorkloadRegistry, check_propagation_policy

# A WatchEvents message is closed once its objects pass this size: with one object of at most
# 1.5 MiB more, it stays under gRPC's default 4 MiB limit of what other clients may receive.
MAX_BATCH_BYTES = 1024 * 1024

_EVENT_TYPES = {
    "ADDED": services_pb2.ADDED,
    "MODIFIED": services_pb2.MODIFIED,
    "DELETED": services_pb2.DELETED,
}


def _filter(resource: str, request: services_pb2.ListRequest | services_pb2.WatchRequest) -> ObjectFilter:
    """The request's selection; bad selectors fail before any response is sent."""
    check_namespace("namespace", request.namespace)
    check_selectors(request.label_selector, request.field_selector)
    return ObjectFilter(resource, request.namespace, request.label_selector, request.field_selector)


class ResourcesServicer(services_pb2_grpc.ResourcesServicer):
    """pykube.v1.Resources over the registry."""

    def __init__(self, registry: Registry):
        self._registry = registry

    def _of_object(self, request: objects_pb2.Object) -> tuple[KindRegistry, Message]:
        """The registry of the enveloped object's kind, and the object (its kind's validation
        checks its apiVersion and kind)."""
        kind, obj = unwrap(request)
        return self._registry.of(kind.resource), obj

    async def Create(
        self, request: objects_pb2.Object, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Object:
        registry, obj = self._of_object(request)
        return wrap(await registry.create(obj))

    async def Apply(
        self, request: objects_pb2.Object, context: grpc.aio.ServicerContext
    ) -> services_pb2.ApplyResponse:
        registry, obj = self._of_object(request)
        stored, action = await registry.apply(obj)
        return services_pb2.ApplyResponse(object=wrap(stored), action=action)

    async def Update(
        self, request: objects_pb2.Object, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Object:
        registry, obj = self._of_object(request)
        return wrap(await registry.update(obj))

    async def Get(
        self, request: services_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Object:
        registry = self._registry.of(request.resource)
        registry.check_key(request.namespace, request.name)
        return wrap(registry.get(request.namespace, request.name))

    async def List(
        self, request: services_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ObjectList:
        registry = self._registry.of(request.resource)
        items, rv = registry.list(_filter(request.resource, request))
        return objects_pb2.ObjectList(items=[wrap(obj) for obj in items], resource_version=str(rv))

    async def Delete(
        self, request: services_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Object:
        registry = self._registry.of(request.resource)
        policy = check_propagation_policy(request.propagation_policy)
        if policy != BACKGROUND:
            if isinstance(registry, WorkloadRegistry):
                return wrap(await registry.delete_propagating(request.namespace, request.name, policy))
            # Other kinds carry no finalizers: with nothing owned, every policy is the same delete.
            registry.check_key(request.namespace, request.name)
            owner = registry.get(request.namespace, request.name)
            if self._registry.has_dependents(owner.metadata.namespace, owner.metadata.uid):
                raise ValidationError(
                    "propagationPolicy", f"{policy} is supported for {', '.join(self._registry.workloads)}; "
                    f"delete the dependents of this {registry.kind.singular} first, or use Background"
                )
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        return wrap(await registry.delete(request.namespace, request.name, grace, request.force))

    async def Scale(
        self, request: services_pb2.ScaleRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Scale:
        registry = self._registry.workloads.get(self._registry.of(request.resource).kind.resource)
        if registry is None:
            raise ValidationError("resource", f"{request.resource} have no scale subresource")
        replicas = request.replicas if request.HasField("replicas") else None
        return await registry.scale(request.namespace, request.name, replicas, request.resource_version)

    async def Watch(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.WatchEvent]:
        registry = self._registry.of(request.resource)
        selection = _filter(request.resource, request)
        async for event_type, obj in registry.watch(selection, request.resource_version):
            yield services_pb2.WatchEvent(type=_EVENT_TYPES[event_type], object=wrap(obj))

    async def WatchBatched(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.WatchEvents]:
        registry = self._registry.of(request.resource)
        selection = _filter(request.resource, request)
        async for batch in registry.watch_batches(selection, request.resource_version):
            message, size = services_pb2.WatchEvents(), 0
            for event_type, obj in batch:
                if message.events and size > MAX_BATCH_BYTES:
                    yield message
                    message, size = services_pb2.WatchEvents(), 0
                event = message.events.add(type=_EVENT_TYPES[event_type])
                wrap(obj, into=event.object)
                size += obj.ByteSize()
            yield message

