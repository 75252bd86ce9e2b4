"""Validation of a pod's volumes (``spec.volumes``) with Kubernetes' rules and field paths: exactly
one source per volume; hostPath and emptyDir; the key-to-path items of configMap and secret
volumes; downwardAPI files; projected volumes. ``validation.validate_pod`` calls
``check_volumes``; a container's ``volumeMounts`` are ``container_validation``'s.

Stricter than Kubernetes where the kubelet would only fail later (honour or refuse):
- two files of one volume may not land on one path, nor one inside the other ("a" and "a/b"),
  whatever source they come from (Kubernetes checks duplicates across projected sources only);
- a ``resourceFieldRef.containerName`` must name a container of the pod;
- ConfigMap and Secret names must be DNS subdomains (the names such objects can have);
- a projected source must name its kind, and ``serviceAccountToken`` is refused: pykube has no
  service accounts (nor tokens to project) yet.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    MAX_PATH_BYTES,
    check_absolute_path,
    check_count,
    check_dns_label,
    check_dns_subdomain,
    check_enum,
    check_qualified_name,
    quote,
)
from pymaster.api.env_validation import CONTAINER_RESOURCE_FIELDS, check_divisor
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import parse_quantity

HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate")
EMPTY_DIR_MEDIA = ("", "Memory")
MAX_FILE_MODE = 0o777
MAX_ITEMS = 1024  # files of one volume (items of a source, or of all projected sources)
MAX_SOURCES = 64  # sources of one projected volume
MAX_FILE_NAME_BYTES = 255  # one element of a file's path (the kubelet's atomic writer's limit)
# The pod fields a downwardAPI volume file may show (Kubernetes: metadata only; the status and
# spec fields change or exist only for env).
VOLUME_FIELD_PATHS = (
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
)
_FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
_SUBSCRIPTED = re.compile(r"(metadata\.labels|metadata\.annotations)\['(.*)'\]", re.DOTALL)


def check_local_path(path: str, value: str) -> None:
    """A path inside a volume (``items[].path``, a downwardAPI file's path), as Kubernetes'
    ValidateLocalNonReservedPath and the kubelet's atomic writer check it: relative, no ``..``
    element, not starting with ``..`` (the writer's own names), elements of at most 255 bytes."""
    if not value:
        raise ValidationError(path, "required")
    check_relative_path(path, value)
    if value.startswith(".."):
        raise ValidationError(path, f"invalid value {quote(value)}: must not start with '..'")
    if any(len(element.encode()) > MAX_FILE_NAME_BYTES for element in value.split("/")):
        raise ValidationError(
            path, f"invalid value {quote(value)}: file names must have at most {MAX_FILE_NAME_BYTES} bytes"
        )


def check_relative_path(path: str, value: str) -> None:
    """A path below a directory (a subPath, a file of a volume): relative, without ``..``
    elements (Kubernetes' validateLocalDescendingPath), no NUL, at most ``MAX_PATH_BYTES``."""
    if len(value.encode()) > MAX_PATH_BYTES:
        raise ValidationError(path, f"too long: must have at most {MAX_PATH_BYTES} bytes")
    if "\x00" in value:
        raise ValidationError(path, "must not contain a NUL character")
    if value.startswith("/"):
        raise ValidationError(path, f"invalid value {quote(value)}: must be a relative path")
    if ".." in value.split("/"):
        raise ValidationError(path, f"invalid value {quote(value)}: must not contain '..'")


def _check_mode(path: str, message: Message, field: str = "mode") -> None:
    """``mode`` (or ``defaultMode``) of ``message``: unset, or 0 to 0777."""
    snake = "default_mode" if field == "defaultMode" else "mode"
    if message.HasField(snake) and not 0 <= getattr(message, snake) <= MAX_FILE_MODE:
        raise ValidationError(f"{path}.{field}", f"invalid value {getattr(message, snake)}: {_FILE_MODE_MSG}")


class _Paths:
    """The files of one volume so far: no two on one path, none inside another."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def add(self, path: str, value: str) -> None:
        clean = posixpath.normpath(value)
        if clean in self._seen:
            raise ValidationError(path, f"conflicting duplicate paths {quote(value)}")
        parts = clean.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._seen:
                parent = quote("/".join(parts[:i]))
                raise ValidationError(path, f"invalid value {quote(value)}: {parent} is a file")
        prefix = clean + "/"
        if any(other.startswith(prefix) for other in self._seen):
            raise ValidationError(path, f"invalid value {quote(value)}: other files are inside it")
        self._seen.add(clean)


def _check_items(path: str, items: Sequence[objects_pb2.KeyToPath], paths: _Paths) -> None:
    check_count(path, items, MAX_ITEMS, "items")
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        if not item.key:
            raise ValidationError(f"{p}.key", "required")
        check_local_path(f"{p}.path", item.path)
        _check_mode(p, item)
        paths.add(f"{p}.path", item.path)


def _check_object_name(path: str, name: str) -> None:
    if not name:
        raise ValidationError(path, "required")
    check_dns_subdomain(path, name)


def _check_field_ref(path: str, ref: objects_pb2.ObjectFieldSelector) -> None:
    check_enum(f"{path}.apiVersion", ref.api_version, ("v1",))
    field_path = ref.field_path
    if not field_path:
        raise ValidationError(f"{path}.fieldPath", "required")
    subscripted = _SUBSCRIPTED.fullmatch(field_path)
    if subscripted is not None:
        key = subscripted[2]
        # Kubernetes lowercases annotation keys for this check only (they are case-sensitive).
        check_qualified_name(f"{path}.fieldPath", key.lower() if "annotations" in subscripted[1] else key)
    elif field_path not in VOLUME_FIELD_PATHS:
        raise ValidationError(
            f"{path}.fieldPath",
            f"unsupported value {quote(field_path)}; supported: {', '.join(VOLUME_FIELD_PATHS)}, "
            "metadata.labels['<KEY>'], metadata.annotations['<KEY>'] (a downwardAPI volume shows "
            "metadata only; use env for the others)",
        )


def _check_resource_ref(path: str, ref: objects_pb2.ResourceFieldSelector, containers: set[str]) -> None:
    if not ref.container_name:
        raise ValidationError(f"{path}.containerName", "required")
    if ref.container_name not in containers:
        message = f"container {quote(ref.container_name)} not found in the pod"
        raise ValidationError(f"{path}.containerName", message)
    check_enum(f"{path}.resource", ref.resource, CONTAINER_RESOURCE_FIELDS, required=True)
    if ref.divisor:
        check_divisor(f"{path}.divisor", ref.resource, ref.divisor)


def _check_downward_files(
    path: str, items: Sequence[objects_pb2.DownwardAPIVolumeFile], paths: _Paths, containers: set[str]
) -> None:
    check_count(path, items, MAX_ITEMS, "items")
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        check_local_path(f"{p}.path", item.path)
        has_field, has_resource = item.HasField("field_ref"), item.HasField("resource_field_ref")
        if has_field and has_resource:
            raise ValidationError(p, "fieldRef and resourceFieldRef can not be specified simultaneously")
        if has_field:
            _check_field_ref(f"{p}.fieldRef", item.field_ref)
        elif has_resource:
            _check_resource_ref(f"{p}.resourceFieldRef", item.resource_field_ref, containers)
        else:
            raise ValidationError(p, "one of fieldRef and resourceFieldRef is required")
        _check_mode(p, item)
        paths.add(f"{p}.path", item.path)


def _check_projected(path: str, source: objects_pb2.ProjectedVolumeSource, containers: set[str]) -> None:
    _check_mode(path, source, "defaultMode")
    check_count(f"{path}.sources", source.sources, MAX_SOURCES, "sources")
    paths = _Paths()
    for i, projection in enumerate(source.sources):
        p = f"{path}.sources[{i}]"
        kinds = [field.json_name for field, _ in projection.ListFields()]
        if not kinds:
            raise ValidationError(p, "must specify one of configMap, secret, downwardAPI")
        if len(kinds) > 1:
            raise ValidationError(p, "may not specify more than 1 volume type")
        if projection.HasField("service_account_token"):
            raise ValidationError(
                f"{p}.serviceAccountToken", "not supported: pykube has no service accounts (nor tokens) yet"
            )
        if projection.HasField("config_map"):
            _check_object_name(f"{p}.configMap.name", projection.config_map.name)
            _check_items(f"{p}.configMap.items", projection.config_map.items, paths)
        elif projection.HasField("secret"):
            _check_object_name(f"{p}.secret.name", projection.secret.name)
            _check_items(f"{p}.secret.items", projection.secret.items, paths)
        else:
            _check_downward_files(f"{p}.downwardAPI.items", projection.downward_api.items, paths, containers)


def _check_host_path(path: str, source: objects_pb2.HostPathVolumeSource) -> None:
    check_absolute_path(f"{path}.path", source.path)
    if ".." in source.path.split("/"):
        # Kubernetes' rule too: a prefix check of the admission policy must not be escapable.
        raise ValidationError(f"{path}.path", f"invalid value {quote(source.path)}: must not contain '..'")
    check_enum(f"{path}.type", source.type, HOST_PATH_TYPES[1:])


def _check_empty_dir(path: str, source: objects_pb2.EmptyDirVolumeSource) -> None:
    check_enum(f"{path}.medium", source.medium, EMPTY_DIR_MEDIA[1:])
    if source.size_limit:
        try:
            size = parse_quantity(source.size_limit)
        except ValueError:
            message = f"invalid quantity {quote(source.size_limit)}"
            raise ValidationError(f"{path}.sizeLimit", message) from None
        if size <= 0:
            # Stricter than Kubernetes (>= 0): a tmpfs of size 0 would be an unlimited one.
            raise ValidationError(
                f"{path}.sizeLimit", f"invalid value {quote(source.size_limit)}: must be greater than 0"
            )


def _check_source(p: str, volume: objects_pb2.Volume, containers: set[str]) -> None:
    if volume.HasField("host_path"):
        _check_host_path(f"{p}.hostPath", volume.host_path)
    elif volume.HasField("empty_dir"):
        _check_empty_dir(f"{p}.emptyDir", volume.empty_dir)
    elif volume.HasField("config_map"):
        _check_object_name(f"{p}.configMap.name", volume.config_map.name)
        _check_mode(f"{p}.configMap", volume.config_map, "defaultMode")
        _check_items(f"{p}.configMap.items", volume.config_map.items, _Paths())
    elif volume.HasField("secret"):
        _check_object_name(f"{p}.secret.secretName", volume.secret.secret_name)
        _check_mode(f"{p}.secret", volume.secret, "defaultMode")
        _check_items(f"{p}.secret.items", volume.secret.items, _Paths())
    elif volume.HasField("downward_api"):
        _check_mode(f"{p}.downwardAPI", volume.downward_api, "defaultMode")
        _check_downward_files(f"{p}.downwardAPI.items", volume.downward_api.items, _Paths(), containers)
    else:
        _check_projected(f"{p}.projected", volume.projected, containers)


def check_volumes(volumes: Sequence[objects_pb2.Volume], container_names: Iterable[str]) -> None:
    """Check ``spec.volumes``.

    Args:
        volumes: the pod's volumes.
        container_names: the names of the pod's containers, init containers included (what a
            downwardAPI ``resourceFieldRef.containerName`` may name).

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    containers = set(container_names)
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        p = f"spec.volumes[{i}]"
        if not volume.name:
            raise ValidationError(f"{p}.name", "required")
        check_dns_label(f"{p}.name", volume.name)
        if volume.name in names:
            raise ValidationError(f"{p}.name", f"duplicate name {quote(volume.name)}")
        names.add(volume.name)
        sources = [field.json_name for field, _ in volume.ListFields() if field.name != "name"]
        if len(sources) != 1:
            raise ValidationError(p, "exactly one volume source is required")
        _check_source(p, volume, containers)
