"""The atomic writer (``pykubelet.atomic_writer``): the kubelet's layout (a timestamped version
directory, ``..data`` swapped by rename, one symlink per visible name), no write when nothing
changed, removal of what left the payload, refusal of unsafe paths, and that a reader holding the
old version keeps it whole."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pykubelet.atomic_writer import DATA_DIR, FileProjection, validate_path, write_payload


def files(target: Path) -> dict[str, bytes]:
    """What a container sees: every visible path (through the symlinks) and its contents."""
    seen = {}
    for root, _, names in os.walk(target, followlinks=True):
        for name in names:
            path = Path(root) / name
            relative = path.relative_to(target).as_posix()
            if not relative.startswith(".."):
                seen[relative] = path.read_bytes()
    return seen


def versions(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if p.name.startswith("..") and p.name != DATA_DIR)


def test_layout(tmp_path: Path) -> None:
    payload = {"a": FileProjection(b"1", 0o644), "d/b": FileProjection(b"2", 0o400)}
    assert write_payload(tmp_path, payload)
    [version] = versions(tmp_path)
    assert re.fullmatch(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+", version)
    assert os.readlink(tmp_path / DATA_DIR) == version
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert os.readlink(tmp_path / "d") == "..data/d"  # a nested path shows through its first element
    assert files(tmp_path) == {"a": b"1", "d/b": b"2"}
    assert stat.S_IMODE((tmp_path / version / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / version / "d" / "b").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / version).stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / version / "d").stat().st_mode) == 0o755


def test_unchanged_is_not_written(tmp_path: Path) -> None:
    payload = {"a": FileProjection(b"1", 0o644)}
    assert write_payload(tmp_path, payload)
    before = versions(tmp_path)
    assert not write_payload(tmp_path, payload)
    assert versions(tmp_path) == before


def test_update_swaps_everything_and_keeps_old_readers_whole(tmp_path: Path) -> None:
    write_payload(tmp_path, {"a": FileProjection(b"old a", 0o644), "gone": FileProjection(b"x", 0o644)})
    old = open(tmp_path / "a", "rb")  # a reader that opened the file before the update
    perms: list[str] = []

    def set_perms() -> None:  # called with the new version written but not yet visible
        perms.append(os.readlink(tmp_path / DATA_DIR))

    assert write_payload(
        tmp_path, {"a": FileProjection(b"new a", 0o644), "b/c": FileProjection(b"c", 0o644)}, set_perms
    )
    assert files(tmp_path) == {"a": b"new a", "b/c": b"c"}
    assert not os.path.lexists(tmp_path / "gone")  # the visible name went with it
    assert len(versions(tmp_path)) == 1  # the old version is deleted ...
    assert old.read() == b"old a"  # ... but what was open stays whole
    old.close()
    assert perms and perms[0] != os.readlink(tmp_path / DATA_DIR)


def test_empty_payload_and_leftovers(tmp_path: Path) -> None:
    (tmp_path / "..2020_01_01_00_00_00.dead").mkdir()  # a writer that died mid-update
    os.symlink("..2020_01_01_00_00_00.dead", tmp_path / "..data_tmp")
    assert write_payload(tmp_path, {})
    assert files(tmp_path) == {}
    assert len(versions(tmp_path)) == 1
    assert not os.path.lexists(tmp_path / "..data_tmp")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "must not be empty"),
        ("/etc/passwd", "must be relative path"),
        ("a/../../b", "must not contain '..'"),
        ("..data", "must not start with '..'"),
        ("..x/y", "must not start with '..'"),
        ("./", "must name a file"),
        ("a" * 256, "filenames must be less than or equal to 255 characters"),
    ],
)
def test_invalid_paths(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_payload(tmp_path, {path: FileProjection(b"", 0o644)})
    assert list(tmp_path.iterdir()) == []


def test_clean_paths_and_collisions(tmp_path: Path) -> None:
    assert validate_path("a//b/") == "a/b"
    assert validate_path("./a") == "a"
    with pytest.raises(ValueError, match="a/b is inside the file a"):
        write_payload(tmp_path, {"a": FileProjection(b"", 0o644), "a/b": FileProjection(b"", 0o644)})
