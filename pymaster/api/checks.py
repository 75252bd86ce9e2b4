"""The building blocks of validation, shared by every kind: names, labels, annotations,
metadata, type meta, quantities, enums, sizes and paths, each raising ``ValidationError`` with the
field path. A value quoted in a message is cut to ``QUOTE_MAX`` characters so an error always
fits in a gRPC status.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence, Sized

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import parse_quantity

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ANNOTATIONS_MAX_BYTES = 256 * 1024
QUOTE_MAX = 256  # characters of a user's value repeated in an error message

MAX_STRING_BYTES = 64 * 1024  # one command/args entry, env value, workingDir or image
MAX_PATH_BYTES = 4096  # a hostPath or mountPath (Linux' PATH_MAX)
MAX_ARGS = 1000  # entries of a command or an argument list

_LABEL_MSG = "must be a lowercase RFC 1123 label (a-z, 0-9 and '-', starting and ending alphanumeric)"
_SUBDOMAIN_MSG = (
    "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', starting and ending alphanumeric)"
)
_NAME_PART_MSG = (
    "must be at most 63 characters of A-Z, a-z, 0-9, '-', '_' or '.', starting and ending alphanumeric"
)


def key_path(path: str, key: str) -> str:
    """The path of a map entry: ``limits.cpu`` for a plain key, ``labels[app.kubernetes.io/name]``
    when the key itself holds dots, slashes or other characters that would make a dotted path
    ambiguous."""
    if len(key) > QUOTE_MAX:  # a path is repeated in messages: keep it short
        return f"{path}[{key[:QUOTE_MAX]}...]"
    return f"{path}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{path}[{key}]"


def quote(value: str) -> str:
    """Quote a user's value in a message the way Go's %q would, escaping anything unprintable;
    a long value is cut to its first ``QUOTE_MAX`` characters and "..."."""
    if len(value) > QUOTE_MAX:
        return json.dumps(value[:QUOTE_MAX], ensure_ascii=False) + "..."
    return json.dumps(value, ensure_ascii=False)


# ---- generic checks ----


def check_enum(path: str, value: str, allowed: Iterable[str], *, required: bool = False) -> None:
    allowed = tuple(allowed)
    if not value:
        if required:
            raise ValidationError(path, f"required; supported: {', '.join(allowed)}")
        return
    if value not in allowed:
        raise ValidationError(path, f"unsupported value {quote(value)}; supported: {', '.join(allowed)}")


def check_dns_label(path: str, value: str) -> None:
    if len(value) > DNS1123_LABEL_MAX:
        raise ValidationError(path, f"invalid value {quote(value)}: must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        raise ValidationError(path, f"invalid value {quote(value)}: {_LABEL_MSG}")


def check_dns_subdomain(path: str, value: str) -> None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        raise ValidationError(path, f"invalid value {quote(value)}: must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValidationError(path, f"invalid value {quote(value)}: {_SUBDOMAIN_MSG}")


def check_qualified_name(path: str, key: str) -> None:
    """Check a label or annotation key: an optional DNS subdomain prefix and "/", then a name part.

    Raises:
        ValidationError: on ``path``.
    """
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise ValidationError(path, f"invalid key {quote(key)}: prefix part must be non-empty")
        if len(prefix) > DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            raise ValidationError(path, f"invalid key {quote(key)}: prefix part {_SUBDOMAIN_MSG}")
    if not name:
        raise ValidationError(path, f"invalid key {quote(key)}: name part must be non-empty")
    if len(name) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME.fullmatch(name):
        raise ValidationError(path, f"invalid key {quote(key)}: name part {_NAME_PART_MSG}")


def check_label_value(path: str, value: str) -> None:
    """Check a label value: empty, or a name part of at most 63 characters.

    Raises:
        ValidationError: on ``path``.
    """
    if value and (len(value) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME.fullmatch(value)):
        raise ValidationError(path, f"invalid value {quote(value)}: {_NAME_PART_MSG}")


def check_labels(path: str, labels: Mapping[str, str]) -> None:
    for key in sorted(labels):
        entry = key_path(path, key)
        check_qualified_name(entry, key)
        check_label_value(entry, labels[key])


def check_annotations(path: str, annotations: Mapping[str, str]) -> None:
    total = 0
    for key in sorted(annotations):
        check_qualified_name(key_path(path, key), key)
        total += len(key.encode()) + len(annotations[key].encode())
    if total > _ANNOTATIONS_MAX_BYTES:
        raise ValidationError(path, f"too long: must have at most {_ANNOTATIONS_MAX_BYTES} bytes")


def check_metadata(meta: objects_pb2.ObjectMeta, *, namespaced: bool) -> None:
    if not meta.name:
        raise ValidationError("metadata.name", "required")
    check_dns_subdomain("metadata.name", meta.name)
    if namespaced:
        if meta.namespace:
            check_dns_label("metadata.namespace", meta.namespace)
    elif meta.namespace:
        raise ValidationError("metadata.namespace", "not allowed: the object is cluster-scoped")
    check_labels("metadata.labels", meta.labels)
    check_annotations("metadata.annotations", meta.annotations)
    check_owner_references("metadata.ownerReferences", meta.owner_references)
    if meta.finalizers:
        raise ValidationError(
            "metadata.finalizers",
            "not supported: only the garbage collector sets finalizers (delete --cascade=foreground|orphan)",
        )
    if meta.HasField("deletion_grace_period_seconds") and meta.deletion_grace_period_seconds < 0:
        raise ValidationError("metadata.deletionGracePeriodSeconds", "must be greater than or equal to 0")


def check_owner_references(path: str, refs: Sequence[objects_pb2.OwnerReference]) -> None:
    """Each reference names its owner fully (apiVersion, kind, name, uid) and at most one is the
    controller (Kubernetes' ValidateOwnerReferences).

    Raises:
        ValidationError: naming the reference's field.
    """
    controllers = []
    for i, ref in enumerate(refs):
        entry = f"{path}[{i}]"
        for field, value in (("apiVersion", ref.api_version), ("kind", ref.kind), ("name", ref.name),
                             ("uid", ref.uid)):
            if not value:
                raise ValidationError(f"{entry}.{field}", "Required value")
        if ref.controller:
            controllers.append(ref.name)
    if len(controllers) > 1:
        raise ValidationError(
            path, f"Only one reference can have Controller set to true. Found \"true\" in references for "
            f"{', '.join(controllers)}"
        )


def check_type_meta(api_version: str, kind: str, expected_kind: str) -> None:
    if api_version and api_version != "v1":
        raise ValidationError("apiVersion", f"unsupported apiVersion {quote(api_version)}; supported: v1")
    if kind and kind != expected_kind:
        raise ValidationError("kind", f"must be {expected_kind}, not {quote(kind)}")


def check_resource_name(path: str, name: str, known: tuple[str, ...]) -> None:
    if name in known:
        return
    if "/" in name:  # an extended resource: "example.com/foo"
        prefix = name.split("/", 1)[0]
        if "." in prefix:
            check_qualified_name(path, name)
            return
    raise ValidationError(
        path, f"unsupported resource name; supported: {', '.join(known)} or a domain-prefixed name"
    )


def check_quantities(path: str, quantities: Mapping[str, str], known: tuple[str, ...]) -> None:
    for name in sorted(quantities):
        entry = key_path(path, name)
        check_resource_name(entry, name, known)
        value = quantities[name]
        try:
            amount = parse_quantity(value)
        except ValueError:
            raise ValidationError(entry, f"invalid quantity {quote(value)}") from None
        if amount < 0:
            raise ValidationError(entry, f"invalid value {quote(value)}: must be greater than or equal to 0")


def check_count(path: str, items: Sized, limit: int, what: str) -> None:
    if len(items) > limit:
        raise ValidationError(path, f"at most {limit} {what} allowed")


def check_string_size(path: str, value: str, limit: int = MAX_STRING_BYTES) -> None:
    # A character is at most 4 bytes in UTF-8: only a long string needs encoding to be measured.
    if len(value) * 4 > limit and len(value.encode()) > limit:
        raise ValidationError(path, f"too long: must have at most {limit} bytes")


def check_strings(path: str, values: Sequence[str]) -> None:
    check_count(path, values, MAX_ARGS, "entries")
    for k, value in enumerate(values):
        check_string_size(f"{path}[{k}]", value)


def check_absolute_path(path: str, value: str) -> None:
    if not value:
        raise ValidationError(path, "required")
    check_string_size(path, value, MAX_PATH_BYTES)
    if "\x00" in value:
        raise ValidationError(path, "must not contain a NUL character")
    if not value.startswith("/"):
        raise ValidationError(path, f"invalid value {quote(value)}: must be an absolute path")


