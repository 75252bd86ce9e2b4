"""The Secret registry (kube-apiserver's ``pkg/registry/core/secret``): a Secret is written by
users only; create, apply, update and delete (at once) are the generic ones of
``UserObjectRegistry``, with these rules:

- ``stringData`` is write-only: merged into ``data`` (its values win) at create and update, and
  never stored, so a read never shows it (as in Kubernetes);
- create: defaults (apiVersion, kind, namespace, type ``Opaque``), validation
  (``pymaster.api.config_validation``), then what the server owns (uid, creationTimestamp);
- update (and apply): labels, annotations, data and immutable come from the request, as a
  Kubernetes update replaces them; the type never changes and an immutable Secret keeps its data.

Secrets are encrypted at rest by the store (``pymaster.store.encryption``): this registry sees
them as plain messages. Logs name Secrets, never their values.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.config_validation import OPAQUE, merged_data, validate_secret, validate_secret_update
from pymaster.api.kinds import SECRETS
from pymaster.registry.base import DEFAULT_NAMESPACE, UserObjectRegistry, prepare_new_metadata
from pymaster.store.base import Store


def default_secret(secret: objects_pb2.Secret) -> None:
    """apiVersion v1, kind Secret, namespace "default", type Opaque, in place."""
    secret.api_version = secret.api_version or "v1"
    secret.kind = secret.kind or "Secret"
    secret.metadata.namespace = secret.metadata.namespace or DEFAULT_NAMESPACE
    secret.type = secret.type or OPAQUE


def fold_string_data(secret: objects_pb2.Secret) -> None:
    """``stringData`` merged into ``data`` and cleared, in place (validate first: the keys of
    stringData are judged under their own path)."""
    data = merged_data(secret)
    secret.ClearField("data")
    secret.data.update(data)
    secret.ClearField("string_data")


def prepare_create(secret: objects_pb2.Secret, uid: str, now: float) -> None:
    """A user's Secret made the one to store, in place.

    Raises:
        ValidationError: naming the field.
    """
    default_secret(secret)
    validate_secret(secret)
    fold_string_data(secret)
    prepare_new_metadata(secret.metadata, uid, now)


def prepare_update(current: objects_pb2.Secret, request: objects_pb2.Secret) -> objects_pb2.Secret | None:
    """The Secret to store for a user's update, or None when it changes nothing.

    Raises:
        ValidationError: an invalid Secret, a new type, or a change an immutable one forbids.
    """
    desired = objects_pb2.Secret()
    desired.CopyFrom(request)
    default_secret(desired)
    validate_secret(desired)
    validate_secret_update(current, desired)
    fold_string_data(desired)
    merged = objects_pb2.Secret()
    merged.CopyFrom(current)
    merged.ClearField("data")
    merged.ClearField("immutable")
    merged.metadata.ClearField("labels")
    merged.metadata.ClearField("annotations")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.annotations.update(desired.metadata.annotations)
    merged.data.update(desired.data)
    if desired.HasField("immutable"):
        merged.immutable = desired.immutable
    return None if merged == current else merged


class SecretRegistry(UserObjectRegistry):
    """Writes of Secrets (see the module docstring)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        super().__init__(store, SECRETS, clock)

    def prepare_create(self, obj: objects_pb2.Secret, uid: str, now: float) -> None:
        prepare_create(obj, uid, now)

    def prepare_update(
        self, current: objects_pb2.Secret, request: objects_pb2.Secret
    ) -> objects_pb2.Secret | None:
        return prepare_update(current, request)
