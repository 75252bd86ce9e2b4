"""Facts about the host the agent runs on, read with psutil and from /etc and /proc, and turned
into the API's node types: capacity, system info, addresses and the usage reading.

Parsing and formatting are pure functions (tested without a host); the readers are thin and
tolerate missing files (containers and minimal hosts often lack /etc/machine-id), reporting ""
rather than failing the registration.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from datetime import datetime

import psutil

from pymaster.api import objects_pb2
from pymaster.api.quantity import format_bytes

# platform.machine() -> GOARCH-style names, as Kubernetes reports kubernetes.io/arch.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

_UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::", "[::]")


def architecture(machine: str | None = None) -> str:
    """The GOARCH-style architecture name: "x86_64" -> "amd64", "aarch64" -> "arm64".

    Args:
        machine: ``platform.machine()``'s answer; read from the host when None.
    """
    machine = platform.machine() if machine is None else machine
    return _ARCHITECTURES.get(machine.lower(), machine.lower())


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release file, with shell quoting removed."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key.strip()] = value
    return fields


def os_image(os_release_text: str) -> str:
    """The OS name shown as nodeInfo.osImage: PRETTY_NAME, else NAME, else "Linux"."""
    fields = parse_os_release(os_release_text)
    return fields.get("PRETTY_NAME") or fields.get("NAME") or "Linux"


def memory_quantity(total_bytes: int) -> str:
    """Memory capacity as a quantity: whole KiB like the kubelet ("24685060Ki"), or a larger whole
    binary unit when it divides ("24Gi")."""
    return format_bytes(total_bytes // 1024 * 1024)


def internal_ip(listen_host: str, primary: str) -> str:
    """The node's InternalIP: the agent API's listen host unless it is a wildcard address."""
    return primary if listen_host in _UNSPECIFIED_HOSTS else listen_host.strip("[]")


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except OSError:
        return ""


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def primary_ip() -> str:
    """The host's primary IPv4 address: the source address of the default route, else the first
    non-loopback interface address, else 127.0.0.1."""
    # Connecting a UDP socket sends nothing; it only asks the kernel which source address
    # routes to a public address.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
            if address and not address.startswith("127."):
                return address
    except OSError:
        pass
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return addr.address
    return "127.0.0.1"


def hostname() -> str:
    """The host name, lowercased (the default node name, like the kubelet's)."""
    return socket.gethostname().lower()


def capacity(max_pods: int, root_dir: str = "/") -> dict[str, str]:
    """The node's capacity: cpu (logical cores), memory (bytes as a quantity), ephemeral-storage
    (``ephemeral_storage(root_dir)``), pods."""
    return {
        "cpu": str(psutil.cpu_count() or 1),
        "memory": memory_quantity(psutil.virtual_memory().total),
        "ephemeral-storage": ephemeral_storage(root_dir),
        "pods": str(max_pods),
    }


def ephemeral_storage_bytes(root_dir: str) -> int:
    """The size of the file system holding ``root_dir`` (``disk_path``): what the kubelet
    advertises as ephemeral-storage, its root dir's file system, where pods' emptyDirs live."""
    st = os.statvfs(disk_path(root_dir))
    return st.f_blocks * st.f_frsize


def ephemeral_storage(root_dir: str) -> str:
    """``ephemeral_storage_bytes`` as a quantity, like the kubelet's ("263174212Ki")."""
    return format_bytes(ephemeral_storage_bytes(root_dir))


def system_info(runtime_version: str, agent_version: str) -> objects_pb2.NodeSystemInfo:
    """nodeInfo: ids from /etc and /proc, the OS, the kernel, and the versions.

    Args:
        runtime_version: the Docker Engine's version ("20.10.24"), reported as docker://<v>.
        agent_version: the agent's package version, reported as pykube/<v>.
    """
    return objects_pb2.NodeSystemInfo(
        machine_id=_read_first_line("/etc/machine-id"),
        boot_id=_read_first_line("/proc/sys/kernel/random/boot_id"),
        kernel_version=platform.release(),
        os_image=os_image(_read_text("/etc/os-release")),
        operating_system="linux",
        architecture=architecture(),
        container_runtime_version=f"docker://{runtime_version}",
        kubelet_version=f"pykube/{agent_version}",
    )


class CpuSampler:
    """Busy cpu ratio (0..1) between two calls, from psutil.cpu_times deltas.

    Each consumer owns one, unlike ``psutil.cpu_percent(interval=None)`` whose hidden module
    state would make the status report and a metrics scrape steal each other's interval.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    def ratio(self) -> float:
        """The busy fraction of all cpus since the previous call (or construction)."""
        now = psutil.cpu_times()
        last, self._last = self._last, now
        return busy_ratio(last, now)


def busy_ratio(before: object, after: object) -> float:
    """The busy fraction between two psutil cpu_times readings; 0 when no time passed."""
    idle_fields = ("idle", "iowait")
    total = busy = 0.0
    for name in after._fields:  # type: ignore[attr-defined]
        # guest time is already counted in user time on Linux; counting it again would exceed 1.
        if name in ("guest", "guest_nice"):
            continue
        delta = max(0.0, getattr(after, name) - getattr(before, name))
        total += delta
        if name not in idle_fields:
            busy += delta
    return min(1.0, busy / total) if total > 0 else 0.0


@dataclass
class PodCounts:
    """What the last relist saw: pods with a running infra container, running app containers."""

    running_pods: int = 0
    running_containers: int = 0


def disk_path(root_dir: str) -> str:
    """The path whose filesystem is reported: the root dir if it exists, else "/"."""
    return root_dir if os.path.isdir(root_dir) else "/"


def usage(root_dir: str, cpu: CpuSampler, counts: PodCounts, now: datetime) -> objects_pb2.NodeUsage:
    """A psutil reading of the host's load, as reported in node status."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path(root_dir))
    load1, load5, load15 = os.getloadavg()
    reading = objects_pb2.NodeUsage(
        cpu_percent=round(cpu.ratio() * 100, 2),
        memory_used_bytes=memory.total - memory.available,
        memory_available_bytes=memory.available,
        disk_used_bytes=disk.used,
        disk_total_bytes=disk.total,
        load1=load1,
        load5=load5,
        load15=load15,
        running_pods=counts.running_pods,
        running_containers=counts.running_containers,
    )
    reading.timestamp.FromDatetime(now)
    return reading
