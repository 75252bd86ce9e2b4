"""A pod's local ephemeral storage and the kubelet eviction manager's ``localStorageEviction``: a
pod using more of the node's disk than it may is evicted (the pod fails with reason ``Evicted``).
In Kubernetes' order, the first that holds decides:

1. an emptyDir uses more than its ``sizeLimit``:
   ``Usage of EmptyDir volume "x" exceeds the limit "1Mi".``;
2. the pod uses more than its limit, the sum of its containers' ``limits.ephemeral-storage``
   (Kubernetes' ``PodLimits``: app containers and sidecars summed, a plain init container counted
   alone when it needs more; a pod has one as soon as any container sets one):
   ``Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. ``;
3. a container uses more than its own limit:
   ``Container app exceeded its local ephemeral storage limit "1Mi". ``

A container uses its writable layer (the newest attempt's) plus its logs (every attempt still
kept), both from the runtime (``Runtime.container_disk_usage``); a pod uses what its containers
use plus its local ephemeral volumes on disk (disk-backed emptyDirs and configMap volumes, as the
kubelet's ``IsLocalEphemeralVolume``). Limits are printed as Kubernetes prints quantities
(``1024Ki`` is ``1Mi``, ``1000k`` is ``1M``). Unlike the kubelet, which checks only app
containers against their own limits, every container with a limit is checked (init containers
and sidecars too): a limit that is set is honoured.

A volume's usage is counted like ``du -sx``: the blocks allocated to every file and directory below
its root (hard links once), symlinks not followed, other file systems mounted inside not counted.
Memory-backed emptyDirs are skipped: their tmpfs is sized by the limit, so the kernel refuses
writes past it (ENOSPC) instead, and they take no disk.

Measuring is not free (the engine walks writable layers, the agent walks volumes), so
``LocalStorageEviction`` measures a pod at most every ``CHECK_INTERVAL_SECONDS``, from that pod's
own worker: a slow measurement delays no other pod.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerDiskUsage, ContainerRuntimeError, Runtime
from pymaster.api import objects_pb2
from pymaster.api.pods import is_sidecar
from pymaster.api.quantity import memory_bytes, parse_quantity

log = logging.getLogger(__name__)

EVICTED = "Evicted"
EPHEMERAL_STORAGE = "ephemeral-storage"
# The kubelet's eviction manager looks every 10 s; a pod is measured at most this often (its syncs
# come on events and every resync, pykubelet.pod_workers.RESYNC_SECONDS).
CHECK_INTERVAL_SECONDS = 5.0
_BLOCK = 512  # st_blocks unit
_BINARY_UNITS = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_UNITS = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+$")  # "1E" alone is exa, not an exponent


def disk_usage(root: Path) -> int:
    """Bytes allocated on disk below ``root`` (``du -sx`` semantics; 0 when it does not exist)."""
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = top.st_blocks * _BLOCK
    stack = [os.fspath(root)]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as err:  # removed meanwhile, or not a directory any more
            log.debug("disk usage: scandir failed path=%s error=%s", directory, err)
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != top.st_dev or (info.st_dev, info.st_ino) in seen:
                continue
            if info.st_nlink > 1:
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * _BLOCK
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


def limited_empty_dirs(pod: objects_pb2.Pod) -> list[tuple[str, str, int]]:
    """(volume name, sizeLimit as written, limit in bytes) of the pod's disk-backed emptyDirs
    that have a sizeLimit (a limit that does not parse is left out: validation refuses it)."""
    limited = []
    for volume in pod.spec.volumes:
        source = volume.empty_dir
        if volume.HasField("empty_dir") and source.size_limit and source.medium != "Memory":
            try:
                limited.append((volume.name, source.size_limit, memory_bytes(source.size_limit)))
            except ValueError:
                continue
    return limited


def local_ephemeral_volumes(pod: objects_pb2.Pod) -> list[str]:
    """The names of the pod's volumes that live on the node's disk and count in its ephemeral
    storage: disk-backed emptyDirs and configMap volumes."""
    return [
        v.name for v in pod.spec.volumes
        if (v.HasField("empty_dir") and v.empty_dir.medium != "Memory") or v.HasField("config_map")
    ]


def eviction_message(volume: str, limit: str) -> str:
    """The kubelet's message of a pod evicted for one emptyDir over its sizeLimit."""
    return f'Usage of EmptyDir volume "{volume}" exceeds the limit "{limit}".'


