"""The downward API's values: what a pod may learn about itself through env
(``valueFrom.fieldRef`` / ``resourceFieldRef``) and downwardAPI or projected volumes, computed the
kubelet's way (``podFieldSelectorRuntimeValue``, ``fieldpath.ExtractFieldPathAsString``,
``resource.ExtractContainerResourceValue``).

Which paths a pod may ask for where (env takes status.podIP, a volume takes whole label maps) is
the API validation's business; this module answers every path it knows, for both.
"""

from __future__ import annotations

from collections.abc import Mapping

import psutil

from pykubelet import node_info
from pykubelet.config import AgentConfig
from pymaster.api import objects_pb2
from pymaster.api.env_validation import CONTAINER_RESOURCE_FIELDS, split_subscript
from pymaster.api.pods import effective_requests
from pymaster.api.quantity import cpu_millis, memory_bytes, parse_quantity

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               '"': '\\"', "\\": "\\\\"}


def field_value(pod: objects_pb2.Pod, field_path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a pod field for the downward API.

    Args:
        pod: the pod.
        field_path: metadata.name, metadata.namespace, metadata.uid, metadata.labels['k'],
            metadata.annotations['k'], metadata.labels, metadata.annotations (the whole map, one
            ``key="value"`` line per entry, sorted), spec.nodeName, spec.serviceAccountName,
            status.podIP, status.podIPs, status.hostIP, status.hostIPs.
        pod_ip: the pod's address (its sandbox's, or the node's on the host network).
        host_ip: the node's address.

    Returns:
        The value; "" for a label or annotation the pod does not have.

    Raises:
        ValueError: the path is not one of the above.
    """
    meta = pod.metadata
    subscripted = split_subscript(field_path)
    if subscripted is not None:
        path, key = subscripted
        if path == "metadata.labels":
            return meta.labels.get(key, "")
        if path == "metadata.annotations":
            return meta.annotations.get(key, "")
        raise ValueError(f'fieldPath "{field_path}" does not support subscript')
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        # One address per family at most; pykube's pods and nodes have an IPv4 one only, so the
        # plural forms (comma-separated lists in Kubernetes) hold that one.
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if field_path in simple:
        return simple[field_path]
    if field_path == "metadata.labels":
        return format_map(meta.labels)
    if field_path == "metadata.annotations":
        return format_map(meta.annotations)
    raise ValueError(f"unsupported fieldPath: {field_path}")


def resource_value(
    pod: objects_pb2.Pod,
    container_name: str,
    resource: str,
    divisor: str,
    allocatable: Mapping[str, str] | None = None,
) -> str:
    """A container's request or limit in units of ``divisor``, rounded up (Kubernetes' ceil).

    A limit the container does not set is the node's allocatable amount (what it may use at most),
    a request it does not set is its limit when it has one (Kubernetes' defaulting), else 0.

    Args:
        pod: the pod.
        container_name: an app or init container of the pod.
        resource: limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu,
            requests.memory or requests.ephemeral-storage.
        divisor: a quantity ("1m", "1Mi"); "" or zero means 1.
        allocatable: the node's allocatable cpu, memory and ephemeral-storage (default: this
            machine's, ``node_allocatable()``).

    Returns:
        The whole number, as a string: limits.cpu 500m with divisor 1 is "1", with 1m "500".

    Raises:
        ValueError: no such container, an unsupported resource, or a bad quantity.
    """
    container = next(
        (c for c in [*pod.spec.containers, *pod.spec.init_containers] if c.name == container_name), None
    )
    if container is None:
        raise ValueError(f"container {container_name} not found")
    if resource not in CONTAINER_RESOURCE_FIELDS:
        raise ValueError(f"unsupported container resource: {resource}")
    kind, _, name = resource.partition(".")
    if not divisor or parse_quantity(divisor) == 0:
        divisor = "1"
    if parse_quantity(divisor) < 0:
        raise ValueError(f"divisor {divisor} must be positive")
    if kind == "limits":
        amount = container.resources.limits.get(name) or _allocatable(allocatable)[name]
    else:
        amount = effective_requests(container.resources).get(name, "0")
    if name == "cpu":
        return str(_ceil_div(cpu_millis(amount), cpu_millis(divisor)))
    return str(_ceil_div(memory_bytes(amount), memory_bytes(divisor)))


def node_allocatable(root_dir: str = AgentConfig.root_dir) -> dict[str, str]:
    """This machine's allocatable cpu, memory and ephemeral-storage (in bytes), as the node reports
    them: ephemeral-storage is the size of the file system holding the agent's root dir
    (``root_dir``, by default the default ``--root-dir``; "/" when it does not exist)."""
    return {
        "cpu": str(psutil.cpu_count() or 1),
        "memory": node_info.memory_quantity(psutil.virtual_memory().total),
        "ephemeral-storage": str(node_info.ephemeral_storage_bytes(root_dir)),
    }


def format_map(values: Mapping[str, str]) -> str:
    """A label or annotation map as the kubelet writes it: ``key="value"`` lines sorted by key, the
    value quoted like Go's %q, no newline after the last."""
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values))


def go_quote(value: str) -> str:
    """``value`` in double quotes the way Go's strconv.Quote writes it."""
    out = ['"']
    for char in value:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _allocatable(given: Mapping[str, str] | None) -> Mapping[str, str]:
    return given if given is not None else node_allocatable()


def _ceil_div(amount: int, divisor: int) -> int:
    return -(-amount // divisor)  # exact, where the kubelet's float64 ceil may be off by one
