"""Hostile-input limits of the master: bounds the API validation does not set, checked before
anything is stored, so a caller with a valid certificate still cannot make the master store or
serve something huge or unrenderable.

- a pod or node is at most ``MAX_POD_BYTES`` serialized (1 MiB; gRPC itself refuses messages
  over 4 MiB, see ``pymaster.app.MAX_MESSAGE_BYTES``), also after an agent's status
  write (the container count is validation's ``MAX_CONTAINERS``);
- grace periods (pod spec and a delete) are at most ``MAX_GRACE_PERIOD_SECONDS`` (one year),
  so a deletion deadline is always a valid timestamp;
- object names in requests are required and well formed; selectors are at most
  ``MAX_SELECTOR_LENGTH`` characters; tailLines is not negative; floats are finite;
- every timestamp an agent writes is a valid RFC 3339 time, and a pod phase is a known one.

Label/annotation sizes and everything else about a pod's shape are pymaster.api.validation's.
Every check raises ValidationError (INVALID_ARGUMENT) naming the field.
"""

from __future__ import annotations

import math
import re

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.pods import POD_PHASES

MAX_POD_BYTES = 1024 * 1024
MAX_GRACE_PERIOD_SECONDS = 365 * 24 * 3600
MAX_SELECTOR_LENGTH = 4096
MAX_NAME_LENGTH = 253
MAX_NAMESPACE_LENGTH = 63

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_SECONDS = -62_135_596_800
_MAX_TIMESTAMP_SECONDS = 253_402_300_799
_TIMESTAMP = "google.protobuf.Timestamp"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns_subdomain(value: str) -> bool:
    """True for a lowercase RFC 1123 subdomain of at most 253 characters (a node or pod name)."""
    return len(value) <= MAX_NAME_LENGTH and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def check_name(field: str, name: str) -> None:
    """A required object name in a request (pod or node).

    Raises:
        ValidationError: empty, or not an RFC 1123 subdomain.
    """
    if not name:
        raise ValidationError(field, "required")
    if not is_dns_subdomain(name):
        raise ValidationError(
            field,
            f"invalid value {name[:80]!r}: must be a lowercase RFC 1123 subdomain of at most "
            f"{MAX_NAME_LENGTH} characters",
        )


def check_namespace(field: str, namespace: str) -> None:
    """An optional namespace in a request ("" means the default or all namespaces).

    Raises:
        ValidationError: not an RFC 1123 label.
    """
    if namespace and (len(namespace) > MAX_NAMESPACE_LENGTH or not _DNS1123_LABEL.fullmatch(namespace)):
        raise ValidationError(
            field,
            f"invalid value {namespace[:80]!r}: must be a lowercase RFC 1123 label of at most "
            f"{MAX_NAMESPACE_LENGTH} characters",
        )


def check_selectors(label_selector: str, field_selector: str) -> None:
    """Bounds the selector strings before they are parsed.

    Raises:
        ValidationError: on ``labelSelector`` or ``fieldSelector``.
    """
    for field, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)):
        if len(value) > MAX_SELECTOR_LENGTH:
            raise ValidationError(field, f"at most {MAX_SELECTOR_LENGTH} characters")


def check_grace_period(field: str, seconds: int) -> None:
    """A grace period: 0 to one year.

    Raises:
        ValidationError: out of range.
    """
    if seconds < 0:
        raise ValidationError(field, "must be greater than or equal to 0")
    if seconds > MAX_GRACE_PERIOD_SECONDS:
        raise ValidationError(field, f"must be at most {MAX_GRACE_PERIOD_SECONDS} (one year)")


def check_tail_lines(field: str, lines: int) -> None:
    """tailLines of a logs request.

    Raises:
        ValidationError: negative.
    """
    if lines < 0:
        raise ValidationError(field, "must be greater than or equal to 0")


def check_finite(field: str, value: float) -> None:
    """A float that must be a real number (NaN and infinities are refused).

    Raises:
        ValidationError: NaN or infinite.
    """
    if not math.isfinite(value):
        raise ValidationError(field, f"must be a finite number, not {value}")


def check_object_size(kind: str, obj: Message) -> None:
    """An object about to be stored is at most ``MAX_POD_BYTES`` serialized.

    Args:
        kind: "pod" or "node", for the message.

    Raises:
        ValidationError: naming the object.
    """
    size = obj.ByteSize()
    if size > MAX_POD_BYTES:
        name = obj.metadata.name[:MAX_NAME_LENGTH]
        raise ValidationError(
            "", f'{kind} "{name}" is {size} bytes serialized; the limit is {MAX_POD_BYTES} (1 MiB)'
        )


def check_pod_limits(pod: objects_pb2.Pod) -> None:
    """The master's bounds on a pod a user sends (create, apply, update).

    Raises:
        ValidationError: too big, too many containers, an absurd grace period.
    """
    check_object_size("pod", pod)
    if pod.spec.HasField("termination_grace_period_seconds"):
        check_grace_period("spec.terminationGracePeriodSeconds", pod.spec.termination_grace_period_seconds)


def check_pod_status(status: objects_pb2.PodStatus) -> None:
    """A status an agent reports: a known phase and valid timestamps.

    Raises:
        ValidationError: naming the field under ``status``.
    """
    if status.phase and status.phase not in POD_PHASES:
        raise ValidationError(
            "status.phase", f"unsupported value {status.phase[:80]!r}: one of {', '.join(POD_PHASES)}"
        )
    check_timestamps("status", status)


def check_timestamps(path: str, message: Message) -> None:
    """Every google.protobuf.Timestamp set anywhere in ``message`` is within the range RFC 3339
    can express, so that every reader (pyctl's JSON and YAML output) can render it.

    Raises:
        ValidationError: naming the first bad field (JSON names, e.g.
            ``status.containerStatuses[0].state.running.startedAt``).
    """
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        field_path = f"{path}.{field.json_name}" if path else field.json_name
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    check_timestamps(f"{field_path}[{key}]", item)
        elif field.is_repeated:
            for i, item in enumerate(value):
                check_timestamps(f"{field_path}[{i}]", item)
        elif field.message_type.full_name == _TIMESTAMP:
            if not (
                _MIN_TIMESTAMP_SECONDS <= value.seconds <= _MAX_TIMESTAMP_SECONDS
                and 0 <= value.nanos < 1_000_000_000
            ):
                raise ValidationError(field_path, "timestamp out of range (years 0001 to 9999)")
        else:
            check_timestamps(field_path, value)
