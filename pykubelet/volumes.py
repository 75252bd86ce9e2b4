"""The host side of volumes (the kubelet's volume manager, apart from its runtime): before a
container starts, prepare on the host everything it mounts and hand the runtime plain bind mounts
(``runtime.base.Mount``); while the pod runs, keep its configMap, secret, downwardAPI and
projected volumes up to date (``refresh``) and measure what its volumes take on disk
(``measure``, for the local storage eviction of ``pykubelet.volume_usage``); once its containers
are removed, clean up what its volumes left.

On disk, under the pods dir (``<root-dir>/pods``)::

    <pods-dir>/<pod uid>/                                      0750, created with the pod's first volume
    <pods-dir>/<pod uid>/volumes/<name>/                       an emptyDir, configMap ... 0777 like kubelet's
    <pods-dir>/<pod uid>/volume-hostpaths/<name>/<container>   a hostPath, bind-mounted here (staged)
    <pods-dir>/<pod uid>/volume-subpaths/<name>/<container>/<i>   a subPath, bind-mounted here (staged)

The per-pod ``volumes/`` level, as in the kubelet, leaves room beside it for other per-pod files
without a volume name ever clashing with them.

- ``emptyDir`` on disk: that directory, bind-mounted into every container of the pod that mounts
  it, so they share it; it outlives container restarts and sandbox re-creations and goes with
  ``cleanup``. A ``sizeLimit`` is watched (``pykubelet.volume_usage``): past it the pod is
  evicted, as by the kubelet's eviction manager; its usage counts in the pod's ephemeral storage.
- ``emptyDir`` with ``medium: Memory``: as the kubelet does, a tmpfs mounted ON THE HOST at that
  directory (``mode=0777``, ``size=`` the sizeLimit; without one the kernel's default, half the
  RAM), then bind-mounted like the disk one. Its data therefore survives container restarts and
  sandbox re-creations, and an agent restart: a directory that already is a tmpfs mount point is
  used as it is, never mounted twice. Mounting needs root (CAP_SYS_ADMIN), and the agent must
  share its mount namespace with the Docker Engine (a local engine; an agent in a container
  needs the pods dir mounted with shared propagation).
- ``configMap``, ``secret``, ``downwardAPI``, ``projected``: the files of
  ``pykubelet.volume_projection`` written with the kubelet's atomic writer
  (``pykubelet.atomic_writer``: a timestamped directory, ``..data`` swapped by rename, one
  symlink per visible name), rewritten by ``refresh`` when the objects (or the pod's labels and
  annotations) change, so a running container sees an update all at once. Always mounted
  read-only, as Kubernetes does. Secret, downwardAPI and projected volumes live in a tmpfs the
  agent mounts first (never on the node's disk); a configMap volume is a directory on disk.
- ``hostPath``: what is mounted is what was checked. ``host_paths.open_host_path`` resolves
  and checks the path against the node's allowed prefixes (``--allowed-host-path``) without the
  kernel following any symlink, creating what the type asks for, and opens it; that descriptor
  (``/proc/self/fd/<n>``, a link to the inode, not to a path) is bind-mounted (recursively, like
  Docker's own bind) onto a staging mount point of the agent's,
  ``volume-hostpaths/<volume>/<container>``, and Docker gets that staging path: a symlink
  swapped in after the check changes nothing, since no pod can write in the agent's directory.
  Each container start stages afresh (an earlier attempt's staging is unmounted first), so a
  restarted container sees the path as it is then, re-checked. Staging needs root, like tmpfs.
  ``cleanup`` unmounts the staged binds; hostPath data itself is never touched.
- ``subPath``/``subPathExpr``: the file or directory inside the volume, staged the same way
  (``pykubelet.volume_subpath``).
- ``spec.securityContext.fsGroup``: the volume is given to that group (``volume_ownership``):
  an emptyDir at each preparation (``fsGroupChangePolicy: OnRootMismatch`` skips a volume whose
  root already matches), the written volumes at each write; never a hostPath (nor in Kubernetes).
- termination logs: ``containers/<name>/<restart count>-termination-log``, an empty file per
  container start, bind-mounted at its terminationMessagePath; read back once it exited.

Safety: the pods dir must be a real directory (not a symlink) owned by the agent's user, pod
uids, volume and container names must be plain path components, and cleanup never follows a
symlink a container planted in an emptyDir, nor deletes across a mount point it did not make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pykubelet.atomic_writer import DATA_DIR, FileProjection, write_payload
from pykubelet.config_objects import ConfigObjects
from pykubelet.host_paths import open_host_path
from pykubelet.runtime.base import ContainerRuntimeError, CreateContainerError, Mount
from pykubelet.volume_mounts import (
    mount_tmpfs,
    mount_type,
    read_mountinfo,
    rebind,
    unmount,
)
from pykubelet.volume_ownership import set_volume_ownership
from pykubelet.volume_projection import VolumeMountError, collect_payload, kept_in_memory, written_by_agent
from pykubelet.volume_subpath import STAGING_SUBDIR as _SUBPATH_SUBDIR
from pykubelet.volume_subpath import stage_sub_path, sub_path
from pykubelet.volume_usage import disk_usage
from pymaster.api import objects_pb2
from pymaster.api.admission import normalize_host_path
from pymaster.api.defaults import DEFAULT_TERMINATION_MESSAGE_PATH
from pymaster.api.quantity import memory_bytes

log = logging.getLogger(__name__)

_POD_DIR_MODE = 0o750  # the pods dir, each pod's dir and its volumes dir: nobody else's business
_EMPTY_DIR_MODE = 0o777  # kubelet's emptyDir permissions: any user of any container may write
_STAGING_MODE = 0o750  # a staging mount point: covered by the bind mount, never seen by pods
_VOLUMES_SUBDIR = "volumes"
_CONTAINERS_SUBDIR = "containers"  # per container: its termination logs
MAX_TERMINATION_MESSAGE_BYTES = 4096  # Kubernetes' limit of one container's message
_STAGING_SUBDIR = "volume-hostpaths"
# A pod uid or volume name as one path component: never "", "." or "..", never a "/".
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


class PodVolumes:
    """The volume manager of one agent.

    Args:
        pods_dir: where pods' volumes live on the host (``<root-dir>/pods``); the engine must see
            the same file system. Created on first use (0750).
        allowed_host_paths: the prefixes hostPath volumes may use (the node's
            ``AdmissionPolicy.allowed_host_paths``); empty: none. Every hostPath, and every
            symlink met while resolving it, is checked against them again here.
        objects: where ConfigMaps and Secrets are read (configMap, secret, projected volumes).

    Raises:
        ValueError: a prefix is not an absolute path.
    """

    def __init__(
        self,
        pods_dir: str | Path,
        allowed_host_paths: Iterable[str] = (),
        objects: ConfigObjects | None = None,
    ):
        # Docker wants absolute bind sources; not resolved, so a symlinked root_dir stays as given.
        self._pods_dir = Path(os.path.abspath(pods_dir))
        self._objects = objects
        self._allowed_host_paths = tuple(normalize_host_path(prefix) for prefix in allowed_host_paths)
        self._mount_lock = threading.Lock()  # one check-then-mount (tmpfs, staged bind) at a time

    def volume_dir(self, pod_uid: str, volume: str) -> Path:
        """The host directory of the pod's emptyDir, configMap, secret, downwardAPI or projected
        volume ``volume`` (whether it exists or not)."""
        return self._pods_dir / pod_uid / _VOLUMES_SUBDIR / volume

    async def mounts(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> list[Mount]:
        """Prepares on the host each volume ``container`` mounts (see the module docstring) and
        returns its bind mounts in volumeMounts order. Preparing again is harmless.

        Args:
            pod: the pod.
            container: one of its containers as it runs (``pykubelet.env.resolve_container``):
                a subPathExpr expands against its resolved ``env``.

        Raises:
            VolumeMountError: a configMap, secret, downwardAPI or projected volume could not be
                filled (a missing object or key, the master not answering): ContainerCreating.
            CreateContainerConfigError: a subPathExpr that cannot be expanded, a subPath that
                is absolute, holds ``..`` or leads out of its volume through a symlink.
            CreateContainerError: an unknown volume or one without a source, an unsafe name, a bad
                sizeLimit, a hostPath outside the allowed prefixes (or resolving out of them
                through a symlink) or failing its type check, a refused pods dir, a tmpfs or
                staged bind the agent may not mount (not root), or a directory or file that
                could not be created.
        """
        volumes = {volume.name: volume for volume in pod.spec.volumes}
        payloads: dict[str, dict[str, FileProjection]] = {}
        for mount in container.volume_mounts:
            volume = volumes.get(mount.name)
            if volume is not None and written_by_agent(volume) and volume.name not in payloads:
                payloads[volume.name] = await collect_payload(volume, pod, self._objects)
        env = [(var.name, var.value) for var in container.env]
        sub_paths = [sub_path(mount, container.name, env) for mount in container.volume_mounts]
        try:  # file system work (mkdir, stat, mount) may block: not on the event loop
            return await asyncio.to_thread(self._prepare, pod, container, payloads, sub_paths)
        except OSError as err:
            raise CreateContainerError(f"preparing the volumes of container {container.name}: {err}") from err

    async def refresh(self, pod: objects_pb2.Pod) -> list[str]:
        """Brings the pod's configMap, secret, downwardAPI and projected volumes that are set up
        up to date with the objects and the pod's metadata (the kubelet remounts them on every
        pod sync); an unchanged volume is not written. A volume that cannot be filled now keeps
        what it holds.

        Returns:
            The FailedMount message of each volume that could not be brought up to date.
        """
        uid = pod.metadata.uid
        safe = _SAFE_COMPONENT.fullmatch
        candidates = [v for v in pod.spec.volumes if written_by_agent(v) and safe(v.name)]
        if not candidates or not safe(uid):
            return []
        set_up = await asyncio.to_thread(
            lambda: [v for v in candidates if (self.volume_dir(uid, v.name) / DATA_DIR).is_symlink()]
        )
        failures = []
        for volume in set_up:
            try:
                payload = await collect_payload(volume, pod, self._objects)
                written = await asyncio.to_thread(self._write, pod, volume, payload)
            except VolumeMountError as err:
                failures.append(err.message)
                continue
            except OSError as err:
                failures.append(f'MountVolume.SetUp failed for volume "{volume.name}" : {err}')
                continue
            if written:
                log.info("volume updated pod=%s/%s volume=%s", pod.metadata.namespace, pod.metadata.name,
                         volume.name)
        return failures

    async def measure(self, pod: objects_pb2.Pod, names: Iterable[str]) -> dict[str, int]:
        """Bytes on the node's disk below each of the pod's volumes ``names`` (``du -sx``, see
        ``pykubelet.volume_usage``), measured in one worker thread; a volume not set up yet is 0,
        a name that is not a safe path component is left out."""
        uid = pod.metadata.uid
        if not _SAFE_COMPONENT.fullmatch(uid):
            return {}
        safe = [name for name in names if _SAFE_COMPONENT.fullmatch(name)]
        return await asyncio.to_thread(lambda: {n: disk_usage(self.volume_dir(uid, n)) for n in safe})

    async def termination_log(
        self, pod: objects_pb2.Pod, container: objects_pb2.Container, restart_count: int
    ) -> Mount:
        """A fresh empty file for one start of ``container`` to write its termination message to
        (``<pods-dir>/<uid>/containers/<name>/<restart count>-termination-log``, mode 0666 so any
        user of the container may write it, as the kubelet makes it), bind-mounted at its
        terminationMessagePath.

        Raises:
            CreateContainerError: an unsafe name or a file that could not be created.
        """
        uid, name = pod.metadata.uid, container.name
        try:
            path = await asyncio.to_thread(self._termination_log, uid, name, restart_count)
        except OSError as err:
            raise CreateContainerError(f"preparing the termination log of container {name}: {err}") from err
        return Mount(container.termination_message_path or DEFAULT_TERMINATION_MESSAGE_PATH, str(path))

    async def termination_message(self, pod_uid: str, container: str, restart_count: int) -> str:
        """What that start of ``container`` wrote to its termination log (at most
        ``MAX_TERMINATION_MESSAGE_BYTES``; "" when it wrote nothing or the file is gone)."""
        if not (_SAFE_COMPONENT.fullmatch(pod_uid) and _SAFE_COMPONENT.fullmatch(container)):
            return ""
        path = self._pods_dir / pod_uid / _CONTAINERS_SUBDIR / container / f"{restart_count}-termination-log"

        def read() -> bytes:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC  # the container owns the file: no link
            fd = os.open(path, flags)
            try:
                return os.read(fd, MAX_TERMINATION_MESSAGE_BYTES)
            finally:
                os.close(fd)

        try:
            data = await asyncio.to_thread(read)
        except OSError:
            return ""
        return data.decode("utf-8", "replace")

    def _termination_log(self, pod_uid: str, container: str, restart_count: int) -> Path:
        _check_names(pod_uid, "termination-log", container)
        self._ensure_pods_dir()
        pod_dir = self._pods_dir / pod_uid
        directory = pod_dir / _CONTAINERS_SUBDIR / container
        _make_dirs(pod_dir, pod_dir / _CONTAINERS_SUBDIR, directory)
        path = directory / f"{restart_count}-termination-log"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a leftover of an earlier agent: this start begins empty
        # Only the last start's message is still shown (lastState): older files go, so a
        # crash-looping container does not pile them up.
        for old in directory.glob("*-termination-log"):
            count = old.name.partition("-")[0]
            if count.isdigit() and int(count) < restart_count - 1:
                old.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            os.fchmod(fd, 0o666)  # the umask cut it at creation
        finally:
            os.close(fd)
        return path

    async def cleanup(self, pod_uid: str) -> None:
        """Removes what the pod's volumes left on this node: unmounts its tmpfs volumes and its
        staged hostPath and subPath binds, then deletes ``<pods-dir>/<uid>`` without following
        any symlink in it. hostPath data is never touched. Call it once the pod's containers are
        removed. A pod that never had a directory (no volumes, already cleaned up, or a uid that
        is not a plain path component) is fine.

        Raises:
            ContainerRuntimeError: something could not be unmounted or removed (retry later).
        """
        if not _SAFE_COMPONENT.fullmatch(pod_uid):  # such a uid never got a directory
            return
        try:
            await asyncio.to_thread(self._cleanup, pod_uid)
        except OSError as err:
            raise ContainerRuntimeError(f"removing the volumes of pod {pod_uid}: {err}") from err

    def _prepare(
        self,
        pod: objects_pb2.Pod,
        container: objects_pb2.Container,
        payloads: Mapping[str, Mapping[str, FileProjection]],
        sub_paths: Sequence[str],
    ) -> list[Mount]:
        uid = pod.metadata.uid
        volumes = {volume.name: volume for volume in pod.spec.volumes}
        staged: dict[str, str] = {}  # volume name -> staging path: one bind per volume and container
        prepared: dict[str, str] = {}  # volume name -> its directory, set up once per call
        mounts = []
        for index, (mount, path) in enumerate(zip(container.volume_mounts, sub_paths, strict=True)):
            volume = volumes.get(mount.name)
            if volume is None:
                raise CreateContainerError(
                    f'volume "{mount.name}" of container {container.name} is not in the pod'
                )
            read_only = mount.read_only
            if volume.HasField("host_path"):
                if volume.name not in staged:
                    staged[volume.name] = self._host_path(uid, container.name, volume)
                source = staged[volume.name]
            elif volume.HasField("empty_dir"):
                if volume.name not in prepared:
                    prepared[volume.name] = self._empty_dir(pod, volume)
                source = prepared[volume.name]
            elif written_by_agent(volume):
                if volume.name not in prepared:
                    prepared[volume.name] = self._projected(pod, volume, payloads[volume.name])
                source = prepared[volume.name]
                read_only = True  # whatever the mount says, as Kubernetes does: the agent's files
            else:
                raise CreateContainerError(f"volume {volume.name} has no source")
            if path:
                source = self._sub_path(uid, container.name, index, volume.name, source, path)
            mounts.append(Mount(target=mount.mount_path, source=source, read_only=read_only))
        return mounts

    def _empty_dir(self, pod: objects_pb2.Pod, volume: objects_pb2.Volume) -> str:
        """The host directory of an emptyDir, created (0777) if missing, with its tmpfs mounted
        when memory-backed, given to the pod's fsGroup."""
        uid = pod.metadata.uid
        _check_names(uid, volume.name)
        memory = volume.empty_dir.medium == "Memory"
        options = _tmpfs_options(volume) if memory else ""
        path = self._volume_dir_made(uid, volume.name)
        real = self._resolved(uid, _VOLUMES_SUBDIR, volume.name)
        if memory:
            what = f"emptyDir volume {volume.name} with medium: Memory"
            self._mount_tmpfs(real, what, options)
        fs_group = _fs_group(pod)
        if fs_group is not None:
            policy = pod.spec.security_context.fs_group_change_policy
            set_volume_ownership(Path(real), fs_group, read_only=False, policy=policy)
        return str(path)

    def _projected(
        self, pod: objects_pb2.Pod, volume: objects_pb2.Volume, payload: Mapping[str, FileProjection]
    ) -> str:
        """The host directory of a configMap, secret, downwardAPI or projected volume, created if
        missing (in a tmpfs of its own unless it is a configMap volume) and holding ``payload``."""
        uid = pod.metadata.uid
        _check_names(uid, volume.name)
        path = self._volume_dir_made(uid, volume.name)
        if kept_in_memory(volume):
            what = f"volume {volume.name} (secrets and downward API data stay in memory)"
            real = self._resolved(uid, _VOLUMES_SUBDIR, volume.name)
            self._mount_tmpfs(real, what, f"mode={_EMPTY_DIR_MODE:04o}")
        self._write(pod, volume, payload)
        return str(path)

    def _write(
        self, pod: objects_pb2.Pod, volume: objects_pb2.Volume, payload: Mapping[str, FileProjection]
    ) -> bool:
        """Writes ``payload`` into the set-up volume atomically, giving it to the pod's fsGroup
        before it becomes visible; True: something changed."""
        path = self.volume_dir(pod.metadata.uid, volume.name)
        fs_group = _fs_group(pod)

        def set_perms() -> None:
            if fs_group is not None:  # containers mount these read-only: group read is enough
                set_volume_ownership(path, fs_group, read_only=True)

        try:
            return write_payload(path, payload, set_perms)
        except ValueError as err:
            raise VolumeMountError(f'MountVolume.SetUp failed for volume "{volume.name}" : {err}') from err

    def _sub_path(self, pod_uid: str, container: str, index: int, volume: str, root: str, path: str) -> str:
        """Stages the subPath ``path`` of the volume at ``root`` for mount ``index`` of
        ``container``; returns the staging path."""
        _check_names(pod_uid, volume, container)
        pod_dir = self._pods_dir / pod_uid
        base = pod_dir / _SUBPATH_SUBDIR
        _make_dirs(base, base / volume, base / volume / container)
        staging = base / volume / container / str(index)
        real = self._resolved(pod_uid, _SUBPATH_SUBDIR, volume, container, str(index))
        stage_sub_path(root, path, staging, real, self._mount_lock, f'subPath "{path}" of volume "{volume}"')
        log.info("subPath staged volume=%s path=%s staging=%s", volume, path, staging)
        return str(staging)

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
                try:
                    rebind(host.fd, host.is_dir, staging, real, _STAGING_MODE)
                except PermissionError as err:
                    raise CreateContainerError(
                        f"hostPath volume {volume.name} is bind-mounted on the host from the checked path: "
                        f"the agent must run as root (CAP_SYS_ADMIN) ({err})"
                    ) from err
        log.info("hostPath staged volume=%s path=%s resolved=%s staging=%s", volume.name,
                 volume.host_path.path, host.path, staging)
        return str(staging)

    def _volume_dir_made(self, pod_uid: str, volume: str) -> Path:
        """``volume_dir``, created (0777, like the kubelet's) with its parents if missing."""
        self._ensure_pods_dir()
        path = self.volume_dir(pod_uid, volume)
        _make_dirs(path.parent.parent, path.parent)
        try:
            path.mkdir()
        except FileExistsError:
            pass
        else:
            os.chmod(path, _EMPTY_DIR_MODE)  # mkdir's mode is cut by the umask
        return path

    def _mount_tmpfs(self, path: str, what: str, options: str) -> None:
        with self._mount_lock:
            if mount_type(path) == "tmpfs":  # mounted by an earlier start, or an earlier agent
                return
            try:
                mount_tmpfs(path, options)
            except PermissionError as err:
                raise CreateContainerError(
                    f"{what} needs a tmpfs mount on the host: the agent must run as root "
                    f"(CAP_SYS_ADMIN) ({err})"
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
        staged = tuple(self._resolved(pod_uid, d) + os.sep for d in (_STAGING_SUBDIR, _SUBPATH_SUBDIR))
        for mount_point, fs_type in reversed(read_mountinfo()):  # the newest (innermost) first
            if mount_point.startswith(staged):
                # Detaching a staged (recursive) bind detaches what it carries along with it.
                unmount(mount_point)
                log.info("bind unstaged path=%s", mount_point)
            elif fs_type == "tmpfs" and mount_point.startswith(real + os.sep):
                unmount(mount_point)
                log.info("tmpfs unmounted path=%s", mount_point)
        left = [m for m, _ in read_mountinfo() if m == real or m.startswith(real + os.sep)]
        if left:
            # rmtree would delete the contents of a file system mounted there by someone else.
            raise ContainerRuntimeError(f"{pod_dir} still has mount points: {', '.join(left)}")
        # rmtree is symlink-safe on Linux (it walks by file descriptor, never follows links).
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(pod_dir)


def _fs_group(pod: objects_pb2.Pod) -> int | None:
    context = pod.spec.security_context
    return context.fs_group if context.HasField("fs_group") else None


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


def _tmpfs_options(volume: objects_pb2.Volume) -> str:
    """The tmpfs mount options of a memory-backed emptyDir: mode, and size from its sizeLimit."""
    limit = volume.empty_dir.size_limit
    try:
        size = memory_bytes(limit) if limit else 0
    except ValueError as err:
        raise CreateContainerError(f"invalid sizeLimit of volume {volume.name}: {err}") from err
    options = f"mode={_EMPTY_DIR_MODE:04o}"
    return f"{options},size={size}" if size > 0 else options  # size=0 would mean unlimited
