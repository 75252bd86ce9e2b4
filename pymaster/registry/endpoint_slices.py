"""The EndpointSlice registry (kube-apiserver's ``pkg/registry/discovery/endpointslice``):
create, apply, update and delete (at once), for users (the slices of a Service without a
selector) and for the EndpointSlice controller alike (its slices carry the
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`` label).

An EndpointSlice has no spec: an update replaces labels, annotations, ownerReferences,
addressType, endpoints and ports; addressType is immutable, as in Kubernetes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.kinds import ENDPOINT_SLICES
from pymaster.api.service_validation import invalid, validate_endpoint_slice
from pymaster.registry.base import DEFAULT_NAMESPACE, UserObjectRegistry, prepare_new_metadata
from pymaster.store.base import Store


def default_endpoint_slice(endpoint_slice: objects_pb2.EndpointSlice) -> None:
    """apiVersion, kind and namespace, in place."""
    endpoint_slice.api_version = endpoint_slice.api_version or ENDPOINT_SLICES.api_version
    endpoint_slice.kind = endpoint_slice.kind or ENDPOINT_SLICES.kind
    endpoint_slice.metadata.namespace = endpoint_slice.metadata.namespace or DEFAULT_NAMESPACE


def prepare_update(
    current: objects_pb2.EndpointSlice, request: objects_pb2.EndpointSlice
) -> objects_pb2.EndpointSlice | None:
    """The slice to store for an update, or None when it changes nothing.

    Raises:
        ValidationError: an invalid slice, or a change of addressType.
    """
    desired = objects_pb2.EndpointSlice()
    desired.CopyFrom(request)
    default_endpoint_slice(desired)
    merged = objects_pb2.EndpointSlice()
    merged.CopyFrom(current)
    merged.metadata.ClearField("labels")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.ClearField("annotations")
    merged.metadata.annotations.update(desired.metadata.annotations)
    for name in ("endpoints", "ports"):
        merged.ClearField(name)
    merged.metadata.ClearField("owner_references")
    merged.metadata.owner_references.extend(desired.metadata.owner_references)
    merged.address_type = desired.address_type
    merged.endpoints.extend(desired.endpoints)
    merged.ports.extend(desired.ports)
    validate_endpoint_slice(merged)
    if merged.address_type != current.address_type:
        raise invalid("addressType", merged.address_type, "field is immutable")
    if merged == current:
        return None
    merged.metadata.generation = current.metadata.generation + 1
    return merged


class EndpointSliceRegistry(UserObjectRegistry):
    """Writes of EndpointSlices (see the module docstring)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        super().__init__(store, ENDPOINT_SLICES, clock)

    def prepare_create(self, obj: objects_pb2.EndpointSlice, uid: str, now: float) -> None:
        default_endpoint_slice(obj)
        validate_endpoint_slice(obj)
        prepare_new_metadata(obj.metadata, uid, now)
        obj.metadata.generation = 1

    def prepare_update(
        self, current: objects_pb2.EndpointSlice, request: objects_pb2.EndpointSlice
    ) -> objects_pb2.EndpointSlice | None:
        return prepare_update(current, request)
