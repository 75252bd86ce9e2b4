"""The volume manager's logic that needs no engine and no root: mountinfo parsing, the refusals
of ``PodVolumes.mounts`` and the message when a memory-backed emptyDir cannot be mounted (the
real mounts are in tests/e2e/test_runtime_volumes.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pykubelet import volumes as vol
from pykubelet.runtime.base import CreateContainerError, Mount
from pymaster.api import objects_pb2

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 27 0:40 / /var/lib/pods/u1/volumes/with\\040space rw master:2 shared:3 - tmpfs tmpfs rw,size=1024k
41 40 0:41 / /var/lib/pods/u1/volumes/with\\040space rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo() -> None:
    assert vol.parse_mountinfo(MOUNTINFO) == [
        ("/proc", "proc"),
        ("/", "ext4"),
        ("/var/lib/pods/u1/volumes/with space", "tmpfs"),
        ("/var/lib/pods/u1/volumes/with space", "tmpfs"),
    ]


def make_pod(
    volume: objects_pb2.Volume, mount_name: str | None = None
) -> tuple[objects_pb2.Pod, objects_pb2.Container]:
    """A pod with ``volume`` and one container mounting ``mount_name`` (default: the volume) at /v."""
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"))
    pod.spec.volumes.append(volume)
    container = pod.spec.containers.add(name="main", image="pykube/busybox:1.35")
    container.volume_mounts.add(name=mount_name or volume.name, mount_path="/v")
    return pod, container


async def test_memory_empty_dir_without_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refused(path: str, options: str) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), path)

    monkeypatch.setattr(vol, "mount_type", lambda path: None)
    monkeypatch.setattr(vol, "_mount_tmpfs", refused)
    volume = objects_pb2.Volume(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Memory"))
    with pytest.raises(CreateContainerError, match=r"the agent must run as root \(CAP_SYS_ADMIN\)") as err:
        await vol.PodVolumes(tmp_path / "pods").mounts(*make_pod(volume))
    assert "emptyDir volume cache with medium: Memory" in err.value.message


async def test_memory_empty_dir_already_mounted_is_not_mounted_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mounted: list[tuple[str, str]] = []
    monkeypatch.setattr(vol, "mount_type", lambda path: "tmpfs" if mounted else None)
    monkeypatch.setattr(vol, "_mount_tmpfs", lambda path, options: mounted.append((path, options)))
    volume = objects_pb2.Volume(
        name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Memory", size_limit="64Mi")
    )
    manager = vol.PodVolumes(tmp_path / "pods")
    pod, container = make_pod(volume)
    expected = [Mount("/v", str(tmp_path / "pods" / "u1" / "volumes" / "cache"))]
    assert await manager.mounts(pod, container) == expected
    assert await manager.mounts(pod, container) == expected
    real = os.path.join(os.path.realpath(tmp_path / "pods"), "u1", "volumes", "cache")
    assert mounted == [(real, f"mode=0777,size={64 * 2**20}")]


MEMORY_BAD_SIZE = objects_pb2.Volume(
    name="m", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Memory", size_limit="x")
)


@pytest.mark.parametrize(
    ("volume", "mount_name", "message"),
    [
        (objects_pb2.Volume(name="data", empty_dir=objects_pb2.EmptyDirVolumeSource()), "other",
         'volume "other" of container main is not in the pod'),
        (objects_pb2.Volume(name="data"), None, "volume data has no source (hostPath or emptyDir)"),
        (objects_pb2.Volume(name="..", empty_dir=objects_pb2.EmptyDirVolumeSource()), None,
         "volume name '..' is not a safe directory name"),
        (MEMORY_BAD_SIZE,
         None, "invalid sizeLimit of volume m"),
        (objects_pb2.Volume(name="h", host_path=objects_pb2.HostPathVolumeSource(path="relative")), None,
         "hostPath 'relative' is not an absolute path"),
    ],
)
async def test_refusals(
    tmp_path: Path, volume: objects_pb2.Volume, mount_name: str | None, message: str
) -> None:
    with pytest.raises(CreateContainerError) as err:
        await vol.PodVolumes(tmp_path / "pods").mounts(*make_pod(volume, mount_name))
    assert message in err.value.message
    assert not (tmp_path / "pods" / "u1").exists()
