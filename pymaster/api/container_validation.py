"""Validation of one container of a pod (app or init): ports, resources, env, volume mounts,
probes, lifecycle hooks, restartPolicy (sidecars), termination message and stdin, with
Kubernetes' rules and field paths. ``pymaster.api.validation.validate_pod`` calls it per
container.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable, Sequence

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    MAX_PATH_BYTES,
    check_absolute_path,
    check_count,
    check_dns_label,
    check_enum,
    check_string_size,
    check_strings,
    quote,
)
from pymaster.api.env_validation import check_env
from pymaster.api.errors import ValidationError
from pymaster.api.resource_validation import check_resources
from pymaster.api.security_validation import check_container_security
from pymaster.api.volume_validation import check_relative_path

_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_HEADER_NAME = re.compile(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+")  # an HTTP token

MAX_VOLUME_MOUNTS = 64  # per container
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP")
TERMINATION_POLICIES = ("File", "FallbackToLogsOnError")
MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
_SNAKE = {
    "livenessProbe": "liveness_probe", "readinessProbe": "readiness_probe", "startupProbe": "startup_probe",
    "initialDelaySeconds": "initial_delay_seconds", "timeoutSeconds": "timeout_seconds",
    "periodSeconds": "period_seconds", "successThreshold": "success_threshold",
    "failureThreshold": "failure_threshold",
}
_NOT_FOR_INIT = "may not be set for init containers without restartPolicy: Always"
_CAMEL = {"exec": "exec", "http_get": "httpGet", "tcp_socket": "tcpSocket", "grpc": "grpc", "sleep": "sleep"}


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
                    f"invalid value {quote(port.name)}: must be at most 15 characters of a-z, 0-9 and '-', "
                    "with at least one letter",
                )
            if ("name", port.name) in seen:
                raise ValidationError(f"{p}.name", f"duplicate port name {quote(port.name)}")
            seen.add(("name", port.name))
        if not 1 <= port.container_port <= 65535:
            raise ValidationError(f"{p}.containerPort", "must be between 1 and 65535")
        if not 0 <= port.host_port <= 65535:
            raise ValidationError(f"{p}.hostPort", "must be between 1 and 65535, or 0 for none")
        if host_network and port.host_port and port.host_port != port.container_port:
            raise ValidationError(f"{p}.hostPort", "must match containerPort when hostNetwork is true")
        check_enum(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.host_ip:
            try:
                ipaddress.ip_address(port.host_ip)
            except ValueError:
                raise ValidationError(f"{p}.hostIP", f"invalid IP address {quote(port.host_ip)}") from None
        protocol = port.protocol or "TCP"
        if ("port", port.container_port, protocol) in seen:
            raise ValidationError(f"{p}.containerPort", f"duplicate port {port.container_port}/{protocol}")
        seen.add(("port", port.container_port, protocol))
        if port.host_port:
            if ("hostPort", port.host_port, protocol) in seen:
                raise ValidationError(f"{p}.hostPort", f"duplicate host port {port.host_port}/{protocol}")
            seen.add(("hostPort", port.host_port, protocol))


def _check_volume_mounts(
    path: str, mounts: Sequence[objects_pb2.VolumeMount], volume_names: set[str], privileged: bool
) -> None:
    """A container's volumeMounts: known volumes, unique absolute mount paths, subPath or
    subPathExpr (relative, no ``..``), mountPropagation (Bidirectional: privileged only; only
    None is honoured so far)."""
    check_count(path, mounts, MAX_VOLUME_MOUNTS, "volume mounts")
    targets: set[str] = set()
    for j, mount in enumerate(mounts):
        p = f"{path}[{j}]"
        if not mount.name:
            raise ValidationError(f"{p}.name", "required")
        if mount.name not in volume_names:
            raise ValidationError(f"{p}.name", f"volume {quote(mount.name)} not found")
        check_absolute_path(f"{p}.mountPath", mount.mount_path)
        check_relative_path(f"{p}.subPath", mount.sub_path)
        if mount.sub_path_expr:
            if mount.sub_path:
                raise ValidationError(f"{p}.subPathExpr", "subPathExpr and subPath are mutually exclusive")
            check_relative_path(f"{p}.subPathExpr", mount.sub_path_expr)
        check_enum(f"{p}.mountPropagation", mount.mount_propagation, MOUNT_PROPAGATIONS)
        if mount.mount_propagation == "Bidirectional" and not privileged:
            message = "Bidirectional mount propagation is available only to privileged containers"
            raise ValidationError(f"{p}.mountPropagation", message)
        if mount.mount_propagation not in ("", "None"):
            # The agent stages every volume as a private bind mount of its own (what is mounted is
            # what was checked), so mounts could not propagate through it in either direction.
            raise ValidationError(
                f"{p}.mountPropagation",
                f"{quote(mount.mount_propagation)} is not supported: pykube mounts volumes with "
                "private propagation (None)",
            )
        target = posixpath.normpath(mount.mount_path)  # "/data/" and "/data" are one mount point
        if target in targets:
            raise ValidationError(f"{p}.mountPath", f"duplicate mount path {quote(mount.mount_path)}")
        targets.add(target)


def check_container(
    path: str,
    container: objects_pb2.Container,
    names: set[str],
    ports_seen: set[tuple],
    spec: objects_pb2.PodSpec,
    volume_names: set[str],
    *,
    init: bool = False,
) -> None:
    """Check one container of a pod (``init``: one of its initContainers).

    Args:
        names: Container names seen so far in the pod (init and app containers share them).
        ports_seen: Port names and numbers seen so far (the pod's containers share one network).
        volume_names: The pod's volume names, for the mounts.
    """
    if not container.name:
        raise ValidationError(f"{path}.name", "required")
    check_dns_label(f"{path}.name", container.name)
    if container.name in names:
        raise ValidationError(f"{path}.name", f"duplicate name {quote(container.name)}")
    names.add(container.name)
    if not container.image:
        raise ValidationError(f"{path}.image", "required")
    check_string_size(f"{path}.image", container.image)
    if container.image != container.image.strip():
        raise ValidationError(f"{path}.image", "must not have leading or trailing whitespace")
    check_strings(f"{path}.command", container.command)
    check_strings(f"{path}.args", container.args)
    check_env(path, container)
    _check_ports(f"{path}.ports", container.ports, ports_seen, spec.host_network)
    check_resources(f"{path}.resources", container.resources)
    check_enum(f"{path}.imagePullPolicy", container.image_pull_policy, PULL_POLICIES)
    check_string_size(f"{path}.workingDir", container.working_dir)
    privileged = container.security_context.privileged
    _check_volume_mounts(f"{path}.volumeMounts", container.volume_mounts, volume_names, privileged)
    _check_lifecycle_fields(path, container, init)
    if container.termination_message_path:
        check_absolute_path(f"{path}.terminationMessagePath", container.termination_message_path)
    policy = container.termination_message_policy
    check_enum(f"{path}.terminationMessagePolicy", policy, TERMINATION_POLICIES)
    if container.stdin_once and not container.stdin:
        raise ValidationError(f"{path}.stdinOnce", "may not be true when stdin is false")
    check_container_security(f"{path}.securityContext", container.security_context)


def _check_lifecycle_fields(path: str, container: objects_pb2.Container, init: bool) -> None:
    """restartPolicy, probes and hooks: an init container may be a sidecar (restartPolicy
    Always), which may have them all; a plain init container none; an app container no
    restartPolicy of its own."""
    sidecar = init and container.restart_policy == "Always"
    if container.restart_policy:
        if not init:
            raise ValidationError(f"{path}.restartPolicy", "may not be set for app containers")
        check_enum(f"{path}.restartPolicy", container.restart_policy, ("Always",))
    probes = (
        ("livenessProbe", container.liveness_probe, "liveness"),
        ("readinessProbe", container.readiness_probe, "readiness"),
        ("startupProbe", container.startup_probe, "startup"),
    )
    for field, probe, kind in probes:
        if not container.HasField(_SNAKE[field]):
            continue
        if init and not sidecar:
            raise ValidationError(f"{path}.{field}", _NOT_FOR_INIT)
        _check_probe(f"{path}.{field}", probe, kind)
    if container.HasField("lifecycle"):
        if init and not sidecar:
            raise ValidationError(f"{path}.lifecycle", _NOT_FOR_INIT)
        for field, snake in (("postStart", "post_start"), ("preStop", "pre_stop")):
            if container.lifecycle.HasField(snake):
                handler = getattr(container.lifecycle, snake)
                _check_handler(f"{path}.lifecycle.{field}", handler, lifecycle=True)


def _check_handler(
    path: str, handler: objects_pb2.Probe | objects_pb2.LifecycleHandler, *, lifecycle: bool
) -> None:
    """Exactly one handler, each well formed."""
    kinds = ("exec", "http_get", "tcp_socket", "sleep" if lifecycle else "grpc")
    present = [k for k in kinds if handler.HasField(k)]
    names = ", ".join(_CAMEL[k] for k in kinds)
    if not present:
        raise ValidationError(path, f"must specify a handler type ({names})")
    if len(present) > 1:
        raise ValidationError(path, f"may not specify more than 1 handler type ({names})")
    kind = present[0]
    if kind == "exec":
        if not handler.exec.command:
            raise ValidationError(f"{path}.exec.command", "required")
        check_strings(f"{path}.exec.command", handler.exec.command)
    elif kind == "http_get":
        action = handler.http_get
        _check_port_or_name(f"{path}.httpGet.port", action.port)
        check_enum(f"{path}.httpGet.scheme", action.scheme, ("HTTP", "HTTPS"))
        check_string_size(f"{path}.httpGet.path", action.path, MAX_PATH_BYTES)
        check_string_size(f"{path}.httpGet.host", action.host, 253)
        for i, header in enumerate(action.http_headers):
            if not _HEADER_NAME.fullmatch(header.name):
                raise ValidationError(
                    f"{path}.httpGet.httpHeaders[{i}].name", f"invalid HTTP header name {quote(header.name)}"
                )
            check_string_size(f"{path}.httpGet.httpHeaders[{i}].value", header.value, 4096)
    elif kind == "tcp_socket":
        _check_port_or_name(f"{path}.tcpSocket.port", handler.tcp_socket.port)
        check_string_size(f"{path}.tcpSocket.host", handler.tcp_socket.host, 253)
    elif kind == "grpc":
        if not 1 <= handler.grpc.port <= 65535:
            raise ValidationError(f"{path}.grpc.port", "must be between 1 and 65535")
    elif handler.sleep.seconds < 1:
        raise ValidationError(f"{path}.sleep.seconds", "must be greater than 0")


def _check_port_or_name(path: str, port: objects_pb2.IntOrString) -> None:
    which = port.WhichOneof("value")
    if which is None:
        raise ValidationError(path, "required")
    if which == "int_value" and not 1 <= port.int_value <= 65535:
        raise ValidationError(path, "must be between 1 and 65535")
    if which == "str_value" and not _is_port_name(port.str_value):
        raise ValidationError(
            path, f"invalid value {quote(port.str_value)}: must be a port number or a port name"
        )


def _check_probe(path: str, probe: objects_pb2.Probe, kind: str) -> None:
    _check_handler(path, probe, lifecycle=False)
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds"):
        if getattr(probe, _SNAKE[field]) < 0:
            raise ValidationError(f"{path}.{field}", "must be greater than or equal to 0")
    for field in ("successThreshold", "failureThreshold"):
        if getattr(probe, _SNAKE[field]) < 0:
            raise ValidationError(f"{path}.{field}", "must be greater than or equal to 0")
    if kind in ("liveness", "startup") and probe.success_threshold not in (0, 1):
        raise ValidationError(f"{path}.successThreshold", f"must be 1 for {kind} probes")
    if probe.HasField("termination_grace_period_seconds"):
        if kind == "readiness":
            raise ValidationError(
                f"{path}.terminationGracePeriodSeconds", "must not be set for readiness probes"
            )
        if probe.termination_grace_period_seconds < 1:
            raise ValidationError(f"{path}.terminationGracePeriodSeconds", "must be greater than 0")


