"""The host side of volumes (the kubelet's volume manager, apart from its runtime): before a
container starts, prepare on the host everything it mounts and hand the runtime plain bind mounts
(``runtime.base.Mount``); once a pod's containers are removed, clean up what its volumes left.

On disk, under the pods dir (``<root-dir>/pods``)::

    <pods-dir>/<pod uid>/                                      0750, created with the pod's first volume
    <pods-dir>/<pod uid>/volumes/<name>/                       an emptyDir, 0777 like kubelet's
    <pods-dir>/<pod uid>/volume-hostpaths/<name>/<container>   a hostPath, bind-mounted here (staged)

The per-pod ``volumes/`` level, as in the kubelet, leaves room beside it for other per-pod files
without a volume name ever clashing with them.

- ``emptyDir`` on disk: that directory, bind-mounted into every container of the pod that mounts
  it, so they share it; it outlives container restarts and sandbox re-creations and goes with
  ``cleanup``. ``sizeLimit`` is not enforced on disk (Kubernetes evicts such pods; pykube has no
  eviction yet).
- ``emptyDir`` with ``medium: Memory``: as the kubelet does, a tmpfs mounted ON THE HOST at that
  directory (``mode=0777``, ``size=`` the sizeLimit; without one the kernel's default, half the
  RAM), then bind-mounted like the disk one. Its data therefore survives container restarts and
  sandbox re-creations, and an agent restart: a directory that already is a tmpfs mount point is
  used as it is, never mounted twice. Mounting needs root (CAP_SYS_ADMIN), and the agent must
  share its mount namespace with the Docker Engine (a local engine; an agent in a container
  needs the pods dir mounted with shared propagation).
- ``hostPath``: what is mounted is what was checked (the kubelet's subPath safe-open). The path
  is normalized lexically (``/data/l/../x`` is ``/data/x``, as the admission sees it), must lie
  under one of the node's allowed prefixes (``--allowed-host-path``), and is then opened from
  ``/`` one component at a time with ``O_PATH|O_NOFOLLOW`` relative to its parent's descriptor.
  A symlink met on the way is resolved here, never by the kernel: its target (relative to the
  link's directory), followed by the rest of the path, is normalized, must again lie under an
  allowed prefix, and is walked afresh from ``/`` (at most 40 links, the kernel's own limit).
  Missing components are created relative to their parent's descriptor (``mkdirat``/``openat``
  with ``O_EXCL|O_NOFOLLOW``), never by path. Per type: ``Directory``/``File`` must exist as such
  (else CreateContainerError "hostPath type check failed: ..."); ``DirectoryOrCreate`` creates a
  missing directory (0755, with its parents), ``FileOrCreate`` a missing empty file (0644; its
  parent must exist), as in Kubernetes; ``""`` checks nothing but, like Docker's ``-v``, creates
  a missing directory rather than fail. The opened descriptor itself (``/proc/self/fd/<n>``, a
  link to the inode, not to a path) is then bind-mounted (recursively, like Docker's own bind)
  onto a staging mount point of the agent's, ``volume-hostpaths/<volume>/<container>`` (an empty
  directory, or an empty file for a non-directory), and Docker gets that staging path: a symlink
  swapped in after the check changes nothing, since no pod can write in the agent's directory.
  Each container start stages afresh (an earlier attempt's staging is unmounted first), so a
  restarted container sees the path as it is then, re-checked. Staging needs root, like tmpfs.
  ``cleanup`` unmounts the staged binds; hostPath data itself is never touched.

Safety: the pods dir must be a real directory (not a symlink) owned by the agent's user, pod
uids, volume and container names must be plain path components, and cleanup never follows a
symlink a container planted in an emptyDir, nor deletes across a mount point it did not make.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import posixpath
import re
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pykubelet.runtime.base import ContainerRuntimeError, CreateContainerError, Mount
from pymaster.api import objects_pb2
from pymaster.api.admission import normalize_host_path, under_prefix
from pymaster.api.quantity import memory_bytes

log = logging.getLogger(__name__)

_POD_DIR_MODE = 0o750  # the pods dir, each pod's dir and its volumes dir: nobody else's business
_EMPTY_DIR_MODE = 0o777  # kubelet's emptyDir permissions: any user of any container may write
_HOST_DIR_MODE = 0o755  # hostPath DirectoryOrCreate, as in Kubernetes
_HOST_FILE_MODE = 0o644  # hostPath FileOrCreate, as in Kubernetes
_STAGING_MODE = 0o750  # a staging mount point: covered by the bind mount, never seen by pods
_VOLUMES_SUBDIR = "volumes"
_STAGING_SUBDIR = "volume-hostpaths"
# A pod uid or volume name as one path component: never "", "." or "..", never a "/".
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
_MOUNTINFO = "/proc/self/mountinfo"
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")
_MNT_DETACH = 2  # umount2(2): lazy unmount, works while a container still holds the mount
_UMOUNT_NOFOLLOW = 8  # umount2(2): never unmount where a symlink points
_MS_BIND = 4096
_MS_REC = 16384  # with MS_BIND: the mounts below the source too, as Docker's bind mounts do
_MAX_SYMLINKS = 40  # the kernel's limit of symlinks in one path lookup (ELOOP)
# A component of a hostPath walk: the inode itself, never a symlink's target, no read access needed.
_OPEN_COMPONENT = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class PodVolumes:
    """The volume manager of one agent.

    Args:
        pods_dir: where pods' volumes live on the host (``<root-dir>/pods``); the engine must see
            the same file system. Created on first use (0750).
        allowed_host_paths: the prefixes hostPath volumes may use (the node's
            ``AdmissionPolicy.allowed_host_paths``); empty: none. Every hostPath, and every
            symlink met while resolving it, is checked against them again here.

    Raises:
        ValueError: a prefix is not an absolute path.
    """

    def __init__(self, pods_dir: str | Path, allowed_host_paths: Iterable[str] = ()):
        # Docker wants absolute bind sources; not resolved, so a symlinked root_dir stays as given.
        self._pods_dir = Path(os.path.abspath(pods_dir))
        self._allowed_host_paths = tuple(normalize_host_path(prefix) for prefix in allowed_host_paths)
        self._mount_lock = threading.Lock()  # one check-then-mount (tmpfs, staged hostPath) at a time

    def volume_dir(self, pod_uid: str, volume: str) -> Path:
        """The host directory of the pod's emptyDir ``volume`` (whether it exists or not)."""
        return self._pods_dir / pod_uid / _VOLUMES_SUBDIR / volume

    async def mounts(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> list[Mount]:
        """Prepares on the host each volume ``container`` mounts (see the module docstring) and
        returns its bind mounts in volumeMounts order. Preparing again is harmless.

        Raises:
            CreateContainerError: an unknown volume or one without a source, an unsafe name, a bad
                sizeLimit, a hostPath outside the allowed prefixes (or resolving out of them
                through a symlink) or failing its type check, a refused pods dir, a tmpfs or
                staged hostPath the agent may not mount (not root), or a directory or file that
                could not be created.
        """
        try:  # file system work (mkdir, stat, mount) may block: not on the event loop
            return await asyncio.to_thread(self._prepare, pod, container)
        except OSError as err:
            raise CreateContainerError(f"preparing the volumes of container {container.name}: {err}") from err

    async def cleanup(self, pod_uid: str) -> None:
        """Removes what the pod's volumes left on this node: unmounts its tmpfs volumes and its
        staged hostPath binds, then deletes ``<pods-dir>/<uid>`` without following any symlink in
        it. hostPath data is never touched. Call it once the pod's containers are removed. A pod
        that never had a directory (no volumes, already cleaned up, or a uid that is not a plain
        path component) is fine.

        Raises:
            ContainerRuntimeError: something could not be unmounted or removed (retry later).
        """
        if not _SAFE_COMPONENT.fullmatch(pod_uid):  # such a uid never got a directory
            return
        try:
            await asyncio.to_thread(self._cleanup, pod_uid)
        except OSError as err:
            raise ContainerRuntimeError(f"removing the volumes of pod {pod_uid}: {err}") from err

    def _prepare(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> list[Mount]:
        volumes = {volume.name: volume for volume in pod.spec.volumes}
        staged: dict[str, str] = {}  # volume name -> staging path: one bind per volume and container
        mounts = []
        for mount in container.volume_mounts:
            volume = volumes.get(mount.name)
            if volume is None:
                raise CreateContainerError(
                    f'volume "{mount.name}" of container {container.name} is not in the pod'
                )
            if volume.HasField("host_path"):
                if volume.name not in staged:
                    staged[volume.name] = self._host_path(pod.metadata.uid, container.name, volume)
                source = staged[volume.name]
            elif volume.HasField("empty_dir"):
                source = self._empty_dir(pod.metadata.uid, volume)
            else:
                raise CreateContainerError(f"volume {volume.name} has no source (hostPath or emptyDir)")
            mounts.append(Mount(target=mount.mount_path, source=source, read_only=mount.read_only))
        return mounts

    def _empty_dir(self, pod_uid: str, volume: objects_pb2.Volume) -> str:
        """The host directory of an emptyDir, created (0777) if missing, with its tmpfs mounted
        when memory-backed."""
        _check_names(pod_uid, volume.name)
        memory = volume.empty_dir.medium == "Memory"
        options = _tmpfs_options(volume) if memory else ""
        self._ensure_pods_dir()
        path = self.volume_dir(pod_uid, volume.name)
        _make_dirs(path.parent.parent, path.parent)
        try:
            path.mkdir()
        except FileExistsError:
            pass
        else:
            os.chmod(path, _EMPTY_DIR_MODE)  # mkdir's mode is cut by the umask
        if memory:
            self._mount_tmpfs(self._resolved(pod_uid, _VOLUMES_SUBDIR, volume.name), volume.name, options)
        return str(path)

    def _host_path(self, pod_uid: str, container: str, volume: objects_pb2.Volume) -> str:
        """Resolves, checks (and per type creates) a hostPath, bind-mounts the opened inode onto
        the container's staging mount point of that volume and returns the staging path."""
        _check_names(pod_uid, volume.name, container)
        staging = self._pods_dir / pod_uid / _STAGING_SUBDIR / volume.name / container
        real = self._resolved(pod_uid, _STAGING_SUBDIR, volume.name, container)
        with open_host_path(volume.host_path, self._allowed_host_paths) as host:
            self._ensure_pods_dir()
            pod_dir = self._pods_dir / pod_uid
            _make_dirs(pod_dir, pod_dir / _STAGING_SUBDIR, pod_dir / _STAGING_SUBDIR / volume.name)
            with self._mount_lock:
                # An earlier start's bind (its container keeps its own copy): stage afresh.
                for mount_point, _ in read_mountinfo():
                    if mount_point == real:
                        _unmount(real)
                _make_mount_point(staging, host.is_dir)
                try:
                    _bind_mount(f"/proc/self/fd/{host.fd}", real)
                except PermissionError as err:
                    raise CreateContainerError(
                        f"hostPath volume {volume.name} is bind-mounted on the host from the checked path: "
                        f"the agent must run as root (CAP_SYS_ADMIN) ({err})"
                    ) from err
        log.info("hostPath staged volume=%s path=%s resolved=%s staging=%s", volume.name,
                 volume.host_path.path, host.path, staging)
        return str(staging)

    def _mount_tmpfs(self, path: str, volume: str, options: str) -> None:
        with self._mount_lock:
            if mount_type(path) == "tmpfs":  # mounted by an earlier start, or an earlier agent
                return
            try:
                _mount_tmpfs(path, options)
            except PermissionError as err:
                raise CreateContainerError(
                    f"emptyDir volume {volume} with medium: Memory needs a tmpfs mount on the host: "
                    f"the agent must run as root (CAP_SYS_ADMIN) ({err})"
                ) from err
        log.info("tmpfs mounted path=%s options=%s", path, options)

    def _resolved(self, *parts: str) -> str:
        """A path under the pods dir as mountinfo shows it (symlinks resolved): only the pods dir
        is resolved, since everything below it is the agent's own making."""
        return os.path.join(os.path.realpath(self._pods_dir), *parts)

    def _ensure_pods_dir(self) -> None:
        """Creates the pods dir if missing; refuses one that a symlink or another user could
        redirect (in a shared /tmp, someone else may have created the path first)."""
        self._pods_dir.mkdir(mode=_POD_DIR_MODE, parents=True, exist_ok=True)
        info = self._pods_dir.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise CreateContainerError(f"pods dir {self._pods_dir} is not a directory (a symlink?)")
        if info.st_uid != os.geteuid():
            raise CreateContainerError(
                f"pods dir {self._pods_dir} belongs to uid {info.st_uid}, not to this agent's user"
            )

    def _cleanup(self, pod_uid: str) -> None:
        pod_dir = self._pods_dir / pod_uid
        if not os.path.lexists(pod_dir):
            return
        real = self._resolved(pod_uid)
        staged = self._resolved(pod_uid, _STAGING_SUBDIR)
        for mount_point, fs_type in reversed(read_mountinfo()):  # the newest (innermost) first
            if mount_point.startswith(staged + os.sep):
                # Detaching a staged (recursive) bind detaches what it carries along with it.
                _unmount(mount_point)
                log.info("hostPath unstaged path=%s", mount_point)
            elif fs_type == "tmpfs" and mount_point.startswith(real + os.sep):
                _unmount(mount_point)
                log.info("tmpfs unmounted path=%s", mount_point)
        left = [m for m, _ in read_mountinfo() if m == real or m.startswith(real + os.sep)]
        if left:
            # rmtree would delete the contents of a file system mounted there by someone else.
            raise ContainerRuntimeError(f"{pod_dir} still has mount points: {', '.join(left)}")
        # rmtree is symlink-safe on Linux (it walks by file descriptor, never follows links).
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(pod_dir)


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
    for _ in range(_MAX_SYMLINKS + 1):
        walked = _walk(path, kind, given)
        if isinstance(walked, int):
            break
        link, path = walked
        if not under_prefix(path, allowed_prefixes):
            raise CreateContainerError(
                f"hostPath {given}: the symlink {link} leads to {path}, which is not under an allowed prefix "
                + allowed
            )
    else:
        raise CreateContainerError(f"hostPath {given}: too many levels of symbolic links")
    try:
        mode = os.fstat(walked).st_mode
        if kind in ("Directory", "DirectoryOrCreate") and not stat.S_ISDIR(mode):
            raise CreateContainerError(f"hostPath type check failed: {given} is not a directory")
        if kind in ("File", "FileOrCreate") and not stat.S_ISREG(mode):
            raise CreateContainerError(f"hostPath type check failed: {given} is not a file")
        yield HostPath(walked, path, stat.S_ISDIR(mode))
    finally:
        os.close(walked)


def _walk(path: str, kind: str, given: str) -> int | tuple[str, str]:
    """Opens normalized ``path`` from ``/`` one component at a time, following no symlink and
    creating missing components as ``kind`` asks. Returns the last component's descriptor, or, at
    the first symlink, (the link, the normalized path with the link replaced by its target)."""
    names = [name for name in path.split("/") if name]
    parent = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(names):
            here = "/" + "/".join(names[: i + 1])
            last = i == len(names) - 1
            child = _open_component(parent, name, here, kind, last, given)
            os.close(parent)
            parent = child
            mode = os.fstat(child).st_mode
            if stat.S_ISLNK(mode):
                # The very link opened ("" reads the descriptor's own link), relative to the
                # link's directory, whose path was just walked free of symlinks.
                target = posixpath.join(posixpath.dirname(here), os.readlink("", dir_fd=child))
                return here, normalize_host_path(posixpath.join(target, *names[i + 1 :]))
            if not last and not stat.S_ISDIR(mode):
                raise CreateContainerError(f"hostPath {given}: {here} is not a directory")
        opened, parent = parent, -1  # the caller owns it now
        return opened
    finally:
        if parent >= 0:
            os.close(parent)


def _open_component(parent: int, name: str, here: str, kind: str, last: bool, given: str) -> int:
    """``name`` in the directory ``parent`` opened with ``_OPEN_COMPONENT``, created first when
    missing and ``kind`` creates it."""
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
            os.mkdir(name, _HOST_DIR_MODE, dir_fd=parent)
        except FileExistsError:
            pass
        else:
            _close_after_chmod(
                os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent),
                _HOST_DIR_MODE,
            )
    elif kind == "FileOrCreate":  # FileOrCreate creates the file, never its parent directory
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), here)
    else:
        raise CreateContainerError(f"hostPath type check failed: {given} does not exist (type {kind})")
    return os.open(name, _OPEN_COMPONENT, dir_fd=parent)