def container_message(container: str, limit: str) -> str:
    """The kubelet's message of a pod evicted for one container over its ephemeral-storage limit."""
    return f'Container {container} exceeded its local ephemeral storage limit "{limit}". '


def pod_message(limit: str) -> str:
    """The kubelet's message of a pod evicted for using more than its containers' limits."""
    return f"Pod ephemeral local storage usage exceeds the total limit of containers {limit}. "


@dataclass(frozen=True)
class Quantity:
    """An amount with the notation it was written in, so that it prints as Kubernetes prints it.

    Attributes:
        value: the amount (bytes).
        notation: "binary" (Ki, Mi ...), "exponent" (1e6) or "decimal" (k, M ..., or none).
    """

    value: Decimal
    notation: str

    @classmethod
    def parse(cls, text: str) -> Quantity:
        """Raises ValueError when ``text`` is not a quantity."""
        value = parse_quantity(text)
        if text[-2:] in _BINARY_UNITS:
            return cls(value, "binary")
        return cls(value, "exponent" if _EXPONENT.search(text) else "decimal")

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, self.notation)  # Kubernetes keeps the first's notation

    def __str__(self) -> str:
        return format_quantity(self.value, self.notation)


def format_quantity(value: Decimal, notation: str) -> str:
    """``value`` as Kubernetes' ``Quantity.String()`` prints it in ``notation``: the largest binary
    unit that divides it (``1Mi``; under 1Ki or fractional, decimal instead), or the largest
    power-of-1000 suffix (``1500k``, ``2M``) or exponent (``1500e3``) that keeps it whole."""
    if value == 0:
        return "0"
    sign, value = ("-", -value) if value < 0 else ("", value)
    if notation == "binary" and value >= 1024 and value == value.to_integral_value():
        number, unit = int(value), ""
        for candidate in _BINARY_UNITS:
            if number % 1024:
                break
            number //= 1024
            unit = candidate
        return f"{sign}{number}{unit}"
    _, digits, exponent = value.normalize().as_tuple()
    mantissa = int("".join(map(str, digits)))
    shift = int(exponent) % 3  # down to a multiple of 3, keeping the mantissa whole
    mantissa, exponent = mantissa * 10**shift, int(exponent) - shift
    if notation == "exponent":
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    while exponent > 18:  # no decimal suffix beyond exa
        mantissa, exponent = mantissa * 1000, exponent - 3
    return f"{sign}{mantissa}{_DECIMAL_UNITS[exponent]}"


def container_limits(pod: objects_pb2.Pod) -> list[tuple[str, Quantity]]:
    """(container name, limit) of every container with a non-zero ``limits.ephemeral-storage``:
    the app containers, then the init containers (a limit that does not parse is left out:
    validation refuses it)."""
    limits = []
    for container in [*pod.spec.containers, *pod.spec.init_containers]:
        limit = _limit(container)
        if limit is not None and limit.value != 0:
            limits.append((container.name, limit))
    return limits


def pod_limit(pod: objects_pb2.Pod) -> Quantity | None:
    """The pod's ephemeral-storage limit, Kubernetes' ``PodLimits``: the app containers' and the
    sidecars' limits summed, or the need of a plain init container (its limit plus the sidecars
    started before it) when larger; None when no container sets one."""
    total: Quantity | None = None  # the app containers and every sidecar
    for container in pod.spec.containers:
        total = _sum(total, _limit(container))
    sidecars: Quantity | None = None  # the sidecars started so far
    peak: Quantity | None = None  # the largest need while one init container runs
    for container in pod.spec.init_containers:
        limit = _limit(container)
        if is_sidecar(container):
            total, sidecars = _sum(total, limit), _sum(sidecars, limit)
            need = sidecars
        else:
            need = _sum(limit, sidecars)
        if need is not None and (peak is None or need.value > peak.value):
            peak = need
    if peak is not None and (total is None or peak.value > total.value):
        return peak
    return total


def _limit(container: objects_pb2.Container) -> Quantity | None:
    text = container.resources.limits.get(EPHEMERAL_STORAGE)
    if text is None:
        return None
    try:
        return Quantity.parse(text)
    except ValueError:
        return None


def _sum(a: Quantity | None, b: Quantity | None) -> Quantity | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b


