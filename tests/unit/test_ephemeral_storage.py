"""Local ephemeral storage, pure logic (``pykubelet.volume_usage``): limits printed as Kubernetes
prints quantities, the pod's limit by Kubernetes' PodLimits, what a container uses, the eviction
verdict in the kubelet's order, and ``LocalStorageEviction``'s measuring (at most once per
interval, only what a verdict needs, failures tolerated) over the shared fake runtime. Also the
pure parts of the Docker reader (``runtime/docker/disk_usage.py``): a listed container's usage and
its log files on disk."""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import pytest

from pykubelet.runtime.base import ContainerDiskUsage, RuntimeUnavailable
from pykubelet.runtime.docker.disk_usage import log_bytes, usage
from pykubelet.volume_usage import (
    LocalStorageEviction,
    Quantity,
    container_limits,
    container_usage,
    eviction_reason,
    format_quantity,
    local_ephemeral_volumes,
    pod_limit,
)
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime, FakeVolumes, container, pod_runtime

Ki, Mi = 1024, 1024 * 1024


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("1Mi", "1Mi"),
        ("1024Ki", "1Mi"),
        ("1536Ki", "1536Ki"),
        ("3Gi", "3Gi"),
        ("512", "512"),
        ("1048576", "1048576"),
        ("1000k", "1M"),
        ("1500k", "1500k"),
        ("1.5M", "1500k"),
        ("2000", "2k"),
        ("1e6", "1e6"),
        ("15e5", "1500e3"),
        ("1E", "1E"),
        ("0", "0"),
        ("0.5Ki", "512"),  # under 1Ki, binary prints as decimal
        ("1.5", "1500m"),
    ],
)
def test_quantities_print_as_in_kubernetes(text: str, printed: str) -> None:
    assert str(Quantity.parse(text)) == printed


def test_a_sum_keeps_the_first_notation() -> None:
    assert str(Quantity.parse("1Mi") + Quantity.parse("1Mi")) == "2Mi"
    assert str(Quantity.parse("1Mi") + Quantity.parse("1M")) == "2048576"
    assert str(Quantity.parse("1M") + Quantity.parse("1M")) == "2M"
    assert format_quantity(Decimal(10) ** 21, "decimal") == "1000E"


def make_pod(
    containers: list[tuple[str, str]],
    init: list[tuple[str, str, bool]] = (),  # type: ignore[assignment]
    volumes: list[objects_pb2.Volume] = (),  # type: ignore[assignment]
) -> objects_pb2.Pod:
    """Containers as (name, limits.ephemeral-storage or ""); init containers with a sidecar flag."""
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"))
    for name, limit, sidecar in init:
        c = pod.spec.init_containers.add(name=name, image="pykube/busybox:1.35")
        c.restart_policy = "Always" if sidecar else ""
        if limit:
            c.resources.limits["ephemeral-storage"] = limit
    for name, limit in containers:
        c = pod.spec.containers.add(name=name, image="pykube/busybox:1.35")
        if limit:
            c.resources.limits["ephemeral-storage"] = limit
    pod.spec.volumes.extend(volumes)
    return pod


@pytest.mark.parametrize(
    ("containers", "init", "expected"),
    [
        ([("a", "")], [], None),
        ([("a", "1Mi")], [], "1Mi"),
        ([("a", "1Mi"), ("b", "1Mi")], [], "2Mi"),
        ([("a", "1Mi"), ("b", "")], [], "1Mi"),  # Kubernetes: one container's limit is enough
        ([("a", "1Mi")], [("s", "1Mi", True)], "2Mi"),  # a sidecar runs beside the app
        ([("a", "1Mi")], [("i", "5Mi", False)], "5Mi"),  # a plain init container alone, when larger
        ([("a", "1Mi")], [("s", "1Mi", True), ("i", "3Mi", False)], "4Mi"),  # it plus the sidecar
        ([("a", "")], [("i", "3Mi", False)], "3Mi"),
        ([("a", "0")], [], "0"),
    ],
)
def test_pod_limit_is_kubernetes_pod_limits(containers, init, expected) -> None:
    limit = pod_limit(make_pod(containers, init))
    assert (str(limit) if limit is not None else None) == expected


