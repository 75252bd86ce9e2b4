"""The kubelet's atomic writer: the files of a configMap, secret, downwardAPI or projected volume,
replaced all at once, so a running container never reads half an update.

Layout of a volume's directory (names starting with ``..`` are the writer's own)::

    ..2024_05_01_10_00_00.k3j2a/      the files of one version (0755), written in full first
    ..data -> ..2024_05_01_10_00_00.k3j2a
    key -> ..data/key                 one symlink per top-level name the user sees
    dir -> ..data/dir                 (a path "dir/file" shows through its first element)

An update writes a new timestamped directory, then renames a new ``..data_tmp`` symlink over
``..data`` (rename(2) is atomic), then adds and removes the user-visible symlinks and deletes the
old version. A reader that opened ``key`` before the swap keeps the old file; a reader opening it
after sees the new one; none sees a mix. Nothing is written when the contents did not change.

Blocking: callers run it in a thread. Not safe for two writers on one directory at once (the
volume manager writes a pod's volumes from that pod's worker only).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = "..data"
_NEW_DATA_DIR = "..data_tmp"
_VERSION_DIR_MODE = 0o755  # group and others must traverse it (a container may run as any user)
_MAX_FILE_NAME = 255
_MAX_PATH = 4096


@dataclass(frozen=True)
class FileProjection:
    """One file of a volume: its bytes and its permission bits."""

    data: bytes
    mode: int


def validate_path(path: str) -> str:
    """``path`` cleaned (``a//b/`` is ``a/b``) if the writer may create it: relative, no ``..``
    element, not starting with ``..`` (the writer's own names), elements of at most 255 bytes.

    Raises:
        ValueError: naming the rule broken.
    """
    if not path:
        raise ValueError("invalid path: must not be empty")
    if path.startswith("/"):
        raise ValueError(f"invalid path: must be relative path: {path}")
    if len(path.encode()) > _MAX_PATH:
        raise ValueError(f"invalid path: must be less than or equal to {_MAX_PATH} characters")
    elements = path.split("/")
    if ".." in elements:
        raise ValueError(f"invalid path: must not contain '..': {path}")
    if any(len(element.encode()) > _MAX_FILE_NAME for element in elements):
        raise ValueError(f"invalid path: filenames must be less than or equal to {_MAX_FILE_NAME} characters")
    if "\x00" in path:
        raise ValueError(f"invalid path: must not contain NUL: {path!r}")
    clean = posixpath.normpath(path)
    if clean.startswith(".."):
        raise ValueError(f"invalid path: must not start with '..': {path}")
    if clean == ".":
        raise ValueError(f"invalid path: must name a file: {path}")
    return clean


def write_payload(
    target: Path, payload: Mapping[str, FileProjection], set_perms: Callable[[], None] | None = None
) -> bool:
    """Makes ``target`` (an existing directory) hold exactly ``payload``, atomically.

    Args:
        target: the volume's directory.
        payload: path inside the volume -> file.
        set_perms: called once the new version is written, before it becomes visible (fsGroup
            ownership of the volume).

    Returns:
        Whether anything was written (False: the volume already held ``payload``).

    Raises:
        ValueError: a path of the payload is invalid (``validate_path``) or two collide.
        OSError: writing failed; the visible version is then the old one.
    """
    clean = {validate_path(path): projection for path, projection in payload.items()}
    _check_collisions(clean)
    data_link = target / DATA_DIR
    try:
        old_version = os.readlink(data_link)
    except FileNotFoundError:
        old_version = None
    to_remove: set[str] = set()
    if old_version is not None:
        old_dir = target / old_version
        to_remove = _visible_names(old_dir) - {path.split("/")[0] for path in clean}
        if not to_remove and not _differs(old_dir, clean):
            return False
    version = _new_version_dir(target)
    try:
        _write_files(target / version, clean)
        if set_perms is not None:
            set_perms()
        new_link = target / _NEW_DATA_DIR
        with contextlib.suppress(FileNotFoundError):
            new_link.unlink()  # left by a writer that died mid-update
        os.symlink(version, new_link)
        os.rename(new_link, data_link)
    except BaseException:
        shutil.rmtree(target / version, ignore_errors=True)
        raise
    for name in {path.split("/")[0] for path in clean}:
        visible = target / name
        if not visible.is_symlink():
            os.symlink(posixpath.join(DATA_DIR, name), visible)
    for name in to_remove:
        with contextlib.suppress(FileNotFoundError):
            (target / name).unlink()
    # The old version, and any a writer that died mid-update left behind.
    for entry in os.scandir(target):
        stale = entry.name.startswith("..") and entry.name not in (DATA_DIR, version)
        if stale and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
    return True


def _check_collisions(payload: Mapping[str, FileProjection]) -> None:
    """A file may not be where another file needs a directory ("a" and "a/b")."""
    for path in payload:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in payload:
                raise ValueError(f"invalid path: {path} is inside the file {'/'.join(parts[:i])}")


def _visible_names(version_dir: Path) -> set[str]:
    """The top-level names of an existing version (what users see through symlinks)."""
    try:
        return {name for name in os.listdir(version_dir)}
    except FileNotFoundError:
        return set()


def _differs(version_dir: Path, payload: Mapping[str, FileProjection]) -> bool:
    """Whether any file of ``payload`` is missing from, or has other contents than, the version
    written in ``version_dir`` (modes are the payload's own and cannot change on their own)."""
    for path, projection in payload.items():
        try:
            fd = os.open(version_dir / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return True
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return True
            with os.fdopen(fd, "rb", closefd=False) as file:
                if file.read(len(projection.data) + 1) != projection.data:
                    return True
        finally:
            os.close(fd)
    return False


def _new_version_dir(target: Path) -> str:
    """A new, empty ``..<UTC time>.<random>`` directory in ``target`` (0755); returns its name."""
    prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    path = tempfile.mkdtemp(prefix=prefix, dir=target)
    os.chmod(path, _VERSION_DIR_MODE)  # mkdtemp makes it 0700
    return os.path.basename(path)


def _write_files(version_dir: Path, payload: Mapping[str, FileProjection]) -> None:
    for path, projection in sorted(payload.items()):
        full = version_dir / path
        for parent in reversed(full.relative_to(version_dir).parents[:-1]):
            directory = version_dir / parent
            if not directory.is_dir():
                directory.mkdir()
                os.chmod(directory, _VERSION_DIR_MODE)  # mkdir's mode is cut by the umask
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(full, flags, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as file:
                file.write(projection.data)
            os.fchmod(fd, projection.mode)  # the umask cut the mode given at creation
        finally:
            os.close(fd)