def _close_after_chmod(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _check_names(pod_uid: str, volume: str, container: str | None = None) -> None:
    """Refuses a pod uid, volume or container name that is not one plain path component."""
    named = [("pod uid", pod_uid), ("volume name", volume)]
    if container is not None:
        named.append(("container name", container))
    for what, name in named:
        if not _SAFE_COMPONENT.fullmatch(name):
            raise CreateContainerError(f"{what} {name!r} is not a safe directory name")


def _make_dirs(*paths: Path) -> None:
    """Creates each of ``paths`` (parents first, 0750) that is missing."""
    for path in paths:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=_POD_DIR_MODE)


def _make_mount_point(path: Path, is_dir: bool) -> None:
    """Makes ``path`` an empty directory (``is_dir``) or an empty file, the mount point a bind of
    that kind needs, replacing an earlier one of the other kind."""
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
            path.mkdir(mode=_STAGING_MODE)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(path, flags, _STAGING_MODE & 0o666))


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


def _tmpfs_options(volume: objects_pb2.Volume) -> str:
    """The tmpfs mount options of a memory-backed emptyDir: mode, and size from its sizeLimit."""
    limit = volume.empty_dir.size_limit
    try:
        size = memory_bytes(limit) if limit else 0
    except ValueError as err:
        raise CreateContainerError(f"invalid sizeLimit of volume {volume.name}: {err}") from err
    options = f"mode={_EMPTY_DIR_MODE:04o}"
    return f"{options},size={size}" if size > 0 else options  # size=0 would mean unlimited


def _mount_tmpfs(path: str, options: str) -> None:
    """mount(2) a tmpfs at ``path`` (``mount -t tmpfs -o <options> tmpfs <path>``)."""
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _bind_mount(source: str, target: str) -> None:
    """mount(2) ``source`` recursively onto ``target`` (``mount --rbind <source> <target>``)."""
    if _libc.mount(os.fsencode(source), os.fsencode(target), None, _MS_BIND | _MS_REC, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def _unmount(path: str) -> None:
    """umount2(2) ``path`` lazily, never through a symlink; one that is no mount point any more is
    fine."""
    if _libc.umount2(os.fsencode(path), _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), path)
