"""hostPath volumes and subPaths: what is mounted is what was checked (the kubelet's subPath
safe-open).

``open_host_path`` normalises the path lexically (``..`` removed, as the admission check does),
requires it under an allowed prefix, then opens it from ``/`` one component at a time with
``O_PATH|O_NOFOLLOW``, each relative to its parent's descriptor. A symlink is never followed by
the kernel: its target is read, joined with the rest of the path, checked against the prefixes
again and walked from ``/`` (at most 40 links). Missing components are created relative to
their parent's descriptor (``mkdirat``, ``openat(O_CREAT|O_EXCL|O_NOFOLLOW)``) per the volume's
type, modes set through the descriptor. The caller bind-mounts the opened descriptor
(``/proc/self/fd/N``) onto a staging path of its own, so a symlink swapped in after the check
changes nothing (``pykubelet.volumes``).

Types, as in Kubernetes: ``Directory``/``File`` must exist as such (else "hostPath type check
failed: ..."); ``DirectoryOrCreate`` creates a missing directory (0755, with its parents),
``FileOrCreate`` a missing empty file (0644; its parent must exist); ``""`` checks nothing but,
like Docker's ``-v``, creates a missing directory rather than fail.

``open_in_volume`` walks a subPath the same way with the volume's own directory as the only
prefix: a symlink inside a volume may lead anywhere inside it, never out of it; missing
directories are created with the mode the caller gives (the volume root's, as the kubelet does).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pykubelet.runtime.base import CreateContainerError
from pymaster.api import objects_pb2
from pymaster.api.admission import normalize_host_path, under_prefix

_HOST_DIR_MODE = 0o755  # hostPath DirectoryOrCreate, as in Kubernetes
_HOST_FILE_MODE = 0o644  # hostPath FileOrCreate, as in Kubernetes
_MAX_SYMLINKS = 40  # the kernel's limit of symlinks in one path lookup (ELOOP)
# A component of a hostPath walk: the inode itself, never a symlink's target, no read access needed.
_OPEN_COMPONENT = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class HostPath:
    """A hostPath volume's path as ``open_host_path`` opened it.

    Attributes:
        fd: an ``O_PATH`` descriptor of the inode (valid inside the ``with`` block only).
        path: the path walked: normalized, each symlink replaced by its (checked) target.
        is_dir: the inode is a directory.
    """

    fd: int
    path: str
    is_dir: bool


@contextlib.contextmanager
def open_host_path(
    source: objects_pb2.HostPathVolumeSource, allowed_prefixes: Sequence[str]
) -> Iterator[HostPath]:
    """Resolves, checks and (per type) creates a hostPath volume's path without ever letting the
    kernel follow a symlink, and yields it opened (blocking; see the module docstring).

    Args:
        source: the volume's hostPath.
        allowed_prefixes: normalized prefixes the path, and every symlink's target on the way,
            must lie under.

    Raises:
        CreateContainerError: not an absolute path, outside the allowed prefixes (at once or
            through a symlink), too many symlinks, a component that is not a directory, or a
            failed type check.
        OSError: creating it failed (e.g. FileOrCreate without its parent directory).
    """
    given, kind = source.path, source.type
    try:
        path = normalize_host_path(given)
    except ValueError:
        raise CreateContainerError(f"hostPath {given!r} is not an absolute path") from None
    allowed = f"(allowed: {', '.join(allowed_prefixes) or 'none'}; pykubelet --allowed-host-path PREFIX)"
    if not under_prefix(path, allowed_prefixes):
        raise CreateContainerError(f"hostPath {given} is not under an allowed prefix {allowed}")

    def outside(link: str, target: str) -> str:
        reason = f"which is not under an allowed prefix {allowed}"
        return f"hostPath {given}: the symlink {link} leads to {target}, {reason}"

    walk = _Walk(kind, f"hostPath {given}", _HOST_DIR_MODE)
    with _open_checked(path, allowed_prefixes, walk, outside) as host:
        if kind in ("Directory", "DirectoryOrCreate") and not host.is_dir:
            raise CreateContainerError(f"hostPath type check failed: {given} is not a directory")
        if kind in ("File", "FileOrCreate") and not stat.S_ISREG(os.fstat(host.fd).st_mode):
            raise CreateContainerError(f"hostPath type check failed: {given} is not a file")
        yield host


@contextlib.contextmanager
def open_in_volume(volume_root: str, sub_path: str, dir_mode: int, what: str) -> Iterator[HostPath]:
    """Opens ``sub_path`` inside the volume whose directory is ``volume_root`` (a resolved
    absolute path), as the kubelet's subPath safe-open does: symlinks inside the volume are
    followed by hand and must stay inside it; missing directories on the way are created
    (``dir_mode``, the volume root's mode as the kubelet takes it). Yields it opened (blocking).

    Args:
        volume_root: the volume's directory on the host, symlinks resolved.
        sub_path: a relative path without ``..`` elements (validated at apply).
        dir_mode: the mode of directories created on the way.
        what: how messages name the path (``subPath "a/b" of volume "data"``).

    Raises:
        CreateContainerError: a symlink leading out of the volume, too many symlinks, a component
            that is not a directory.
        OSError: creating a directory failed.
    """
    path = normalize_host_path(posixpath.join(volume_root, sub_path))

    def outside(link: str, target: str) -> str:
        return f"{what}: the symlink {link.removeprefix(volume_root + '/')} leads out of the volume"

    if not under_prefix(path, [volume_root]):
        raise CreateContainerError(f"{what} is not inside the volume")
    walk = _Walk("DirectoryOrCreate", what, dir_mode, hidden=volume_root + "/")
    with _open_checked(path, [volume_root], walk, outside) as opened:
        yield opened


@dataclass(frozen=True)
class _Walk:
    """How one walk treats missing components: ``kind`` as a hostPath type, new directories get
    ``dir_mode``; ``what`` names the path in messages, which leave out the prefix ``hidden`` (a
    volume's host directory is the agent's business, not the pod's)."""

    kind: str
    what: str
    dir_mode: int
    hidden: str = ""


@contextlib.contextmanager
def _open_checked(
    path: str, allowed_prefixes: Sequence[str], walk: _Walk, outside: Callable[[str, str], str]
) -> Iterator[HostPath]:
    """Walks normalized ``path`` (under ``allowed_prefixes``) without the kernel following any
    symlink; each symlink's target is checked against the prefixes (``outside`` says why not)."""
    for _ in range(_MAX_SYMLINKS + 1):
        walked = _walk(path, walk)
        if isinstance(walked, int):
            break
        link, path = walked
        if not under_prefix(path, allowed_prefixes):
            raise CreateContainerError(outside(link, path))
    else:
        raise CreateContainerError(f"{walk.what}: too many levels of symbolic links")
    try:
        yield HostPath(walked, path, stat.S_ISDIR(os.fstat(walked).st_mode))
    finally:
        os.close(walked)


def _walk(path: str, walk: _Walk) -> int | tuple[str, str]:
    """Opens normalized ``path`` from ``/`` one component at a time, following no symlink and
    creating missing components as ``walk.kind`` asks. Returns the last component's descriptor,
    or, at the first symlink, (the link, the normalized path with the link replaced by its target)."""
    names = [name for name in path.split("/") if name]
    parent = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(names):
            here = "/" + "/".join(names[: i + 1])
            last = i == len(names) - 1
            child = _open_component(parent, name, here, last, walk)
            os.close(parent)
            parent = child
            mode = os.fstat(child).st_mode
            if stat.S_ISLNK(mode):
                # The very link opened ("" reads the descriptor's own link), relative to the
                # link's directory, whose path was just walked free of symlinks.
                target = posixpath.join(posixpath.dirname(here), os.readlink("", dir_fd=child))
                return here, normalize_host_path(posixpath.join(target, *names[i + 1 :]))
            if not last and not stat.S_ISDIR(mode):
                shown = here.removeprefix(walk.hidden) if walk.hidden else here
                raise CreateContainerError(f"{walk.what}: {shown} is not a directory")
        opened, parent = parent, -1  # the caller owns it now
        return opened
    finally:
        if parent >= 0:
            os.close(parent)


def _open_component(parent: int, name: str, here: str, last: bool, walk: _Walk) -> int:
    """``name`` in the directory ``parent`` opened with ``_OPEN_COMPONENT``, created first when
    missing and ``walk.kind`` creates it."""
    kind = walk.kind
    try:
        return os.open(name, _OPEN_COMPONENT, dir_fd=parent)
    except FileNotFoundError:
        pass
    # Only what this call creates gets its mode set (the umask cuts the one given at creation); a
    # component someone else created meanwhile is left as it is. O_EXCL and mkdirat never follow
    # a symlink planted in the meantime: they fail, and the open below sees the link.
    if kind == "FileOrCreate" and last:
        with contextlib.suppress(FileExistsError):
            _close_after_chmod(
                os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        _HOST_FILE_MODE, dir_fd=parent),
                _HOST_FILE_MODE,
            )
    elif kind in ("", "DirectoryOrCreate"):
        try:
            os.mkdir(name, walk.dir_mode & 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        else:
            _close_after_chmod(
                os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent),
                walk.dir_mode,
            )
    elif kind == "FileOrCreate":  # FileOrCreate creates the file, never its parent directory
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), here)
    else:
        given = walk.what.removeprefix("hostPath ")
        raise CreateContainerError(f"hostPath type check failed: {given} does not exist (type {kind})")
    return os.open(name, _OPEN_COMPONENT, dir_fd=parent)


def _close_after_chmod(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
