"""What ``apply`` keeps of an object's labels and annotations, as kubectl's apply does.

An applied object carries kubectl's record of the manifest last applied to it, the annotation
``kubectl.kubernetes.io/last-applied-configuration`` (the object as sent, one line of JSON). A
later apply merges labels and annotations three ways, as kubectl's: a key in the new manifest
takes its value; a key the last manifest had and this one drops is removed; a key the manifests
never had (set by ``pyctl label``/``annotate``, or by a controller such as the Deployment's
revision) is kept. The rest of the object (the spec, the data) is replaced by what is applied.
A ``get -o yaml`` applied back leaves the object unchanged: the record leaves out what only the
cluster sets.
"""

from __future__ import annotations

import json
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.manifest import to_dict

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

M = TypeVar("M", bound=Message)


def record(request: Message) -> str:
    """The last-applied record of ``request``: the object as sent, without what only the cluster
    sets (uid, resourceVersion, timestamps, generation, status: so ``get -o yaml`` applied back
    is unchanged) and without a record of its own. A Secret's values stay out of it: the
    annotation is stored as it is, not encrypted like the values.

    Raises:
        ValidationError: a value that cannot be written as JSON.
    """
    sent = type(request)()
    sent.CopyFrom(request)
    meta = sent.metadata
    for field in ("uid", "resource_version", "generation", "creation_timestamp", "deletion_timestamp",
                  "deletion_grace_period_seconds", "finalizers"):
        meta.ClearField(field)
    meta.annotations.pop(LAST_APPLIED_ANNOTATION, None)
    if sent.DESCRIPTOR.fields_by_name.get("status") is not None:
        sent.ClearField("status")
    if isinstance(sent, objects_pb2.Secret):
        sent.ClearField("data")
        sent.ClearField("string_data")
    try:
        return json.dumps(to_dict(sent), separators=(",", ":")) + "\n"
    except json_format.Error as err:
        raise ValidationError(f"metadata.annotations[{LAST_APPLIED_ANNOTATION}]",
                              f"Invalid value: the manifest cannot be recorded: {err}") from None


def with_record(request: M, applied: str) -> M:
    """A copy of ``request`` carrying ``applied`` as its last-applied record."""
    obj = type(request)()
    obj.CopyFrom(request)
    obj.metadata.annotations[LAST_APPLIED_ANNOTATION] = applied
    return obj


def merge(current: M, request: M, applied: str) -> M:
    """``request`` with the labels and annotations of the three-way merge over ``current`` (see
    the module docstring) and ``applied`` as its record."""
    merged = with_record(request, applied)
    last = _last_metadata(current)
    for field in ("labels", "annotations"):
        wanted = getattr(merged.metadata, field)
        dropped = set(last.get(field) or {}) - set(wanted)
        for key, value in getattr(current.metadata, field).items():
            if key not in wanted and key not in dropped:
                wanted[key] = value
    return merged


def _last_metadata(current: Message) -> dict:
    """The metadata of the manifest last applied to ``current`` ({} without a readable record)."""
    text = current.metadata.annotations.get(LAST_APPLIED_ANNOTATION, "")
    try:
        last = json.loads(text) if text else {}
    except ValueError:
        return {}  # a record someone edited by hand: treat it as absent, as kubectl does
    metadata = last.get("metadata") if isinstance(last, dict) else None
    return metadata if isinstance(metadata, dict) else {}