def test_container_limits_are_every_container_with_one() -> None:
    pod = make_pod([("a", "1Mi"), ("b", ""), ("z", "0")], [("i", "2Mi", False)])
    assert [(name, str(limit)) for name, limit in container_limits(pod)] == [("a", "1Mi"), ("i", "2Mi")]


def test_container_usage_is_the_newest_layer_and_every_log() -> None:
    usages = [
        ContainerDiskUsage("a2", "app", 2, rootfs_bytes=100, logs_bytes=10),
        ContainerDiskUsage("a1", "app", 1, rootfs_bytes=5000, logs_bytes=20),  # a dead attempt
        ContainerDiskUsage("i0", "POD", 0, rootfs_bytes=7000, logs_bytes=7000),  # the runtime's
        ContainerDiskUsage("s0", "side", 0, rootfs_bytes=1, logs_bytes=2),
    ]
    assert container_usage(usages) == {"app": 130, "side": 3}


def du(name: str, rootfs: int, logs: int = 0, restart: int = 0) -> ContainerDiskUsage:
    return ContainerDiskUsage(f"{name}-{restart}", name, restart, rootfs, logs)


EMPTY_DIR = objects_pb2.Volume(name="scratch", empty_dir=objects_pb2.EmptyDirVolumeSource())
LIMITED = objects_pb2.Volume(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(size_limit="1Mi"))
MEMORY = objects_pb2.Volume(name="ram", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Memory"))
CONFIG = objects_pb2.Volume(name="conf", config_map=objects_pb2.ConfigMapVolumeSource(name="c"))
SECRET = objects_pb2.Volume(name="sec", secret=objects_pb2.SecretVolumeSource(secret_name="s"))

CONTAINER_APP = 'Container app exceeded its local ephemeral storage limit "1Mi". '


@pytest.mark.parametrize(
    ("containers", "usages", "volumes", "expected"),
    [
        ([("app", "1Mi")], [du("app", Mi)], {}, None),  # at the limit is fine
        # One container: the pod's limit is its own, and the pod is checked first (Kubernetes).
        ([("app", "1Mi")], [du("app", Mi, 1)], {},
         "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "),
        ([("app", "1Mi"), ("big", "10Mi")], [du("app", Mi - 100, 101), du("big", 0)], {}, CONTAINER_APP),
        ([("app", "1Mi"), ("big", "10Mi")], [du("app", 2 * Mi, restart=0), du("app", 0, 0, restart=1)], {},
         None),  # a dead attempt's writable layer does not count
        ([("app", "1Mi"), ("big", "1Mi")], [du("app", Mi), du("big", 512 * Ki)], {"scratch": 600 * Ki},
         "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. "),
        ([("app", "1Mi"), ("big", "1Mi")], [du("app", Mi), du("big", 512 * Ki)], {"conf": 600 * Ki},
         "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. "),
        # Memory-backed and tmpfs volumes take no disk: never counted, whatever is reported.
        ([("app", "1Mi"), ("big", "1Mi")], [du("app", Mi)], {"ram": 5 * Mi, "sec": 5 * Mi}, None),
        # The emptyDir's own sizeLimit comes first, then the pod.
        ([("app", "1Mi")], [du("app", 5 * Mi)], {"cache": Mi + 1},
         'Usage of EmptyDir volume "cache" exceeds the limit "1Mi".'),
        ([("app", "")], [du("app", 5 * Mi)], {}, None),  # no limit, nothing to exceed
        ([("app", "1Mi"), ("other", "")], [du("app", 0), du("other", 2 * Mi)], {},
         "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "),
    ],
)
def test_eviction_verdict(containers, usages, volumes, expected) -> None:
    pod = make_pod(containers, volumes=[EMPTY_DIR, LIMITED, MEMORY, CONFIG, SECRET])
    assert eviction_reason(pod, usages, volumes) == expected


def test_an_empty_dir_limit_prints_as_kubernetes_prints_it() -> None:
    volume = objects_pb2.Volume(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(size_limit="1024Ki"))
    pod = make_pod([("app", "")], volumes=[volume])
    message = 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi".'
    assert eviction_reason(pod, [], {"cache": Mi + 1}) == message


def test_init_containers_are_held_to_their_limits() -> None:
    pod = make_pod([("app", "10Mi")], [("setup", "1Mi", False)])
    message = 'Container setup exceeded its local ephemeral storage limit "1Mi". '
    assert eviction_reason(pod, [du("setup", 2 * Mi), du("app", 0)], {}) == message


def test_local_ephemeral_volumes() -> None:
    pod = make_pod([("app", "")], volumes=[EMPTY_DIR, LIMITED, MEMORY, CONFIG, SECRET])
    assert local_ephemeral_volumes(pod) == ["scratch", "cache", "conf"]


class Volumes(FakeVolumes):
    """FakeVolumes remembering which volumes each measurement asked for."""

    def __init__(self) -> None:
        super().__init__([])
        self.asked: list[list[str]] = []

    async def measure(self, pod: objects_pb2.Pod, names: Iterable[str]) -> dict[str, int]:
        self.asked.append(list(names))
        return await super().measure(pod, self.asked[-1])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def checker() -> tuple[LocalStorageEviction, FakeRuntime, Volumes, Clock]:
    runtime, volumes, clock = FakeRuntime(), Volumes(), Clock()
    runtime.pods["u1"] = pod_runtime(container("c-app", "app"), container("c-pod", "POD"))
    return LocalStorageEviction(runtime, volumes, "n1", interval=5.0, clock=clock), runtime, volumes, clock


async def test_a_pod_is_measured_at_most_once_per_interval() -> None:
    storage, runtime, volumes, clock = checker()
    pod = make_pod([("app", "1Mi")], volumes=[EMPTY_DIR])
    assert storage.watched(pod)
    assert await storage.check(pod) is None
    assert (runtime.disk_reads, volumes.asked) == (1, [["scratch"]])
    runtime.disk["c-app"] = (2 * Mi, 0)
    clock.now += 4.9
    assert await storage.check(pod) is None  # too soon: not measured
    assert runtime.disk_reads == 1
    clock.now += 0.1
    message = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
    assert await storage.check(pod) == message
    assert runtime.disk_reads == 2
    storage.forget("u1")  # a new worker for the same uid measures at once
    assert await storage.check(pod) == message


async def test_only_what_the_verdict_needs_is_measured() -> None:
    storage, runtime, volumes, _ = checker()
    # An emptyDir sizeLimit alone: that volume, and no container.
    pod = make_pod([("app", "")], volumes=[EMPTY_DIR, LIMITED, CONFIG])
    assert storage.watched(pod)
    await storage.check(pod)
    assert (runtime.disk_reads, volumes.asked) == (0, [["cache"]])
    assert not storage.watched(make_pod([("app", "")], volumes=[EMPTY_DIR]))


async def test_a_failed_measurement_is_no_verdict() -> None:
    storage, runtime, _, clock = checker()
    runtime.disk_error = RuntimeUnavailable("docker engine unreachable")
    pod = make_pod([("app", "1Mi")])
    assert await storage.check(pod) is None
    runtime.disk_error = None
    runtime.disk["c-app"] = (2 * Mi, 0)
    clock.now += 5
    assert await storage.check(pod) is not None  # tried again at the next interval


def test_docker_summary_to_usage() -> None:
    summary = {
        "Id": "abc", "SizeRw": 4096,
        "Labels": {"pykube.container.name": "app", "pykube.restart.count": "3"},
    }
    assert usage(summary, 100) == ContainerDiskUsage("abc", "app", 3, 4096, 100)
    assert usage({"Id": "x", "Labels": {}}, 0) == ContainerDiskUsage("x", "", 0, 0, 0)  # no SizeRw


def test_log_bytes_counts_current_and_rotated_files(tmp_path: Path) -> None:
    cid = "f" * 64
    directory = tmp_path / "containers" / cid
    directory.mkdir(parents=True)
    for name, size in ((f"{cid}-json.log", 300_000), (f"{cid}-json.log.1", 200_000),
                       (f"{cid}-json.log.2.gz", 10_000), ("config.v2.json", 900_000)):
        (directory / name).write_bytes(b"x" * size)
    logs = [directory / f"{cid}-json.log{suffix}" for suffix in ("", ".1", ".2.gz")]
    expected = sum(os.stat(path).st_blocks * 512 for path in logs)
    assert log_bytes(str(tmp_path), cid) == expected >= 510_000
    assert log_bytes(str(tmp_path), "0" * 64) == 0  # no such container (any more)
