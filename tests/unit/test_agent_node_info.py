"""Host facts as node fields: architecture names, os-release, quantities, addresses, cpu ratio."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime

import pytest

from pykubelet import node_info
from pykubelet.node_status import node_labels


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("armv7l", "arm"),
     ("riscv64", "riscv64"), ("mips", "mips")],
)
def test_architecture(machine: str, expected: str) -> None:
    assert node_info.architecture(machine) == expected


OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID='12'
# a comment
ID=debian

junk line
"""


def test_parse_os_release() -> None:
    assert node_info.parse_os_release(OS_RELEASE) == {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (OS_RELEASE, "Debian GNU/Linux 12 (bookworm)"),
        ('NAME="Alpine Linux"\n', "Alpine Linux"),
        ("", "Linux"),
    ],
)
def test_os_image(text: str, expected: str) -> None:
    assert node_info.os_image(text) == expected


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (24 * 1024**3, "24Gi"),
        (24576 * 1024**2 + 512 * 1024, "25166336Ki"),
        (25276502016, "24684084Ki"),
        (1023, "0"),
        (1024 * 1024 + 1000, "1Mi"),
    ],
)
def test_memory_quantity(total: int, expected: str) -> None:
    assert node_info.memory_quantity(total) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("10.1.2.3", "10.1.2.3"), ("0.0.0.0", "192.0.2.7"), ("::", "192.0.2.7"),
     ("", "192.0.2.7"), ("[::1]", "::1")],
)
def test_internal_ip(host: str, expected: str) -> None:
    assert node_info.internal_ip(host, "192.0.2.7") == expected


Times = namedtuple("Times", "user nice system idle iowait guest")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (Times(0, 0, 0, 0, 0, 0), Times(1, 0, 1, 2, 0, 0), 0.5),
        (Times(10, 0, 0, 10, 0, 0), Times(10, 0, 0, 20, 5, 0), 0.0),
        (Times(0, 0, 0, 0, 0, 0), Times(3, 0, 1, 0, 0, 3), 1.0),  # guest is part of user already
        (Times(5, 5, 5, 5, 5, 5), Times(5, 5, 5, 5, 5, 5), 0.0),  # no time passed
    ],
)
def test_busy_ratio(before: Times, after: Times, expected: float) -> None:
    assert node_info.busy_ratio(before, after) == pytest.approx(expected)


def test_cpu_sampler_ratio_in_range() -> None:
    sampler = node_info.CpuSampler()
    assert 0.0 <= sampler.ratio() <= 1.0


def test_system_info() -> None:
    info = node_info.system_info("20.10.24", "0.1.0")
    assert info.container_runtime_version == "docker://20.10.24"
    assert info.kubelet_version == "pykube/0.1.0"
    assert info.operating_system == "linux"
    assert info.architecture in ("amd64", "arm64")
    assert info.kernel_version and info.os_image


def test_capacity() -> None:
    capacity = node_info.capacity(max_pods=42)
    assert capacity["pods"] == "42"
    assert int(capacity["cpu"]) >= 1
    assert capacity["memory"][-2:] in ("Ki", "Mi", "Gi")


def test_usage(tmp_path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    reading = node_info.usage(str(tmp_path), node_info.CpuSampler(), node_info.PodCounts(2, 3), now)
    assert reading.running_pods == 2 and reading.running_containers == 3
    assert 0 < reading.memory_available_bytes and 0 < reading.disk_used_bytes <= reading.disk_total_bytes
    assert reading.timestamp.ToDatetime(tzinfo=UTC) == now


@pytest.mark.parametrize(
    ("path_exists", "expected"), [(True, None), (False, "/")]
)
def test_disk_path(tmp_path, path_exists: bool, expected: str | None) -> None:
    path = str(tmp_path if path_exists else tmp_path / "missing")
    assert node_info.disk_path(path) == (expected or path)


def test_node_labels_well_known_win() -> None:
    labels = node_labels("n1", {"disk": "ssd", "kubernetes.io/hostname": "fake"}, "arm64")
    assert labels == {
        "disk": "ssd",
        "kubernetes.io/hostname": "n1",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64",
    }
