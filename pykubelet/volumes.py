"""The host side of volumes (the kubelet's volume manager, apart from its runtime): before a
container starts, prepare on the host everything it mounts and hand the runtime plain bind mounts
(``runtime.base.Mount``); once a pod's containers are removed, clean up what its volumes left.

On disk, under the pods dir (``<root-dir>/pods``)::

    <pods-dir>/<pod uid>/                 0750, created with the pod's first volume
    <pods-dir>/<pod uid>/volumes/<name>/  an emptyDir, 0777 like kubelet's

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
- ``hostPath``: the path as given. Per type, checked (and created) before the container is
  created: ``Directory``/``File`` must exist as such (else CreateContainerError "hostPath type
  check failed: ..."); ``DirectoryOrCreate`` creates a missing directory (0755, with its
  parents), ``FileOrCreate`` a missing empty file (0644; its parent must exist), as in
  Kubernetes; ``""`` checks nothing but, like Docker's ``-v`` and containerd, creates a missing
  directory rather than fail. Whether the path is allowed at all is the admission's business
  (master and agent), not this module's. hostPath data is never cleaned up.

Safety: the pods dir must be a real directory (not a symlink) owned by the agent's user, pod
uids and volume names must be plain path components, and cleanup never follows a symlink a
container planted in an emptyDir, nor deletes across a mount point it did not make.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import stat
import threading
from pathlib import Path

from pykubelet.runtime.base import ContainerRuntimeError, CreateContainerError, Mount
from pymaster.api import objects_pb2
from pymaster.api.quantity import memory_bytes

log = logging.getLogger(__name__)

_POD_DIR_MODE = 0o750  # the pods dir, each pod's dir and its volumes dir: nobody else's business
_EMPTY_DIR_MODE = 0o777  # kubelet's emptyDir permissions: any user of any container may write
_HOST_DIR_MODE = 0o755  # hostPath DirectoryOrCreate, as in Kubernetes
_HOST_FILE_MODE = 0o644  # hostPath FileOrCreate, as in Kubernetes
_VOLUMES_SUBDIR = "volumes"
# A pod uid or volume name as one path component: never "", "." or "..", never a "/".
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
_MOUNTINFO = "/proc/self/mountinfo"
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")
_MNT_DETACH = 2  # umount2(2): lazy unmount, works while a container still holds the mount

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class PodVolumes:
    """The volume manager of one agent.

    Args:
        pods_dir: where pods' volumes live on the host (``<root-dir>/pods``); the engine must see
            the same file system. Created on first use (0750).
    """

    def __init__(self, pods_dir: str | Path):
        # Docker wants absolute bind sources; not resolved, so a symlinked root_dir stays as given.
        self._pods_dir = Path(os.path.abspath(pods_dir))
        self._mount_lock = threading.Lock()  # one check-then-mount of a tmpfs at a time

    def volume_dir(self, pod_uid: str, volume: str) -> Path:
        """The host directory of the pod's emptyDir ``volume`` (whether it exists or not)."""
        return self._pods_dir / pod_uid / _VOLUMES_SUBDIR / volume

    async def mounts(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> list[Mount]:
        """Prepares on the host each volume ``container`` mounts (see the module docstring) and
        returns its bind mounts in volumeMounts order. Preparing again is harmless.

        Raises:
            CreateContainerError: an unknown volume or one without a source, an unsafe name, a bad
                sizeLimit, a failed hostPath type check, a refused pods dir, a tmpfs the agent
                may not mount (not root), or a directory or file that could not be created.
        """
        try:  # file system work (mkdir, stat, mount) may block: not on the event loop
            return await asyncio.to_thread(self._prepare, pod, container)
        except OSError as err:
            raise CreateContainerError(f"preparing the volumes of container {container.name}: {err}") from err

    async def cleanup(self, pod_uid: str) -> None:
        """Removes what the pod's volumes left on this node: unmounts its tmpfs volumes, then
        deletes ``<pods-dir>/<uid>`` without following any symlink in it. hostPath data is never
        touched. Call it once the pod's containers are removed. A pod that never had a directory
        (no volumes, already cleaned up, or a uid that is not a plain path component) is fine.

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
        mounts = []
        for mount in container.volume_mounts:
            volume = volumes.get(mount.name)
            if volume is None:
                raise CreateContainerError(
                    f'volume "{mount.name}" of container {container.name} is not in the pod'
                )
            if volume.HasField("host_path"):
                source = prepare_host_path(volume.host_path)
            elif volume.HasField("empty_dir"):
                source = self._empty_dir(pod.metadata.uid, volume)
            else:
                raise CreateContainerError(f"volume {volume.name} has no source (hostPath or emptyDir)")
            mounts.append(Mount(target=mount.mount_path, source=source, read_only=mount.read_only))
        return mounts

    def _empty_dir(self, pod_uid: str, volume: objects_pb2.Volume) -> str:
        """The host directory of an emptyDir, created (0777) if missing, with its tmpfs mounted
        when memory-backed."""
        if not _SAFE_COMPONENT.fullmatch(pod_uid) or not _SAFE_COMPONENT.fullmatch(volume.name):
            raise CreateContainerError(
                f"pod uid {pod_uid!r} or volume name {volume.name!r} is not a safe directory name"
            )
        memory = volume.empty_dir.medium == "Memory"
        options = _tmpfs_options(volume) if memory else ""
        self._ensure_pods_dir()
        path = self.volume_dir(pod_uid, volume.name)
        for parent in (path.parent.parent, path.parent):
            with contextlib.suppress(FileExistsError):
                parent.mkdir(mode=_POD_DIR_MODE)
        try:
            path.mkdir()
        except FileExistsError:
            pass
        else:
            os.chmod(path, _EMPTY_DIR_MODE)  # mkdir's mode is cut by the umask
        if memory:
            self._mount_tmpfs(self._resolved(pod_uid, _VOLUMES_SUBDIR, volume.name), volume.name, options)
        return str(path)

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
        for mount_point, fs_type in reversed(read_mountinfo()):  # the newest (innermost) first
            if fs_type == "tmpfs" and mount_point.startswith(real + os.sep):
                _unmount(mount_point)
                log.info("tmpfs unmounted path=%s", mount_point)
        left = [m for m, _ in read_mountinfo() if m == real or m.startswith(real + os.sep)]
        if left:
            # rmtree would delete the contents of a file system mounted there by someone else.
            raise ContainerRuntimeError(f"{pod_dir} still has mount points: {', '.join(left)}")
        # rmtree is symlink-safe on Linux (it walks by file descriptor, never follows links).
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(pod_dir)


def prepare_host_path(source: objects_pb2.HostPathVolumeSource) -> str:
    """Checks (and per type creates) a hostPath volume's path; returns it (blocking).

    Raises:
        CreateContainerError: not an absolute path, or the type check failed.
        OSError: creating it failed (e.g. FileOrCreate without its parent directory).
    """
    path, kind = source.path, source.type
    if not path.startswith("/") or "\x00" in path:
        raise CreateContainerError(f"hostPath {path!r} is not an absolute path")
    if not os.path.exists(path):
        # Only what this call created gets its mode set (the umask cuts the one given at creation);
        # a path someone else created meanwhile is left as it is.
        if kind in ("", "DirectoryOrCreate"):
            os.makedirs(os.path.dirname(path), mode=_HOST_DIR_MODE, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, _HOST_DIR_MODE)
                os.chmod(path, _HOST_DIR_MODE)
        elif kind == "FileOrCreate":
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _HOST_FILE_MODE)
                try:
                    os.fchmod(fd, _HOST_FILE_MODE)
                finally:
                    os.close(fd)
        else:
            raise CreateContainerError(f"hostPath type check failed: {path} does not exist (type {kind})")
    if kind in ("Directory", "DirectoryOrCreate") and not os.path.isdir(path):
        raise CreateContainerError(f"hostPath type check failed: {path} is not a directory")
    if kind in ("File", "FileOrCreate") and not os.path.isfile(path):
        raise CreateContainerError(f"hostPath type check failed: {path} is not a file")
    return path


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


def _unmount(path: str) -> None:
    """umount2(2) ``path`` lazily; one that is no mount point any more is fine."""
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, os.strerror(code), path)
