"""Validation of API objects, with Kubernetes' rules and field paths.

Every check raises ``ValidationError`` naming the field (``spec.containers[0].image: required``);
the first error found is raised, in a fixed order: metadata, then spec fields in declaration
order, map keys sorted. ``validate_pod`` accepts a pod both before and after defaulting
(``pymaster.api.defaults``): fields that defaulting fills (restartPolicy, imagePullPolicy, protocol,
namespace) may be empty.
Status is never validated: the server owns it.

Hostile input: counts and sizes are bounded (``MAX_CONTAINERS`` containers, ``MAX_VOLUMES``
volumes, ``MAX_ENV`` env entries, ``MAX_STRING_BYTES`` per command/args/env string ...), checked
before the elements themselves so a huge pod costs little to refuse, and a value quoted in a
message is cut to ``_QUOTE_MAX`` characters so an error always fits in a gRPC status.

Volumes follow Kubernetes' rules for the two sources pykube supports (hostPath, emptyDir);
``securityContext.privileged`` and ``hostNetwork`` are valid whatever their value: whether they
are allowed is the master's admission policy (and the agent's), not validation.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import parse_quantity

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ANNOTATIONS_MAX_BYTES = 256 * 1024
_QUOTE_MAX = 256  # characters of a user's value repeated in an error message

MAX_CONTAINERS = 64
MAX_VOLUMES = 64
MAX_VOLUME_MOUNTS = 64  # per container
MAX_ENV = 1000  # per container
MAX_ARGS = 1000  # entries of command, and of args, per container
MAX_STRING_BYTES = 64 * 1024  # one command/args entry, env value, workingDir or image
MAX_PATH_BYTES = 4096  # a hostPath or mountPath (Linux' PATH_MAX)

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP")
POD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
NODE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")
HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate")
EMPTY_DIR_MEDIA = ("", "Memory")
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")
CONDITION_STATUSES = ("True", "False", "Unknown")

_IMMUTABLE = "field is immutable (a pod update may only change labels, annotations and container images)"
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
    if len(key) > _QUOTE_MAX:  # a path is repeated in messages: keep it short
        return f"{path}[{key[:_QUOTE_MAX]}...]"
    return f"{path}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{path}[{key}]"


def _q(value: str) -> str:
    """Quote a user's value in a message the way Go's %q would, escaping anything unprintable;
    a long value is cut to its first ``_QUOTE_MAX`` characters and "..."."""
    if len(value) > _QUOTE_MAX:
        return json.dumps(value[:_QUOTE_MAX], ensure_ascii=False) + "..."
    return json.dumps(value, ensure_ascii=False)


# ---- generic checks ----


def _check_enum(path: str, value: str, allowed: Iterable[str], *, required: bool = False) -> None:
    allowed = tuple(allowed)
    if not value:
        if required:
            raise ValidationError(path, f"required; supported: {', '.join(allowed)}")
        return
    if value not in allowed:
        raise ValidationError(path, f"unsupported value {_q(value)}; supported: {', '.join(allowed)}")


def _check_dns_label(path: str, value: str) -> None:
    if len(value) > DNS1123_LABEL_MAX:
        raise ValidationError(path, f"invalid value {_q(value)}: must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        raise ValidationError(path, f"invalid value {_q(value)}: {_LABEL_MSG}")


def _check_dns_subdomain(path: str, value: str) -> None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        raise ValidationError(path, f"invalid value {_q(value)}: must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValidationError(path, f"invalid value {_q(value)}: {_SUBDOMAIN_MSG}")


def check_qualified_name(path: str, key: str) -> None:
    """Check a label or annotation key: an optional DNS subdomain prefix and "/", then a name part.

    Raises:
        ValidationError: on ``path``.
    """
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise ValidationError(path, f"invalid key {_q(key)}: prefix part must be non-empty")
        if len(prefix) > DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            raise ValidationError(path, f"invalid key {_q(key)}: prefix part {_SUBDOMAIN_MSG}")
    if not name:
        raise ValidationError(path, f"invalid key {_q(key)}: name part must be non-empty")
    if len(name) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME.fullmatch(name):
        raise ValidationError(path, f"invalid key {_q(key)}: name part {_NAME_PART_MSG}")


def check_label_value(path: str, value: str) -> None:
    """Check a label value: empty, or a name part of at most 63 characters.

    Raises:
        ValidationError: on ``path``.
    """
    if value and (len(value) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME.fullmatch(value)):
        raise ValidationError(path, f"invalid value {_q(value)}: {_NAME_PART_MSG}")


def _check_labels(path: str, labels: Mapping[str, str]) -> None:
    for key in sorted(labels):
        entry = key_path(path, key)
        check_qualified_name(entry, key)
        check_label_value(entry, labels[key])


def _check_annotations(path: str, annotations: Mapping[str, str]) -> None:
    total = 0
    for key in sorted(annotations):
        check_qualified_name(key_path(path, key), key)
        total += len(key.encode()) + len(annotations[key].encode())
    if total > _ANNOTATIONS_MAX_BYTES:
        raise ValidationError(path, f"too long: must have at most {_ANNOTATIONS_MAX_BYTES} bytes")


def _check_metadata(meta: objects_pb2.ObjectMeta, *, namespaced: bool) -> None:
    if not meta.name:
        raise ValidationError("metadata.name", "required")
    _check_dns_subdomain("metadata.name", meta.name)
    if namespaced:
        if meta.namespace:
            _check_dns_label("metadata.namespace", meta.namespace)
    elif meta.namespace:
        raise ValidationError("metadata.namespace", "not allowed: the object is cluster-scoped")
    _check_labels("metadata.labels", meta.labels)
    _check_annotations("metadata.annotations", meta.annotations)
    if meta.HasField("deletion_grace_period_seconds") and meta.deletion_grace_period_seconds < 0:
        raise ValidationError("metadata.deletionGracePeriodSeconds", "must be greater than or equal to 0")


def _check_type_meta(api_version: str, kind: str, expected_kind: str) -> None:
    if api_version and api_version != "v1":
        raise ValidationError("apiVersion", f"unsupported apiVersion {_q(api_version)}; supported: v1")
    if kind and kind != expected_kind:
        raise ValidationError("kind", f"must be {expected_kind}, not {_q(kind)}")


def _check_resource_name(path: str, name: str, known: tuple[str, ...]) -> None:
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


def _check_quantities(path: str, quantities: Mapping[str, str], known: tuple[str, ...]) -> None:
    for name in sorted(quantities):
        entry = key_path(path, name)
        _check_resource_name(entry, name, known)
        value = quantities[name]
        try:
            amount = parse_quantity(value)
        except ValueError:
            raise ValidationError(entry, f"invalid quantity {_q(value)}") from None
        if amount < 0:
            raise ValidationError(entry, f"invalid value {_q(value)}: must be greater than or equal to 0")


# ---- pods ----


def _is_port_name(name: str) -> bool:
    """An IANA service name, as Kubernetes requires of port names."""
    return (
        len(name) <= 15
        and _IANA_SVC_NAME.fullmatch(name) is not None
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def _check_ports(
    path: str, ports: Iterable[objects_pb2.ContainerPort], seen: set[tuple], host_network: bool
) -> None:
    """Ports of one container; ``seen`` carries names and ports across the pod's containers,
    which share one network namespace. On the host's network no port can be remapped."""
    for j, port in enumerate(ports):
        p = f"{path}[{j}]"
        if port.name:
            if not _is_port_name(port.name):
                raise ValidationError(
                    f"{p}.name",
                    f"invalid value {_q(port.name)}: must be at most 15 characters of a-z, 0-9 and '-', "
                    "with at least one letter",
                )
            if ("name", port.name) in seen:
                raise ValidationError(f"{p}.name", f"duplicate port name {_q(port.name)}")
            seen.add(("name", port.name))
        if not 1 <= port.container_port <= 65535:
            raise ValidationError(f"{p}.containerPort", "must be between 1 and 65535")
        if not 0 <= port.host_port <= 65535:
            raise ValidationError(f"{p}.hostPort", "must be between 1 and 65535, or 0 for none")
        if host_network and port.host_port and port.host_port != port.container_port:
            raise ValidationError(f"{p}.hostPort", "must match containerPort when hostNetwork is true")
        _check_enum(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.host_ip:
            try:
                ipaddress.ip_address(port.host_ip)
            except ValueError:
                raise ValidationError(f"{p}.hostIP", f"invalid IP address {_q(port.host_ip)}") from None
        protocol = port.protocol or "TCP"
        if ("port", port.container_port, protocol) in seen:
            raise ValidationError(f"{p}.containerPort", f"duplicate port {port.container_port}/{protocol}")
        seen.add(("port", port.container_port, protocol))
        if port.host_port:
            if ("hostPort", port.host_port, protocol) in seen:
                raise ValidationError(f"{p}.hostPort", f"duplicate host port {port.host_port}/{protocol}")
            seen.add(("hostPort", port.host_port, protocol))


def _check_resources(path: str, resources: objects_pb2.ResourceRequirements) -> None:
    _check_quantities(f"{path}.requests", resources.requests, POD_RESOURCES)
    _check_quantities(f"{path}.limits", resources.limits, POD_RESOURCES)
    for name in sorted(resources.requests):
        if name in resources.limits and (
            parse_quantity(resources.requests[name]) > parse_quantity(resources.limits[name])
        ):
            raise ValidationError(
                key_path(f"{path}.requests", name),
                f"invalid value {_q(resources.requests[name])}: must be less than or equal to "
                f"{name} limit of {resources.limits[name]}",
            )


def _check_count(path: str, items: Sized, limit: int, what: str) -> None:
    if len(items) > limit:
        raise ValidationError(path, f"at most {limit} {what} allowed")


def _check_string_size(path: str, value: str, limit: int = MAX_STRING_BYTES) -> None:
    # A character is at most 4 bytes in UTF-8: only a long string needs encoding to be measured.
    if len(value) * 4 > limit and len(value.encode()) > limit:
        raise ValidationError(path, f"too long: must have at most {limit} bytes")


def _check_strings(path: str, values: Sequence[str]) -> None:
    _check_count(path, values, MAX_ARGS, "entries")
    for k, value in enumerate(values):
        _check_string_size(f"{path}[{k}]", value)


def _check_absolute_path(path: str, value: str) -> None:
    if not value:
        raise ValidationError(path, "required")
    _check_string_size(path, value, MAX_PATH_BYTES)
    if "\x00" in value:
        raise ValidationError(path, "must not contain a NUL character")
    if not value.startswith("/"):
        raise ValidationError(path, f"invalid value {_q(value)}: must be an absolute path")


def _check_env(path: str, env: Sequence[objects_pb2.EnvVar]) -> None:
    _check_count(path, env, MAX_ENV, "entries")
    for k, var in enumerate(env):
        if not var.name:
            raise ValidationError(f"{path}[{k}].name", "required")
        _check_string_size(f"{path}[{k}].name", var.name)
        if not _ENV_VAR_NAME.fullmatch(var.name):
            raise ValidationError(
                f"{path}[{k}].name",
                f"invalid value {_q(var.name)}: must consist of letters, digits, '_', '-' or '.', "
                "and not start with a digit",
            )
        _check_string_size(f"{path}[{k}].value", var.value)


def _check_volume_mounts(
    path: str, mounts: Sequence[objects_pb2.VolumeMount], volume_names: set[str]
) -> None:
    _check_count(path, mounts, MAX_VOLUME_MOUNTS, "volume mounts")
    targets: set[str] = set()
    for j, mount in enumerate(mounts):
        p = f"{path}[{j}]"
        if not mount.name:
            raise ValidationError(f"{p}.name", "required")
        if mount.name not in volume_names:
            raise ValidationError(f"{p}.name", f"volume {_q(mount.name)} not found")
        _check_absolute_path(f"{p}.mountPath", mount.mount_path)
        target = posixpath.normpath(mount.mount_path)  # "/data/" and "/data" are one mount point
        if target in targets:
            raise ValidationError(f"{p}.mountPath", f"duplicate mount path {_q(mount.mount_path)}")
        targets.add(target)


def _check_container(
    path: str,
    container: objects_pb2.Container,
    names: set[str],
    ports_seen: set[tuple],
    spec: objects_pb2.PodSpec,
    volume_names: set[str],
) -> None:
    if not container.name:
        raise ValidationError(f"{path}.name", "required")
    _check_dns_label(f"{path}.name", container.name)
    if container.name in names:
        raise ValidationError(f"{path}.name", f"duplicate name {_q(container.name)}")
    names.add(container.name)
    if not container.image:
        raise ValidationError(f"{path}.image", "required")
    _check_string_size(f"{path}.image", container.image)
    if container.image != container.image.strip():
        raise ValidationError(f"{path}.image", "must not have leading or trailing whitespace")
    _check_strings(f"{path}.command", container.command)
    _check_strings(f"{path}.args", container.args)
    _check_env(f"{path}.env", container.env)
    _check_ports(f"{path}.ports", container.ports, ports_seen, spec.host_network)
    _check_resources(f"{path}.resources", container.resources)
    _check_enum(f"{path}.imagePullPolicy", container.image_pull_policy, PULL_POLICIES)
    _check_string_size(f"{path}.workingDir", container.working_dir)
    _check_volume_mounts(f"{path}.volumeMounts", container.volume_mounts, volume_names)


def _check_host_path(path: str, source: objects_pb2.HostPathVolumeSource) -> None:
    _check_absolute_path(f"{path}.path", source.path)
    if ".." in source.path.split("/"):
        # Kubernetes' rule too: a prefix check of the admission policy must not be escapable.
        raise ValidationError(f"{path}.path", f"invalid value {_q(source.path)}: must not contain '..'")
    _check_enum(f"{path}.type", source.type, HOST_PATH_TYPES[1:])


def _check_empty_dir(path: str, source: objects_pb2.EmptyDirVolumeSource) -> None:
    _check_enum(f"{path}.medium", source.medium, EMPTY_DIR_MEDIA[1:])
    if source.size_limit:
        try:
            size = parse_quantity(source.size_limit)
        except ValueError:
            raise ValidationError(f"{path}.sizeLimit", f"invalid quantity {_q(source.size_limit)}") from None
        if size <= 0:
            # Stricter than Kubernetes (>= 0): a tmpfs of size 0 would be an unlimited one.
            raise ValidationError(
                f"{path}.sizeLimit", f"invalid value {_q(source.size_limit)}: must be greater than 0"
            )


def _check_volumes(volumes: Sequence[objects_pb2.Volume]) -> None:
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        p = f"spec.volumes[{i}]"
        if not volume.name:
            raise ValidationError(f"{p}.name", "required")
        _check_dns_label(f"{p}.name", volume.name)
        if volume.name in names:
            raise ValidationError(f"{p}.name", f"duplicate name {_q(volume.name)}")
        names.add(volume.name)
        if volume.HasField("host_path") == volume.HasField("empty_dir"):
            raise ValidationError(p, "exactly one volume source (hostPath, emptyDir) is required")
        if volume.HasField("host_path"):
            _check_host_path(f"{p}.hostPath", volume.host_path)
        else:
            _check_empty_dir(f"{p}.emptyDir", volume.empty_dir)


def validate_pod(pod: objects_pb2.Pod) -> None:
    """Check a pod's metadata and spec the way Kubernetes' API server does.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    _check_type_meta(pod.api_version, pod.kind, "Pod")
    _check_metadata(pod.metadata, namespaced=True)
    spec = pod.spec
    if not spec.containers:
        raise ValidationError("spec.containers", "required")
    _check_count("spec.containers", spec.containers, MAX_CONTAINERS, "containers")
    _check_count("spec.volumes", spec.volumes, MAX_VOLUMES, "volumes")
    # Mounts are checked against the volumes' names; the volumes themselves in field order.
    volume_names = {volume.name for volume in spec.volumes}
    names: set[str] = set()
    ports_seen: set[tuple] = set()
    for i, container in enumerate(spec.containers):
        _check_container(f"spec.containers[{i}]", container, names, ports_seen, spec, volume_names)
    _check_enum("spec.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    if spec.node_name:
        _check_dns_subdomain("spec.nodeName", spec.node_name)
    _check_labels("spec.nodeSelector", spec.node_selector)
    if spec.HasField("termination_grace_period_seconds") and spec.termination_grace_period_seconds < 0:
        raise ValidationError("spec.terminationGracePeriodSeconds", "must be greater than or equal to 0")
    _check_volumes(spec.volumes)


def _first_difference(path: str, old: Message, new: Message, skip: Callable[[str], bool]) -> str | None:
    """The path of the first field (in declaration order) that differs, or None."""
    for field in old.DESCRIPTOR.fields:
        name = field.json_name
        if skip(name):
            continue
        # Presence matters for optional scalars (an unset grace period is not 0), not for messages:
        # an empty `resources: {}` is the same as none.
        is_scalar = field.message_type is None
        if is_scalar and field.has_presence and old.HasField(field.name) != new.HasField(field.name):
            return f"{path}.{name}"
        if getattr(old, field.name) != getattr(new, field.name):
            return f"{path}.{name}"
    return None


def validate_pod_update(old: objects_pb2.Pod, new: objects_pb2.Pod) -> None:
    """Check that an update changes only what Kubernetes lets a pod update change.

    ``new`` must itself be a valid pod; besides, only metadata.labels, metadata.annotations and
    spec.containers[*].image may differ from ``old`` (both are expected to be defaulted). Fields the
    server manages (uid, resourceVersion, timestamps, generation) and status are not compared.

    Raises:
        ValidationError: naming the first field that is invalid or must not change.
    """
    validate_pod(new)
    for name in ("name", "namespace"):
        if getattr(old.metadata, name) != getattr(new.metadata, name):
            raise ValidationError(f"metadata.{name}", _IMMUTABLE)
    changed = _first_difference("spec", old.spec, new.spec, lambda name: name == "containers")
    if changed:
        raise ValidationError(changed, _IMMUTABLE)
    if len(old.spec.containers) != len(new.spec.containers):
        raise ValidationError("spec.containers", "may not add or remove containers")
    for i, (before, after) in enumerate(zip(old.spec.containers, new.spec.containers, strict=True)):
        changed = _first_difference(f"spec.containers[{i}]", before, after, lambda name: name == "image")
        if changed:
            raise ValidationError(changed, _IMMUTABLE)


# ---- nodes ----


def validate_node(node: objects_pb2.Node) -> None:
    """Check a node: cluster-scoped metadata, quantities in capacity/allocatable, addresses,
    conditions and the daemon endpoint port.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    _check_type_meta(node.api_version, node.kind, "Node")
    _check_metadata(node.metadata, namespaced=False)
    status = node.status
    _check_quantities("status.capacity", status.capacity, NODE_RESOURCES)
    _check_quantities("status.allocatable", status.allocatable, NODE_RESOURCES)
    for i, condition in enumerate(status.conditions):
        if not condition.type:
            raise ValidationError(f"status.conditions[{i}].type", "required")
        _check_enum(f"status.conditions[{i}].status", condition.status, CONDITION_STATUSES, required=True)
    for i, address in enumerate(status.addresses):
        _check_enum(f"status.addresses[{i}].type", address.type, NODE_ADDRESS_TYPES, required=True)
        if not address.address:
            raise ValidationError(f"status.addresses[{i}].address", "required")
    port = status.daemon_endpoints.kubelet_endpoint.port
    if not 0 <= port <= 65535:
        raise ValidationError("status.daemonEndpoints.kubeletEndpoint.Port", "must be between 1 and 65535")
