"""fsGroup ownership (``pykubelet.volume_ownership``: the kubelet's masks, setgid directories,
OnRootMismatch, symlinks never followed) and emptyDir usage (``pykubelet.volume_usage``: du -sx,
hard links once, the eviction message). The tests run as root, so chown is real."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pykubelet.volume_ownership import set_volume_ownership
from pykubelet.volume_usage import disk_usage, eviction_message, limited_empty_dirs
from pymaster.api import objects_pb2

GROUP = 3456


def gid_mode(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root (0755) / sub (0700) / file (0600), root/ro (0400), root/link -> /etc/hostname."""
    if os.geteuid() != 0:
        pytest.skip("chown to another group needs root")
    root = tmp_path / "vol"
    (root / "sub").mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "sub", 0o700)
    (root / "sub" / "file").write_text("x")
    os.chmod(root / "sub" / "file", 0o600)
    (root / "ro").write_text("y")
    os.chmod(root / "ro", 0o400)
    (root / "link").symlink_to("/etc/hostname")
    return root


def test_read_write_volume(tree: Path) -> None:
    hostname = os.stat("/etc/hostname")
    assert set_volume_ownership(tree, GROUP, read_only=False)
    assert gid_mode(tree) == (GROUP, 0o2775)  # | 0660 | 0110 | setgid
    assert gid_mode(tree / "sub") == (GROUP, 0o2770)
    assert gid_mode(tree / "sub" / "file") == (GROUP, 0o660)
    assert gid_mode(tree / "ro") == (GROUP, 0o660)
    assert (tree / "link").lstat().st_gid == GROUP  # the link itself ...
    after = os.stat("/etc/hostname")
    assert (after.st_gid, after.st_mode) == (hostname.st_gid, hostname.st_mode)  # ... never its target


def test_read_only_volume(tree: Path) -> None:
    set_volume_ownership(tree, GROUP, read_only=True)
    assert gid_mode(tree / "sub") == (GROUP, 0o2750)  # | 0440 | 0110 | setgid
    assert gid_mode(tree / "sub" / "file") == (GROUP, 0o640)
    assert gid_mode(tree / "ro") == (GROUP, 0o440)


def test_on_root_mismatch(tree: Path) -> None:
    assert set_volume_ownership(tree, GROUP, read_only=False, policy="OnRootMismatch")  # root did not match
    os.chmod(tree / "ro", 0o400)  # changed since: OnRootMismatch leaves it be
    assert not set_volume_ownership(tree, GROUP, read_only=False, policy="OnRootMismatch")
    assert gid_mode(tree / "ro") == (GROUP, 0o400)
    assert set_volume_ownership(tree, GROUP, read_only=False, policy="Always")
    assert gid_mode(tree / "ro") == (GROUP, 0o660)
    assert set_volume_ownership(tree, GROUP + 1, read_only=False, policy="OnRootMismatch")  # another group


def test_disk_usage(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    (root / "d").mkdir(parents=True)
    (root / "d" / "big").write_bytes(os.urandom(256 * 1024))
    os.link(root / "d" / "big", root / "same")  # a hard link counts once
    (root / "link").symlink_to("/usr")  # never followed
    used = disk_usage(root)
    assert 256 * 1024 <= used < 256 * 1024 + 64 * 1024
    assert disk_usage(tmp_path / "missing") == 0


def test_limited_empty_dirs_and_message() -> None:
    pod = objects_pb2.Pod()
    pod.spec.volumes.add(name="a", empty_dir=objects_pb2.EmptyDirVolumeSource(size_limit="1Mi"))
    memory = objects_pb2.EmptyDirVolumeSource(size_limit="1Mi", medium="Memory")
    pod.spec.volumes.add(name="b", empty_dir=memory)
    pod.spec.volumes.add(name="c", empty_dir=objects_pb2.EmptyDirVolumeSource())
    assert limited_empty_dirs(pod) == [("a", "1Mi", 1024 * 1024)]  # a tmpfs is bounded by its size
    assert eviction_message("a", "1Mi") == 'Usage of EmptyDir volume "a" exceeds the limit "1Mi".'
