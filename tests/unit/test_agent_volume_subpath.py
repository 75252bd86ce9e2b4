"""subPath and subPathExpr without an engine: expansion against the container's resolved env (and
the kubelet's refusals), the safe open inside a volume (symlinks followed by hand, never out of
the volume; missing directories created with the volume root's mode) and the staging of the
volume manager (with a stubbed bind mount). The real mounts are in tests/e2e."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pykubelet import host_paths, volume_mounts, volume_subpath
from pykubelet import volumes as vol
from pykubelet.runtime.base import CreateContainerConfigError, CreateContainerError, Mount
from pymaster.api import objects_pb2

ENV = [("POD_NAME", "web-1"), ("EMPTY", ""), ("POD_NAME", "web-2")]  # a later entry wins


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        (objects_pb2.VolumeMount(name="v", sub_path="a/b"), "a/b"),
        (objects_pb2.VolumeMount(name="v", sub_path_expr="logs/$(POD_NAME)"), "logs/web-2"),
        (objects_pb2.VolumeMount(name="v", sub_path_expr="$$(POD_NAME)"), "$(POD_NAME)"),
        (objects_pb2.VolumeMount(name="v"), ""),
    ],
)
def test_sub_path(mount: objects_pb2.VolumeMount, expected: str) -> None:
    assert volume_subpath.sub_path(mount, "app", ENV) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("$(NOPE)/$(EMPTY)", 'volumeMount "v" of container "app": missing value for EMPTY, NOPE'),
        ("/$(POD_NAME)", "error SubPath `/web-2` must not be an absolute path"),
        ("$(POD_NAME)/../..", "unable to provision SubPath `web-2/../..`: must not contain '..'"),
    ],
)
def test_sub_path_expr_refusals(expr: str, message: str) -> None:
    with pytest.raises(CreateContainerConfigError) as err:
        volume_subpath.sub_path(objects_pb2.VolumeMount(name="v", sub_path_expr=expr), "app", ENV)
    assert message in err.value.message
    assert err.value.reason == "CreateContainerConfigError"


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A volume root (0777 with setgid) holding ``d/f``, ``file`` and symlinks ``in`` -> d,
    ``abs-in`` -> <root>/d (absolute, inside), ``out`` -> .. (the parent), ``etc`` -> /etc."""
    root = tmp_path / "vol"
    (root / "d").mkdir(parents=True)
    os.chmod(root, 0o2777)
    (root / "d" / "f").write_text("f")
    (root / "file").write_text("file")
    for name, target in (("in", "d"), ("abs-in", str(root / "d")), ("out", ".."), ("etc", "/etc")):
        (root / name).symlink_to(target)
    return root


def opened(root: Path, path: str) -> tuple[str, bool]:
    with host_paths.open_in_volume(str(root), path, 0o2777, f'subPath "{path}"') as found:
        return found.path, found.is_dir


def test_open_in_volume(volume: Path) -> None:
    assert opened(volume, "d/f") == (f"{volume}/d/f", False)
    assert opened(volume, "in/f") == (f"{volume}/d/f", False)  # a symlink inside the volume
    assert opened(volume, "abs-in") == (f"{volume}/d", True)
    # Judged where it ends, as the kubelet's EvalSymlinks + within-volume check: back inside.
    assert opened(volume, "out/vol/d") == (f"{volume}/d", True)
    assert opened(volume, "new/deeper") == (f"{volume}/new/deeper", True)  # created, as the kubelet does
    created = (volume / "new" / "deeper").stat()
    assert stat.S_IMODE(created.st_mode) == 0o2777  # the volume root's mode


@pytest.mark.parametrize("path", ["out", "out/other", "etc", "etc/passwd"])
def test_symlinks_out_of_the_volume_are_refused(volume: Path, path: str) -> None:
    with pytest.raises(CreateContainerError, match="leads out of the volume"):
        opened(volume, path)


def test_file_on_the_way(volume: Path) -> None:
    with pytest.raises(CreateContainerError) as err:
        opened(volume, "file/x")
    assert err.value.message == 'subPath "file/x": file is not a directory'  # no host path shown


async def test_volume_manager_stages_sub_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binds: list[tuple[str, tuple[int, int]]] = []

    def bind(source: str, target: str) -> None:
        info = os.stat(source)
        binds.append((target, (info.st_dev, info.st_ino)))

    monkeypatch.setattr(volume_mounts, "bind_mount", bind)
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"))
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    container = pod.spec.containers.add(name="app", image="pykube/busybox:1.35")
    container.env.add(name="POD_NAME", value="web-1")
    container.volume_mounts.add(name="data", mount_path="/all")
    container.volume_mounts.add(name="data", mount_path="/mine", sub_path_expr="logs/$(POD_NAME)")
    manager = vol.PodVolumes(tmp_path / "pods")
    mounts = await manager.mounts(pod, container)
    pod_dir = tmp_path / "pods" / "u1"
    staging = pod_dir / "volume-subpaths" / "data" / "app" / "1"
    assert mounts == [Mount("/all", str(pod_dir / "volumes" / "data")), Mount("/mine", str(staging))]
    created = pod_dir / "volumes" / "data" / "logs" / "web-1"
    assert binds == [(os.path.realpath(staging), (created.stat().st_dev, created.stat().st_ino))]
    assert stat.S_IMODE(created.stat().st_mode) == 0o777


async def test_volume_manager_refuses_a_sub_path_leading_out(tmp_path: Path) -> None:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"))
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    container = pod.spec.containers.add(name="app", image="pykube/busybox:1.35")
    container.volume_mounts.add(name="data", mount_path="/all")
    manager = vol.PodVolumes(tmp_path / "pods")
    await manager.mounts(pod, container)
    (manager.volume_dir("u1", "data") / "out").symlink_to("/etc")  # what a container may plant
    container.volume_mounts.add(name="data", mount_path="/etc-of-the-host", sub_path="out")
    with pytest.raises(CreateContainerConfigError) as err:
        await manager.mounts(pod, container)
    assert err.value.message == 'subPath "out" of volume "data": the symlink out leads out of the volume'
    assert not (tmp_path / "pods" / "u1" / "volume-subpaths" / "data" / "app" / "1").exists()
