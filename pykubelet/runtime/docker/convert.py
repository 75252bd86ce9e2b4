"""Pure conversions of the Docker runtime, no engine call: Docker's list/inspect data into the
runtime's types (``ContainerInfo`` with state, exit code, times, IP) and a pod spec into Docker's
create arguments (published ports, resources, hostname, bind mounts, log rotation).

Cost of a relist: the list (``GET /containers/json``) lacks exit codes, start/finish times, OOM
and start errors, so those come from ``inspect``, cached per container as ``Details`` under a
state key (the list's State plus exit code); while the key holds, no new inspect is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker.types

from pykubelet.runtime import labels
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, ContainerLogLimits, Mount
from pymaster.api import objects_pb2
from pymaster.api.quantity import cpu_millis, memory_bytes

_EXITED_STATUS = re.compile(r"Exited \((-?\d+)\)")


@dataclass(frozen=True)
class Details:
    """What only ``inspect`` tells about a container, cached per (id, state key)."""

    key: str  # the list's State plus exit code: when it changes, inspect again
    node: str
    state: str
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime | None
    error: str
    oom_killed: bool


def state_key(state: str, exit_code: int | None = None) -> str:
    """The cache key of a Docker state: the state, plus the exit code once exited."""
    return f"{state}:{exit_code}" if state == "exited" else state


def summary_key(summary: dict[str, Any]) -> str:
    """The state key of a container as listed (its exit code is only in the Status text)."""
    match = _EXITED_STATUS.match(summary.get("Status", ""))
    return state_key(summary.get("State", ""), int(match.group(1)) if match else None)


def details_from_inspect(attrs: dict[str, Any], node_name: str, key: str) -> Details:
    """The Details of a container from its inspect data, cached under ``key``."""
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    error = state.get("Error", "") or ""
    if status == "running":
        mapped, exit_code = "running", None
    elif status == "exited" or (status == "created" and error):
        # A failed start leaves Docker's state "created" with State.Error: that attempt is over.
        mapped, exit_code = "exited", int(state.get("ExitCode", 0))
    elif status == "created":
        mapped, exit_code = "created", None
    else:  # paused, restarting, removing, dead
        mapped, exit_code = "unknown", None
    if status == "exited":  # the key of an inspect-born entry must match the list's
        key = state_key("exited", exit_code)
    return Details(
        key=key,
        node=node_name,
        state=mapped,
        exit_code=exit_code,
        started_at=timestamp(state.get("StartedAt")),
        finished_at=timestamp(state.get("FinishedAt")),
        created_at=timestamp(attrs.get("Created")),
        error=error,
        oom_killed=bool(state.get("OOMKilled")),
    )


def container_info(
    container_id: str,
    container_labels: dict[str, str],
    image: str,
    image_id: str,
    ip_address: str,
    details: Details,
) -> ContainerInfo:
    """A ContainerInfo from a container's labels, image, IP and cached Details."""
    name = container_labels.get(labels.CONTAINER_NAME, "")
    return ContainerInfo(
        id=container_id,
        name=name,
        pod_uid=container_labels.get(labels.POD_UID, ""),
        pod_name=container_labels.get(labels.POD_NAME, ""),
        pod_namespace=container_labels.get(labels.POD_NAMESPACE, ""),
        state=details.state,
        exit_code=details.exit_code,
        started_at=details.started_at,
        finished_at=details.finished_at,
        created_at=details.created_at,
        restart_count=labels.parse_restart_count(container_labels),
        spec_hash=container_labels.get(labels.SPEC_HASH, ""),
        image=image,
        image_id=image_id,
        error=details.error,
        oom_killed=details.oom_killed,
        ip=ip_address if name == INFRA_CONTAINER_NAME and details.state == "running" else "",
    )


def ip(network_settings: dict[str, Any] | None) -> str:
    """The container's bridge IP, from inspect or list data."""
    if not network_settings:
        return ""
    if network_settings.get("IPAddress"):
        return str(network_settings["IPAddress"])
    for network in (network_settings.get("Networks") or {}).values():
        if network and network.get("IPAddress"):
            return str(network["IPAddress"])
    return ""


def timestamp(value: str | None) -> datetime | None:
    """Docker's RFC 3339 (nanoseconds) time; None for its zero time "0001-01-01T00:00:00Z"."""
    if not value or value.startswith("0001-01-01"):
        return None
    # Python takes at most microseconds: cut the fraction to 6 digits.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def hostname(pod_name: str) -> str:
    """The pod name as a hostname: at most 63 characters, not ending in "-" or "."."""
    return pod_name[:63].rstrip("-.") or "pod"


def port_bindings(pod: objects_pb2.Pod) -> tuple[list[tuple[int, str]], dict[str, list[tuple[str, int]]]]:
    """The exposed ports and host port bindings of the infra container: every container port
    with a hostPort, on hostIP (default all addresses)."""
    exposed: list[tuple[int, str]] = []
    bindings: dict[str, list[tuple[str, int]]] = {}
    for container in pod.spec.containers:
        for port in container.ports:
            if not port.host_port:
                continue
            protocol = (port.protocol or "TCP").lower()
            key = f"{port.container_port}/{protocol}"
            if key not in bindings:
                exposed.append((port.container_port, protocol))
            bindings.setdefault(key, []).append((port.host_ip or "0.0.0.0", port.host_port))
    return exposed, bindings


def resources(requirements: objects_pb2.ResourceRequirements) -> dict[str, int]:
    """Docker host-config resource arguments. cpu shares follow the request (the limit when no
    request, Kubernetes' defaulting); without either Docker's default weight (1024) stays.

    Raises:
        ValueError: a quantity does not parse.
    """
    limits, requests = requirements.limits, requirements.requests
    result: dict[str, int] = {}
    if "cpu" in limits:
        result["nano_cpus"] = cpu_millis(limits["cpu"]) * 1_000_000
    if "memory" in limits:
        result["mem_limit"] = memory_bytes(limits["memory"])
    cpu_request = requests.get("cpu") or limits.get("cpu")
    if cpu_request:
        result["cpu_shares"] = max(2, cpu_millis(cpu_request) * 1024 // 1000)
    return result


def bind_mounts(mounts: Sequence[Mount]) -> list[docker.types.Mount]:
    """The runtime's bind mounts as Docker mounts, in the same order."""
    return [docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in mounts]


def log_config(limits: ContainerLogLimits) -> docker.types.LogConfig:
    """Docker's json-file log driver rotating per ``limits``. The size goes in plain bytes: Docker
    reads "10m" as 10 MiB where a Kubernetes quantity "10M" means 10^6 bytes."""
    return docker.types.LogConfig(
        type="json-file", config={"max-size": str(limits.max_size), "max-file": str(limits.max_files)}
    )
