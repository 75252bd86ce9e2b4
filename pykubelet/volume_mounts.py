"""Mounts on the host, for the volume manager (``pykubelet.volumes``): reading the mount table
(``/proc/self/mountinfo``), tmpfs mounts, recursive bind mounts and lazy unmounts, through
mount(2)/umount2(2) directly (no ``mount`` binary). Mounting needs root (CAP_SYS_ADMIN);
everything here blocks: callers run it in a thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
from pathlib import Path

_MOUNTINFO = "/proc/self/mountinfo"
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")
_MNT_DETACH = 2  # umount2(2): lazy unmount, works while a container still holds the mount
_UMOUNT_NOFOLLOW = 8  # umount2(2): never unmount where a symlink points
_MS_BIND = 4096
_MS_REC = 16384  # with MS_BIND: the mounts below the source too, as Docker's bind mounts do

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of each line of a ``/proc/<pid>/mountinfo``, in its order
    (a mount stacked on another comes after it); mount points unescaped (``\\040`` is a space)."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)  # after the optional fields
        except ValueError:
            continue
        mount_point = _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        entries.append((mount_point, fields[separator + 1]))
    return entries


def read_mountinfo() -> list[tuple[str, str]]:
    """``parse_mountinfo`` of this process' mount namespace."""
    with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as file:
        return parse_mountinfo(file.read())


def mount_type(path: str) -> str | None:
    """The file system type mounted on top at ``path`` (a resolved path); None: not a mount point."""
    types = [fs_type for mount_point, fs_type in read_mountinfo() if mount_point == path]
    return types[-1] if types else None


def mount_tmpfs(path: str, options: str) -> None:
    """mount(2) a tmpfs at ``path`` (``mount -t tmpfs -o <options> tmpfs <path>``)."""
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options.encode()) != 0:
        _raise(path)


def bind_mount(source: str, target: str) -> None:
    """mount(2) ``source`` recursively onto ``target`` (``mount --rbind <source> <target>``)."""
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, _MS_BIND | _MS_REC, None) != 0:
        _raise(target)


def unmount(path: str) -> None:
    """umount2(2) ``path`` lazily, never through a symlink; one that is no mount point any more is
    fine."""
    if _libc.umount2(os.fsencode(path), _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), path)


def make_mount_point(path: Path, is_dir: bool, mode: int) -> None:
    """Makes ``path`` an empty directory (``is_dir``) or an empty file (``mode``), the mount point
    a bind of that kind needs, replacing an earlier one of the other kind."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode) != is_dir:
        if stat.S_ISDIR(info.st_mode):
            path.rmdir()
        else:
            path.unlink()
        info = None
    if info is None:
        if is_dir:
            path.mkdir(mode=mode)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(path, flags, mode & 0o666))


def rebind(fd: int, is_dir: bool, staging: Path, real_staging: str, mode: int) -> None:
    """Bind-mounts the opened inode ``fd`` onto ``staging`` (``real_staging``: that path with
    symlinks resolved, as the mount table shows it), replacing an earlier start's bind there (the
    container of that start keeps its own copy of the mount). The caller holds the mount lock.

    Raises:
        PermissionError: the agent may not mount (not root).
        OSError: making the mount point failed.
    """
    for mount_point, _ in read_mountinfo():
        if mount_point == real_staging:
            unmount(real_staging)
    make_mount_point(staging, is_dir, mode)
    bind_mount(f"/proc/self/fd/{fd}", real_staging)


def _raise(path: str) -> None:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code), path)