def container_usage(usages: Sequence[ContainerDiskUsage]) -> dict[str, int]:
    """Bytes each container of a pod uses (the kubelet's container stats): the writable layer of
    its newest attempt plus the logs of every attempt still kept. The infra container is the
    runtime's, not the pod's."""
    newest: dict[str, ContainerDiskUsage] = {}
    logs: dict[str, int] = {}
    for usage in usages:
        if usage.name == INFRA_CONTAINER_NAME:
            continue
        logs[usage.name] = logs.get(usage.name, 0) + usage.logs_bytes
        if usage.name not in newest or usage.restart_count > newest[usage.name].restart_count:
            newest[usage.name] = usage
    return {name: usage.rootfs_bytes + logs[name] for name, usage in newest.items()}


def eviction_reason(
    pod: objects_pb2.Pod, usages: Sequence[ContainerDiskUsage], volumes: Mapping[str, int]
) -> str | None:
    """The kubelet's verdict on a pod's local storage: the eviction message (emptyDir sizeLimit,
    then the pod's limit, then each container's), None when it may keep running.

    Args:
        pod: the pod.
        usages: what its containers take (``Runtime.container_disk_usage``).
        volumes: bytes used by its local ephemeral volumes on disk, by volume name (at least
            the emptyDirs with a sizeLimit, and every local ephemeral volume when it has a limit).
    """
    for name, limit, size in limited_empty_dirs(pod):
        if volumes.get(name, 0) > size:
            return eviction_message(name, str(Quantity.parse(limit)))
    used = container_usage(usages)
    limit = pod_limit(pod)
    if limit is not None:
        total = sum(used.values()) + sum(volumes.get(name, 0) for name in local_ephemeral_volumes(pod))
        if total > limit.value:
            return pod_message(str(limit))
    for name, container_limit in container_limits(pod):
        if used.get(name, 0) > container_limit.value:
            return container_message(name, str(container_limit))
    return None


class VolumeMeasure(Protocol):
    """The volume manager's measuring (``PodVolumes.measure``)."""

    async def measure(self, pod: objects_pb2.Pod, names: Iterable[str]) -> dict[str, int]: ...


class LocalStorageEviction:
    """Watches the local storage of the pods of one node (``check`` from each pod's sync).

    Args:
        runtime: measures the containers' writable layers and logs.
        volumes: measures the pods' volumes.
        node_name: this node.
        interval: a pod is measured at most once per this many seconds.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        runtime: Runtime,
        volumes: VolumeMeasure,
        node_name: str,
        interval: float = CHECK_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._runtime = runtime
        self._volumes = volumes
        self._node_name = node_name
        self._interval = interval
        self._clock = clock
        self._measured: dict[str, float] = {}  # pod uid -> when it was last measured

    @staticmethod
    def watched(pod: objects_pb2.Pod) -> bool:
        """Whether the pod has anything to watch: an emptyDir sizeLimit or a storage limit."""
        return bool(limited_empty_dirs(pod)) or pod_limit(pod) is not None

    async def check(self, pod: objects_pb2.Pod) -> str | None:
        """Measures the pod (unless it was measured less than ``interval`` ago) and returns the
        eviction message when it uses more than it may; None otherwise, also when the
        measurement failed (it is logged and tried again at the next interval)."""
        uid = pod.metadata.uid
        now = self._clock()
        last = self._measured.get(uid)
        if last is not None and now - last < self._interval:
            return None
        self._measured[uid] = now
        limited = pod_limit(pod) is not None
        names = local_ephemeral_volumes(pod) if limited else [name for name, _, _ in limited_empty_dirs(pod)]
        try:
            volumes = await self._volumes.measure(pod, names) if names else {}
            usages = await self._runtime.container_disk_usage(self._node_name, uid) if limited else []
        except (ContainerRuntimeError, OSError) as err:
            log.warning("local storage not measured pod=%s/%s error=%s", pod.metadata.namespace,
                        pod.metadata.name, err)
            return None
        message = eviction_reason(pod, usages, volumes)
        if message is not None:
            log.info("local storage over its limit pod=%s/%s containers=%s volumes=%s",
                     pod.metadata.namespace, pod.metadata.name, container_usage(usages), volumes)
        return message

    def forget(self, uid: str) -> None:
        """Drops what is remembered of pod ``uid`` (its worker ended)."""
        self._measured.pop(uid, None)
