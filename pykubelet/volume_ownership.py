"""fsGroup ownership of a pod's volumes (the kubelet's ``SetVolumeOwnership``): with
``spec.securityContext.fsGroup`` set, every file and directory of a volume gets that group, the
group may read (and, in a writable volume, write) everything, directories are setgid (what is
created in them later inherits the group) and searchable by the group.

- Read-write volumes (emptyDir) get ``g+rw`` (``| 0660``), read-only ones (configMap, secret,
  downwardAPI, projected, which containers mount read-only) ``| 0440``; directories also
  ``g+s`` and ``ug+x``. Modes are only ever widened, never narrowed; owners stay.
- ``fsGroupChangePolicy: OnRootMismatch``: nothing is walked when the volume's root directory
  already has the group, the bits and setgid (a volume once handed over is taken as it is);
  ``Always`` (the default) walks every time.
- Symlinks get the group (lchown) but no chmod: chmod would change their target.

The walk is safe against a container that rearranges a writable volume meanwhile: directories
are walked by descriptor (``os.fwalk``), each entry is opened with ``O_PATH|O_NOFOLLOW`` and
changed through that descriptor, so a symlink swapped in is never followed; it never leaves the
volume's file system (a mount point inside it is skipped). Errors on single entries are logged
and skipped, as the kubelet does.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110  # directories: user and group may enter them
ON_ROOT_MISMATCH = "OnRootMismatch"


def set_volume_ownership(root: Path, fs_group: int, read_only: bool, policy: str = "") -> bool:
    """Gives the volume at ``root`` to group ``fs_group`` (see the module docstring).

    Args:
        root: the volume's directory on the host.
        fs_group: the pod's fsGroup.
        read_only: a volume containers cannot write (group read, not write).
        policy: the pod's fsGroupChangePolicy ("" or Always: walk; OnRootMismatch: only when the
            root does not match yet).

    Returns:
        Whether the volume was walked (False: skipped by OnRootMismatch).
    """
    mask = RO_MASK if read_only else RW_MASK
    if policy == ON_ROOT_MISMATCH and _root_matches(root, fs_group, mask):
        return False
    device = os.lstat(root).st_dev
    for _, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False, onerror=_walk_error):
        _change_dir(dirfd, fs_group, mask)
        for name in list(dirnames):
            try:
                if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_dev != device:
                    dirnames.remove(name)  # another file system mounted in the volume: not ours
            except OSError as err:
                log.warning("fsGroup: stat failed name=%s error=%s", name, err)
                dirnames.remove(name)
        for name in filenames:
            _change_entry(dirfd, name, fs_group, mask, device)
    return True


def _root_matches(root: Path, fs_group: int, mask: int) -> bool:
    """The kubelet's test for OnRootMismatch: the root has the group, setgid and the bits."""
    try:
        info = os.stat(root)
    except OSError:
        return False
    wanted = mask | EXEC_MASK
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_gid == fs_group
        and info.st_mode & wanted == wanted
        and bool(info.st_mode & stat.S_ISGID)
    )


def _change_dir(fd: int, fs_group: int, mask: int) -> None:
    try:
        info = os.fstat(fd)
        os.chown(fd, -1, fs_group)
        os.chmod(fd, stat.S_IMODE(info.st_mode) | mask | EXEC_MASK | stat.S_ISGID)
    except OSError as err:
        log.warning("fsGroup: changing a directory failed error=%s", err)


def _change_entry(dirfd: int, name: str, fs_group: int, mask: int, device: int) -> None:
    """One non-directory entry, through an O_PATH descriptor of the entry itself."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError as err:
        log.warning("fsGroup: open failed name=%s error=%s", name, err)
        return
    try:
        info = os.fstat(fd)
        if info.st_dev != device:
            return
        # An O_PATH descriptor takes no fchown/fchmod; its /proc link reaches that very inode.
        inode = f"/proc/self/fd/{fd}"
        if stat.S_ISLNK(info.st_mode):
            os.chown(name, -1, fs_group, dir_fd=dirfd, follow_symlinks=False)
            return
        os.chown(inode, -1, fs_group)
        os.chmod(inode, stat.S_IMODE(info.st_mode) | mask)
    except OSError as err:
        log.warning("fsGroup: changing failed name=%s error=%s", name, err)
    finally:
        os.close(fd)


def _walk_error(err: OSError) -> None:
    log.warning("fsGroup: walk failed error=%s", err)
