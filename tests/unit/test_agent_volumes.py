"""The volume manager's logic that needs no engine and no mount: mountinfo parsing, the refusals
of ``PodVolumes.mounts``, the messages when a memory-backed emptyDir or a hostPath cannot be
mounted, and the hostPath resolver (normalization, symlinks re-checked against the allowed
prefixes, creation relative to descriptors, type checks). The real mounts are in
tests/e2e/test_runtime_volumes.py."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pykubelet import host_paths, volume_mounts
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
    assert volume_mounts.parse_mountinfo(MOUNTINFO) == [
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
    monkeypatch.setattr(vol, "mount_tmpfs", refused)
    volume = objects_pb2.Volume(name="cache", empty_dir=objects_pb2.EmptyDirVolumeSource(medium="Memory"))
    with pytest.raises(CreateContainerError, match=r"the agent must run as root \(CAP_SYS_ADMIN\)") as err:
        await vol.PodVolumes(tmp_path / "pods").mounts(*make_pod(volume))
    assert "emptyDir volume cache with medium: Memory" in err.value.message


async def test_memory_empty_dir_already_mounted_is_not_mounted_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mounted: list[tuple[str, str]] = []
    monkeypatch.setattr(vol, "mount_type", lambda path: "tmpfs" if mounted else None)
    monkeypatch.setattr(vol, "mount_tmpfs", lambda path, options: mounted.append((path, options)))
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
        (objects_pb2.Volume(name="data"), None, "volume data has no source"),
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


# ---- hostPath: resolved once, by descriptor, inside the allowed prefixes ----


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """An allowed hostPath prefix with a directory ``d`` (holding ``f``), a file ``file`` and
    symlinks: ``inside`` -> d, ``rel`` -> ../data/d (relative), ``etc`` -> /etc, ``up`` ->
    ../outside, ``loop`` -> loop. ``<tmp>/outside`` is a directory outside the prefix."""
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    (data / "d" / "f").write_text("in d")
    (data / "file").write_text("a file")
    (tmp_path / "outside").mkdir()
    for name, target in (("inside", "d"), ("rel", "../data/d"), ("etc", "/etc"), ("up", "../outside"),
                         ("loop", "loop")):
        (data / name).symlink_to(target)
    return data


def host_path(path: str | Path, kind: str = "") -> objects_pb2.HostPathVolumeSource:
    return objects_pb2.HostPathVolumeSource(path=str(path), type=kind)


def opened(path: str | Path, prefixes: list[Path], kind: str = "") -> tuple[str, bool, tuple[int, int]]:
    """(resolved path, is_dir, (st_dev, st_ino) of the opened descriptor) of ``open_host_path``."""
    with host_paths.open_host_path(host_path(path, kind), [str(p) for p in prefixes]) as host:
        info = os.fstat(host.fd)
        return host.path, host.is_dir, (info.st_dev, info.st_ino)


def inode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("d", "d"),
        ("d/f", "d/f"),
        ("inside", "d"),  # a symlink to inside the prefix is followed by the walk, checked again
        ("inside/f", "d/f"),
        ("rel/f", "d/f"),
        ("d/../d/./f", "d/f"),  # normalized lexically first, as the admission sees it
        ("etc/../d", "d"),  # ".." never goes through a symlink (lexical, like the admission)
        ("d//f/", "d/f"),
    ],
)
def test_resolves_inside_the_prefix(prefix: Path, given: str, expected: str) -> None:
    path, is_dir, opened_inode = opened(f"{prefix}/{given}", [prefix])
    assert path == str(prefix / expected)
    assert is_dir == (prefix / expected).is_dir()
    assert opened_inode == inode(prefix / expected)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("etc", "hostPath {p}/etc: the symlink {p}/etc leads to /etc, which is not under an allowed prefix"),
        ("etc/passwd", "the symlink {p}/etc leads to /etc/passwd, which is not under an allowed prefix"),
        ("up", "the symlink {p}/up leads to {t}/outside, which is not under an allowed prefix"),
        ("../outside", "hostPath {p}/../outside is not under an allowed prefix (allowed: {p}; "),
        ("loop", "hostPath {p}/loop: too many levels of symbolic links"),
        ("file/x", "hostPath {p}/file/x: {p}/file is not a directory"),
    ],
)
def test_refuses_what_leaves_the_prefix(prefix: Path, given: str, message: str) -> None:
    with pytest.raises(CreateContainerError) as err:
        opened(f"{prefix}/{given}", [prefix], "DirectoryOrCreate")
    assert message.format(p=prefix, t=prefix.parent) in err.value.message
    assert list((prefix.parent / "outside").iterdir()) == []  # nothing created outside


def test_symlink_outside_creates_nothing_behind_it(prefix: Path, tmp_path: Path) -> None:
    with pytest.raises(CreateContainerError, match="leads to"):
        opened(prefix / "up" / "new" / "deeper", [prefix], "DirectoryOrCreate")
    with pytest.raises(CreateContainerError, match="leads to"):
        opened(prefix / "up" / "file", [prefix], "FileOrCreate")
    assert list((tmp_path / "outside").iterdir()) == []


def test_dot_dot_creates_only_the_normalized_path(prefix: Path) -> None:
    path, _, _ = opened(f"{prefix}/l/../x", [prefix], "FileOrCreate")
    assert path == str(prefix / "x") and (prefix / "x").is_file()
    assert not (prefix / "l").exists()


def test_a_symlink_within_one_prefix_to_another_is_allowed(prefix: Path, tmp_path: Path) -> None:
    (tmp_path / "outside" / "f").write_text("allowed too")
    path, _, opened_inode = opened(prefix / "up" / "f", [prefix, tmp_path / "outside"], "File")
    assert path == str(tmp_path / "outside" / "f")
    assert opened_inode == inode(tmp_path / "outside" / "f")


@pytest.mark.parametrize("prefixes", [[], ["/database"]])
def test_no_allowed_prefix_refuses(prefix: Path, prefixes: list[str]) -> None:
    with pytest.raises(CreateContainerError, match="is not under an allowed prefix"):
        with host_paths.open_host_path(host_path(prefix / "d"), prefixes):
            pass


def test_or_create_makes_missing_components_with_kubernetes_modes(prefix: Path) -> None:
    old_umask = os.umask(0o077)  # the modes are set, not cut by the agent's umask
    try:
        path, is_dir, _ = opened(prefix / "inside" / "a" / "b", [prefix], "DirectoryOrCreate")
        assert (path, is_dir) == (str(prefix / "d" / "a" / "b"), True)
        opened(prefix / "d" / "a" / "new-file", [prefix], "FileOrCreate")
        opened(prefix / "plain" / "dir", [prefix], "")  # "" creates a missing directory
    finally:
        os.umask(old_umask)
    assert [mode(prefix / "d" / p) for p in ("a", "a/b", "a/new-file")] == [0o755, 0o755, 0o644]
    assert (prefix / "d" / "a" / "new-file").read_bytes() == b""
    assert (prefix / "plain" / "dir").is_dir() and mode(prefix / "plain") == 0o755


def test_existing_paths_keep_their_mode_and_content(prefix: Path) -> None:
    (prefix / "d").chmod(0o700)
    opened(prefix / "d", [prefix], "DirectoryOrCreate")
    opened(prefix / "file", [prefix], "FileOrCreate")
    assert mode(prefix / "d") == 0o700
    assert (prefix / "file").read_text() == "a file"


def test_file_or_create_needs_its_parent(prefix: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        opened(prefix / "missing" / "f", [prefix], "FileOrCreate")
    assert err.value.filename == str(prefix / "missing")
    assert not (prefix / "missing").exists()


@pytest.mark.parametrize(
    ("given", "kind", "message"),
    [
        ("missing", "Directory", "hostPath type check failed: {path} does not exist (type Directory)"),
        ("missing/f", "File", "hostPath type check failed: {path} does not exist (type File)"),
        ("file", "Directory", "hostPath type check failed: {path} is not a directory"),
        ("file", "DirectoryOrCreate", "hostPath type check failed: {path} is not a directory"),
        ("d", "File", "hostPath type check failed: {path} is not a file"),
        ("inside", "FileOrCreate", "hostPath type check failed: {path} is not a file"),
    ],
)
def test_type_checks(prefix: Path, given: str, kind: str, message: str) -> None:
    path = prefix / given
    with pytest.raises(CreateContainerError) as err:
        opened(path, [prefix], kind)
    assert err.value.message == message.format(path=path)
    assert not (prefix / "missing").exists()


async def test_host_path_is_staged_from_the_opened_inode(
    monkeypatch: pytest.MonkeyPatch, prefix: Path, tmp_path: Path
) -> None:
    binds: list[tuple[str, tuple[int, int]]] = []

    def bind(source: str, target: str) -> None:
        # What the kernel would mount: the inode the magic link points to, whatever the path is now.
        binds.append((target, inode(Path(source))))

    monkeypatch.setattr(volume_mounts, "bind_mount", bind)
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid="u1"))
    pod.spec.volumes.add(name="dir").host_path.CopyFrom(host_path(prefix / "inside", "Directory"))
    pod.spec.volumes.add(name="file").host_path.CopyFrom(host_path(prefix / "file", "File"))
    container = pod.spec.containers.add(name="main", image="pykube/busybox:1.35")
    container.volume_mounts.add(name="dir", mount_path="/a")
    container.volume_mounts.add(name="dir", mount_path="/b", read_only=True)
    container.volume_mounts.add(name="file", mount_path="/c")
    manager = vol.PodVolumes(tmp_path / "pods", [str(prefix)])

    mounts = await manager.mounts(pod, container)

    staging = tmp_path / "pods" / "u1" / "volume-hostpaths"
    assert mounts == [
        Mount("/a", str(staging / "dir" / "main")),
        Mount("/b", str(staging / "dir" / "main"), read_only=True),
        Mount("/c", str(staging / "file" / "main")),
    ]
    real = os.path.realpath(staging)
    assert binds == [  # one bind per volume and container
        (f"{real}/dir/main", inode(prefix / "d")),
        (f"{real}/file/main", inode(prefix / "file")),
    ]
    assert (staging / "dir" / "main").is_dir() and (staging / "file" / "main").is_file()


async def test_host_path_staging_without_root(
    monkeypatch: pytest.MonkeyPatch, prefix: Path, tmp_path: Path
) -> None:
    def refused(source: str, target: str) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), target)

    monkeypatch.setattr(volume_mounts, "bind_mount", refused)
    volume = objects_pb2.Volume(name="h", host_path=host_path(prefix / "d"))
    with pytest.raises(CreateContainerError, match=r"the agent must run as root \(CAP_SYS_ADMIN\)") as err:
        await vol.PodVolumes(tmp_path / "pods", [str(prefix)]).mounts(*make_pod(volume))
    assert "hostPath volume h is bind-mounted on the host from the checked path" in err.value.message


async def test_host_path_refused_by_the_volume_manager_creates_nothing(prefix: Path, tmp_path: Path) -> None:
    volume = objects_pb2.Volume(name="h", host_path=host_path(prefix / "etc"))
    with pytest.raises(CreateContainerError, match="leads to /etc"):
        await vol.PodVolumes(tmp_path / "pods", [str(prefix)]).mounts(*make_pod(volume))
    assert not (tmp_path / "pods").exists()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_termination_log_per_start_and_message(tmp_path: Path) -> None:
    manager = vol.PodVolumes(tmp_path / "pods")
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(uid="u1"))
    container = objects_pb2.Container(name="app", termination_message_path="/tmp/why")
    mount = await manager.termination_log(pod, container, 0)
    assert mount.target == "/tmp/why"
    log = Path(mount.source)
    assert stat.S_IMODE(log.stat().st_mode) == 0o666  # any user of the container may write it
    log.write_bytes(b"x" * 5000)
    message = await manager.termination_message("u1", "app", 0)
    assert message == "x" * vol.MAX_TERMINATION_MESSAGE_BYTES  # Kubernetes' cap
    assert await manager.termination_message("u1", "app", 1) == ""  # that start wrote nothing
    assert await manager.termination_message("../u1", "app", 0) == ""  # never outside its directory
    # Only the previous start's file is kept: a crash loop does not pile files up.
    for count in (1, 2, 3):
        await manager.termination_log(pod, container, count)
    assert sorted(p.name for p in log.parent.iterdir()) == ["2-termination-log", "3-termination-log"]
