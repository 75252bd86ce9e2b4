"""The ConfigMap registry (kube-apiserver's ``pkg/registry/core/configmap``): a ConfigMap is
written by users only; create, apply, update and delete (at once) are the generic ones of
``UserObjectRegistry``, with these rules:

- create: defaults (apiVersion, kind, namespace), validation (``pymaster.api.config_validation``),
  then what the server owns (uid, creationTimestamp);
- update (and apply): labels, annotations, data, binaryData and immutable come from the request,
  as a Kubernetes update replaces them; an immutable ConfigMap keeps its data
  (``field is immutable when `immutable` is set``).

The pure rules (``default_config_map``, ``prepare_create``, ``prepare_update``) are module
functions, tested on their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.config_validation import validate_config_map, validate_config_map_update
from pymaster.api.kinds import CONFIG_MAPS
from pymaster.registry.base import DEFAULT_NAMESPACE, UserObjectRegistry, prepare_new_metadata
from pymaster.store.base import Store


def default_config_map(config_map: objects_pb2.ConfigMap) -> None:
    """apiVersion v1, kind ConfigMap, namespace "default", in place."""
    config_map.api_version = config_map.api_version or "v1"
    config_map.kind = config_map.kind or "ConfigMap"
    config_map.metadata.namespace = config_map.metadata.namespace or DEFAULT_NAMESPACE


def prepare_create(config_map: objects_pb2.ConfigMap, uid: str, now: float) -> None:
    """A user's ConfigMap made the one to store, in place.

    Raises:
        ValidationError: naming the field.
    """
    default_config_map(config_map)
    validate_config_map(config_map)
    prepare_new_metadata(config_map.metadata, uid, now)


def prepare_update(
    current: objects_pb2.ConfigMap, request: objects_pb2.ConfigMap
) -> objects_pb2.ConfigMap | None:
    """The ConfigMap to store for a user's update, or None when it changes nothing.

    Raises:
        ValidationError: an invalid ConfigMap, or a change an immutable one forbids.
    """
    desired = objects_pb2.ConfigMap()
    desired.CopyFrom(request)
    default_config_map(desired)
    merged = objects_pb2.ConfigMap()
    merged.CopyFrom(current)
    for field in ("data", "binary_data", "immutable"):
        merged.ClearField(field)
    merged.metadata.ClearField("labels")
    merged.metadata.ClearField("annotations")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.annotations.update(desired.metadata.annotations)
    merged.data.update(desired.data)
    merged.binary_data.update(desired.binary_data)
    if desired.HasField("immutable"):
        merged.immutable = desired.immutable
    validate_config_map(merged)
    validate_config_map_update(current, merged)
    return None if merged == current else merged


class ConfigMapRegistry(UserObjectRegistry):
    """Writes of ConfigMaps (see the module docstring)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        super().__init__(store, CONFIG_MAPS, clock)

    def prepare_create(self, obj: objects_pb2.ConfigMap, uid: str, now: float) -> None:
        prepare_create(obj, uid, now)

    def prepare_update(
        self, current: objects_pb2.ConfigMap, request: objects_pb2.ConfigMap
    ) -> objects_pb2.ConfigMap | None:
        return prepare_update(current, request)
