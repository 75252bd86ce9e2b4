"""The Runtime on the real Docker Engine, with docker-py: the only module of pykube importing docker.

A pod is one infra ("pause") container holding the network namespace (and the published host
ports) plus one container per app container joined to its network and IPC namespaces. Every
container carries the labels of ``labels.py``, so ``list_pods`` rebuilds the whole picture from
Docker alone and a restarted agent adopts what runs.

Threads: every request/response call to the engine runs in a bounded ThreadPoolExecutor, so a
slow engine call delays only the coroutine awaiting it, never the event loop. The two long-lived
streams (``events`` and ``logs``) each read in a dedicated daemon thread instead: a followed log
may stay open for hours and must not hold one of the pool's few workers.

Errors: docker-py's exceptions never leave this module; each call maps them to the typed errors
of ``base.py`` (``CreateContainerError`` with Docker's message, ``RuntimeUnavailable`` when the
engine does not answer ...). Every engine call is reported to the optional ``observe`` callback
as ``observe(operation_type, seconds, error)``.

Cost of a relist: one ``GET /containers/json`` for the node; a container is inspected only when
its state changed since the previous list (exit codes, start/finish times, OOM and start errors
are not in the list's data), so a steady node costs one request per relist.

Pod features:

- ``hostNetwork``: the infra container runs in the host's network namespace (Docker's "host"
  network: no published ports, no IP of its own, the host's hostname); the app containers join
  it as usual. Its ContainerInfo.ip stays empty: the pod's IP is the node's (pod_status).
- ``securityContext.privileged``: Docker's Privileged on that app container only.
- ``hostPath``: a bind mount of the path as given. Per type, checked (and created) on the host
  before the container is created: ``Directory``/``File`` must exist as such (else
  CreateContainerError "hostPath type check failed: ..."); ``DirectoryOrCreate`` creates a missing
  directory (0755, with its parents), ``FileOrCreate`` a missing empty file (0644; its parent
  must exist), as in Kubernetes; ``""`` checks nothing but, like Docker's ``-v`` and containerd,
  creates a missing directory rather than fail. Whether the path is allowed at all is the
  admission's business (master and agent), not the runtime's.
- ``emptyDir`` on disk: the directory ``<volumes_dir>/<pod uid>/<volume name>`` (mode 0777 like
  kubelet's), created when the first container mounting it starts and bind-mounted into every
  container that mounts it, so the pod's containers share it; it outlives container restarts
  and sandbox re-creations and is deleted by ``remove_pod_volumes``. ``sizeLimit`` is not
  enforced on disk (Kubernetes evicts such pods; pykube has no eviction yet).
- ``emptyDir`` with ``medium: Memory``: a Docker tmpfs mount is private to one container, so a
  pod-wide Docker volume of the local driver with tmpfs options (``size`` = sizeLimit; without
  one the kernel's default, half the RAM) named ``pk_<uid>_<volume>`` is used instead, labelled
  like the containers. The infra container mounts it too and so keeps the tmpfs mounted while
  app containers restart; it is lost (empty again) when the sandbox is re-created, where
  kubelet would keep it. ``remove_pod_volumes`` removes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import docker.utils
import requests

from pykubelet.runtime import labels
from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntimeError,
    CreateContainerError,
    ImageNeverPullError,
    ImagePullError,
    InfraImageMissing,
    PodRuntime,
    RunContainerError,
    RuntimeUnavailable,
)
from pymaster.api import objects_pb2
from pymaster.api.quantity import cpu_millis, memory_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")
Observer = Callable[[str, float, bool], None]

# Container events that can change what a pod sync decides. "create" is left out: the agent
# creates containers itself, and a container whose start failed only emits "create" and would
# otherwise wake its own pod in a tight loop (restart back-off does not exist yet).
EVENT_ACTIONS = ("start", "die", "destroy", "oom", "pause", "unpause")

_REQUEST_TIMEOUT = 60.0  # seconds per engine request (stop adds the grace period to it)
_EVENTS_MAX_BACKOFF = 30.0
_EXITED_STATUS = re.compile(r"Exited \((-?\d+)\)")

_VOLUMES_ROOT_MODE = 0o750  # the volumes dir and each pod's dir: pod data is nobody else's
_EMPTY_DIR_MODE = 0o777  # kubelet's emptyDir permissions: any user of any container may write
_HOST_DIR_MODE = 0o755  # hostPath DirectoryOrCreate, as in Kubernetes
_HOST_FILE_MODE = 0o644  # hostPath FileOrCreate, as in Kubernetes
_INFRA_VOLUMES_PATH = "/.pykube/volumes"  # where the infra container holds the pod's tmpfs volumes
# A pod uid as one path component: never "", "." or "..", never a "/".
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


@dataclass(frozen=True)
class _Details:
    """What only ``inspect`` tells about a container, cached per (id, state key)."""

    key: str  # the list's State plus exit code: when it changes, inspect again
    node: str
    state: str
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime | None
    error: str
    oom_killed: bool


class DockerRuntime:
    """The Runtime protocol on a Docker Engine.

    Args:
        base_url: the engine's address, e.g. "unix:///var/run/docker.sock"; None honours
            DOCKER_HOST (and DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) like the docker CLI.
        max_workers: the bound of the thread pool running engine calls.
        observe: called as ``observe(operation_type, seconds, error)`` after every engine call
            (operation types: list_containers, inspect_container, create_container,
            start_container, stop_container, remove_container, pull_image, inspect_image, logs,
            events, version, create_volume, list_volumes, remove_volume). It may be called from
            the stream threads.
        volumes_dir: where emptyDir volumes live on the host (``<volumes_dir>/<pod uid>/<volume
            name>``); the engine must see the same file system (a local engine). None: the
            directory ``pykube-volumes`` in the system's temp dir. Created on first use (0750);
            it must not be a symlink and must belong to this process' user.

    The engine is contacted lazily: constructing a DockerRuntime never fails while the engine
    is down; calls raise RuntimeUnavailable until it answers.
    """

    def __init__(
        self,
        base_url: str | None = None,
        max_workers: int = 8,
        observe: Observer | None = None,
        volumes_dir: str | Path | None = None,
    ):
        self._base_url = base_url
        if volumes_dir is None:
            volumes_dir = Path(tempfile.gettempdir()) / "pykube-volumes"
        # Docker wants absolute bind sources; not resolved, so a symlinked root_dir stays as given.
        self._volumes_dir = Path(os.path.abspath(volumes_dir))
        self._max_workers = max_workers
        self._observe = observe
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="docker")
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._details: dict[str, _Details] = {}
        self._pumps: set[_Pump] = set()
        self._closed = False

    # ---- plumbing ----

    def _api(self) -> docker.APIClient:
        """The docker-py client, created on first use (it asks the engine for its API version)."""
        with self._client_lock:
            if self._closed:
                raise RuntimeUnavailable("the docker runtime is closed")
            if self._client is None:
                kwargs: dict[str, Any] = (
                    docker.utils.kwargs_from_env() if self._base_url is None else {"base_url": self._base_url}
                )
                try:
                    # Room for the pool's workers plus the stream threads sharing the client.
                    self._client = docker.APIClient(
                        timeout=_REQUEST_TIMEOUT, max_pool_size=self._max_workers + 8, **kwargs
                    )
                except docker.errors.DockerException as err:
                    raise RuntimeUnavailable(f"docker engine unreachable: {err}") from err
            return self._client

    def _record(self, operation: str, started: float, error: bool) -> None:
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, error)

    async def _run(
        self,
        operation: str,
        fn: Callable[[docker.APIClient], T],
        error: type[ContainerRuntimeError] = ContainerRuntimeError,
    ) -> T:
        """Runs ``fn(api)`` in the pool; docker errors become ``error`` (or RuntimeUnavailable)."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        failed = False
        try:
            return await loop.run_in_executor(self._pool, self._call, fn, error)
        except Exception:
            failed = True
            raise
        finally:
            self._record(operation, started, failed)

    def _call(self, fn: Callable[[docker.APIClient], T], error: type[ContainerRuntimeError]) -> T:
        try:
            return fn(self._api())
        except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
            raise _translate(err, error) from err

    # ---- Runtime ----

    async def version(self) -> str:
        """The engine's version, e.g. "20.10.24"."""
        result = await self._run("version", lambda api: api.version())
        return str(result.get("Version", ""))

    async def list_pods(self, node_name: str) -> dict[str, PodRuntime]:
        """Every pod uid with containers labelled for ``node_name`` (including exited ones)."""
        pods = await self._list(node_name, [f"{labels.NODE_NAME}={node_name}"])
        seen = {c.id for pod in pods.values() for c in pod.containers}
        for container_id, details in list(self._details.items()):
            if details.node == node_name and container_id not in seen:
                del self._details[container_id]
        return pods

    async def get_pod(self, node_name: str, pod_uid: str) -> PodRuntime | None:
        """The containers of one pod, from a fresh list (inspecting those whose state changed)."""
        pods = await self._list(node_name, [f"{labels.NODE_NAME}={node_name}", f"{labels.POD_UID}={pod_uid}"])
        return pods.get(pod_uid)

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        """Makes ``image`` present per imagePullPolicy (empty: Kubernetes' default for the tag).

        Raises:
            ImageNeverPullError: absent with policy Never.
            ImagePullError: the pull failed (registry unreachable, unknown image ...).
            RuntimeUnavailable: the engine did not answer.
        """
        policy = pull_policy or default_pull_policy(image)
        if policy != "Always":
            if await self._image_present(image):
                return
            if policy == "Never":
                raise ImageNeverPullError(
                    f'container image "{image}" is not present with pull policy of Never'
                )
        await self._run("pull_image", lambda api: _pull(api, image), ImagePullError)

    async def start_infra(
        self, pod: objects_pb2.Pod, node_name: str, infra_image: str, restart_count: int = 0
    ) -> ContainerInfo:
        """Creates and starts the pod's infra container: bridge network, hostname = pod name,
        every container port with a hostPort published on it, IPC shareable for the app
        containers; under hostNetwork the host's network instead (no ports to publish, no IP).
        It also creates the pod's memory-backed emptyDir volumes and holds them mounted.
        Returns it inspected, with its IP.

        Raises:
            InfraImageMissing: the infra image is absent and could not be pulled.
            CreateContainerError / RunContainerError: Docker refused it (e.g. host port taken);
                a created but unstartable infra container is removed again.
        """
        try:
            await self.ensure_image(infra_image, "IfNotPresent")
        except (ImagePullError, ImageNeverPullError) as err:
            raise InfraImageMissing(
                f"infra image {infra_image} not found locally; build it with `make images` "
                f"or pass --pod-infra-image ({err.message})"
            ) from err
        meta = pod.metadata
        name = labels.container_name(INFRA_CONTAINER_NAME, meta.name, meta.namespace, meta.uid, restart_count)
        host_network = pod.spec.host_network
        exposed, bindings = ([], {}) if host_network else _port_bindings(pod)
        memory = _memory_volumes(pod.spec.volumes)
        await self._ensure_memory_volumes(pod, node_name, memory)
        mounts = [
            docker.types.Mount(
                f"{_INFRA_VOLUMES_PATH}/{v.name}", labels.volume_name(meta.uid, v.name), no_copy=True
            )
            for v in memory
        ]

        def create(api: docker.APIClient) -> dict[str, Any]:
            host_config = api.create_host_config(
                port_bindings=bindings or None,
                ipc_mode="shareable",
                restart_policy={"Name": "no"},
                network_mode="host" if host_network else None,
                mounts=mounts or None,
            )
            return api.create_container(
                infra_image,
                name=name,
                hostname=None if host_network else _hostname(meta.name),
                labels=labels.infra_labels(pod, node_name, restart_count),
                ports=exposed or None,
                host_config=host_config,
                detach=True,
                use_config_proxy=False,
            )

        created = await self._run("create_container", create, CreateContainerError)
        try:
            await self._run("start_container", lambda api: api.start(created["Id"]), RunContainerError)
        except RunContainerError:
            await self.remove_container(created["Id"])
            raise
        return await self._inspect_info(created["Id"], node_name)

    async def start_container(
        self,
        pod: objects_pb2.Pod,
        container: objects_pb2.Container,
        node_name: str,
        infra: ContainerInfo,
        restart_count: int,
    ) -> ContainerInfo:
        """Creates and starts one app container in the infra container's network and IPC
        namespaces; ``command`` replaces the image's ENTRYPOINT and ``args`` its CMD, as in
        Kubernetes. Resources: limits.cpu -> NanoCpus, limits.memory -> Memory, requests.cpu (or
        limits.cpu) -> CpuShares. Docker's own restart policy stays "no": the agent restarts.
        volumeMounts become Docker mounts (see the module docstring), prepared on the host first;
        securityContext.privileged -> Privileged.

        A container whose start fails is kept (its State.Error records why, and it counts as
        that attempt); the next attempt gets a new name from its restart count.

        Raises:
            CreateContainerError: Docker refused to create it (its message), a bad quantity, a
                failed hostPath type check or a volume that could not be prepared.
            RunContainerError: the start failed, e.g. executable not found.
        """
        meta = pod.metadata
        name = labels.container_name(container.name, meta.name, meta.namespace, meta.uid, restart_count)
        container_labels = labels.container_labels(
            pod, container.name, node_name, restart_count, labels.container_spec_hash(container)
        )
        try:
            resources = _resources(container.resources)
        except ValueError as err:
            raise CreateContainerError(f"invalid resources of container {container.name}: {err}") from err
        mounted = {m.name for m in container.volume_mounts}
        await self._ensure_memory_volumes(
            pod, node_name, _memory_volumes(v for v in pod.spec.volumes if v.name in mounted)
        )
        loop = asyncio.get_running_loop()
        try:  # file system work (mkdir, stat) may block: not on the event loop
            mounts = await loop.run_in_executor(self._pool, self._mounts, pod, container)
        except OSError as err:
            raise CreateContainerError(f"preparing the volumes of container {container.name}: {err}") from err
        privileged = container.security_context.privileged

        def create(api: docker.APIClient) -> dict[str, Any]:
            host_config = api.create_host_config(
                network_mode=f"container:{infra.id}",
                ipc_mode=f"container:{infra.id}",
                restart_policy={"Name": "no"},
                log_config=docker.types.LogConfig(type="json-file"),
                mounts=mounts or None,
                privileged=privileged,
                **resources,
            )
            return api.create_container(
                container.image,
                command=list(container.args) or None,
                entrypoint=list(container.command) or None,
                environment=[f"{env.name}={env.value}" for env in container.env] or None,
                working_dir=container.working_dir or None,
                name=name,
                labels=container_labels,
                host_config=host_config,
                detach=True,
                use_config_proxy=False,
            )

        created = await self._run("create_container", create, CreateContainerError)
        await self._run("start_container", lambda api: api.start(created["Id"]), RunContainerError)
        return await self._inspect_info(created["Id"], node_name)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, SIGKILL after ``grace_seconds`` (rounded up to whole seconds, Docker's unit).
        A stopped or missing container is fine."""
        timeout = max(0, math.ceil(grace_seconds))

        def stop(api: docker.APIClient) -> None:
            try:
                api.stop(container_id, timeout=timeout)
            except docker.errors.NotFound:
                pass

        await self._run("stop_container", stop)

    async def remove_container(self, container_id: str) -> None:
        """Removes a container, running or not. A missing one (or one being removed) is fine."""

        def remove(api: docker.APIClient) -> None:
            try:
                api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as err:
                if err.status_code != 409 or "already in progress" not in str(err.explanation):
                    raise

        await self._run("remove_container", remove)
        self._details.pop(container_id, None)

    async def remove_pod_volumes(self, pod_uid: str) -> None:
        """Deletes ``<volumes_dir>/<pod uid>`` (emptyDir on disk) and the pod's Docker tmpfs
        volumes (emptyDir in memory). Never follows a symlink a container left in an emptyDir,
        never touches hostPath data. Call it once the pod's containers are removed.

        Raises:
            ContainerRuntimeError: a directory or volume could not be removed (retry later).
            RuntimeUnavailable: the engine did not answer.
        """
        if _SAFE_COMPONENT.fullmatch(pod_uid):  # any other uid never got a directory
            pod_dir = self._volumes_dir / pod_uid
            loop = asyncio.get_running_loop()
            try:
                # rmtree is symlink-safe on Linux (it walks by file descriptor, never follows links).
                await loop.run_in_executor(self._pool, shutil.rmtree, pod_dir)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise ContainerRuntimeError(f"removing the volumes of pod {pod_uid}: {err}") from err

        def listed(api: docker.APIClient) -> list[str]:
            found = api.volumes(filters={"label": f"{labels.POD_UID}={pod_uid}"}) or {}
            return [volume["Name"] for volume in found.get("Volumes") or []]

        for name in await self._run("list_volumes", listed):
            await self._run("remove_volume", lambda api, name=name: _remove_volume(api, name))

    def logs(
        self, container_id: str, follow: bool, tail_lines: int | None, timestamps: bool
    ) -> AsyncIterator[bytes]:
        """Streams a container's stdout/stderr as raw chunks (not split in lines).

        Use it with ``contextlib.aclosing`` (or let its task be cancelled): closing the
        generator closes the engine's stream and ends the reading thread.

        Raises:
            ContainerNotFound: no such container.
        """

        def body(pump: _Pump) -> None:
            started = time.monotonic()
            try:
                stream = self._api().logs(
                    container_id,
                    stream=True,
                    follow=follow,
                    tail=tail_lines if tail_lines is not None else "all",
                    timestamps=timestamps,
                )
            except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
                self._record("logs", started, True)
                raise _translate(err, ContainerRuntimeError) from err
            except ContainerRuntimeError:
                self._record("logs", started, True)
                raise
            self._record("logs", started, False)
            if not pump.attach(stream):
                return
            try:
                for chunk in stream:
                    if not pump.put(chunk):
                        return
            except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
                raise _translate(err, ContainerRuntimeError) from err

        return self._stream(f"docker-logs-{container_id[:12]}", body, maxsize=64)

    def events(self, node_name: str) -> AsyncIterator[str]:
        """Streams the pod uid of every lifecycle event (start, die, destroy, oom ...) of this
        node's containers. Reconnects with back-off (replaying from the last event's second)
        when the engine goes away, until the generator is closed or the runtime is."""
        filters = {
            "type": "container",
            "label": f"{labels.NODE_NAME}={node_name}",
            "event": list(EVENT_ACTIONS),
        }

        def body(pump: _Pump) -> None:
            since: int | None = None
            delay = 0.5
            while not pump.stopped.is_set():
                started = time.monotonic()
                try:
                    stream = self._api().events(since=since, filters=filters, decode=True)
                    self._record("events", started, False)
                    if not pump.attach(stream):
                        return
                    delay = 0.5
                    for event in stream:
                        since = event.get("time", since)
                        uid = (event.get("Actor") or {}).get("Attributes", {}).get(labels.POD_UID)
                        if uid and not pump.put(uid):
                            return
                    reason = "stream ended"
                except Exception as err:  # the engine went away or answered garbage: reconnect
                    self._record("events", started, True)
                    reason = str(err)
                if pump.stopped.wait(delay):
                    return
                log.warning("docker events reconnecting node=%s reason=%s", node_name, reason)
                delay = min(delay * 2, _EVENTS_MAX_BACKOFF)

        return self._stream(f"docker-events-{node_name}", body, maxsize=1024)

    async def close(self) -> None:
        """Ends the streams, the thread pool (without waiting for calls in flight) and the client."""
        self._closed = True  # read under the lock by _api(); not taken here: it may be held long
        for pump in list(self._pumps):
            pump.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ---- volumes ----

    async def _ensure_memory_volumes(
        self, pod: objects_pb2.Pod, node_name: str, volumes: list[objects_pb2.Volume]
    ) -> None:
        """Creates the Docker tmpfs volumes of ``volumes`` (memory-backed emptyDirs); creating an
        existing one is a no-op for the engine.

        Raises:
            CreateContainerError: a bad sizeLimit, or Docker refused.
        """
        for volume in volumes:
            try:
                options = _tmpfs_options(volume.empty_dir.size_limit)
            except ValueError as err:
                raise CreateContainerError(f"invalid sizeLimit of volume {volume.name}: {err}") from err
            name = labels.volume_name(pod.metadata.uid, volume.name)
            driver_opts = {"type": "tmpfs", "device": "tmpfs", "o": options}
            volume_labels = labels.volume_labels(pod, node_name, volume.name)
            await self._run(
                "create_volume",
                lambda api, name=name, opts=driver_opts, tags=volume_labels: api.create_volume(
                    name, driver="local", driver_opts=opts, labels=tags
                ),
                CreateContainerError,
            )

    def _mounts(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> list[docker.types.Mount]:
        """The Docker mounts of ``container``'s volumeMounts, after preparing their sources on the
        host (blocking: runs in the pool).

        Raises:
            CreateContainerError: an unknown volume, a failed hostPath type check.
            OSError: a directory or file could not be created.
        """
        volumes = {volume.name: volume for volume in pod.spec.volumes}
        mounts = []
        for mount in container.volume_mounts:
            volume = volumes.get(mount.name)
            target, read_only = mount.mount_path, mount.read_only
            if volume is None:
                raise CreateContainerError(
                    f'volume "{mount.name}" of container {container.name} is not in the pod'
                )
            if volume.HasField("host_path"):
                source = _prepare_host_path(volume.host_path)
            elif not volume.HasField("empty_dir"):
                raise CreateContainerError(f"volume {volume.name} has no source (hostPath or emptyDir)")
            elif volume.empty_dir.medium == "Memory":
                # A named volume; no_copy: it starts empty like an emptyDir, not with the image's files.
                name = labels.volume_name(pod.metadata.uid, volume.name)
                mounts.append(docker.types.Mount(target, name, read_only=read_only, no_copy=True))
                continue
            else:
                source = self._empty_dir(pod.metadata.uid, volume.name)
            mounts.append(docker.types.Mount(target, source, type="bind", read_only=read_only))
        return mounts

    def _empty_dir(self, pod_uid: str, volume: str) -> str:
        """The host directory of an on-disk emptyDir, created (0777) if missing (blocking)."""
        if not _SAFE_COMPONENT.fullmatch(pod_uid) or not _SAFE_COMPONENT.fullmatch(volume):
            raise CreateContainerError(
                f"pod uid {pod_uid!r} or volume name {volume!r} is not a safe directory name"
            )
        self._ensure_volumes_dir()
        pod_dir = self._volumes_dir / pod_uid
        with contextlib.suppress(FileExistsError):
            pod_dir.mkdir(mode=_VOLUMES_ROOT_MODE)
        path = pod_dir / volume
        try:
            path.mkdir()
        except FileExistsError:
            pass
        else:
            os.chmod(path, _EMPTY_DIR_MODE)  # mkdir's mode is cut by the umask
        return str(path)

    def _ensure_volumes_dir(self) -> None:
        """Creates the volumes dir if missing; refuses one that a symlink or another user could
        redirect (in a shared /tmp, someone else may have created the path first)."""
        self._volumes_dir.mkdir(mode=_VOLUMES_ROOT_MODE, parents=True, exist_ok=True)
        info = self._volumes_dir.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise CreateContainerError(f"volumes dir {self._volumes_dir} is not a directory (a symlink?)")
        if info.st_uid != os.geteuid():
            raise CreateContainerError(
                f"volumes dir {self._volumes_dir} belongs to uid {info.st_uid}, not to this agent's user"
            )

    # ---- helpers ----

    async def _image_present(self, image: str) -> bool:
        def inspect(api: docker.APIClient) -> bool:
            try:
                api.inspect_image(image)
            except docker.errors.ImageNotFound:
                return False
            return True

        return await self._run("inspect_image", inspect, ImagePullError)

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data; None once it is gone."""

        def inspect(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                return api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None

        return await self._run("inspect_container", inspect)

    async def _inspect_info(self, container_id: str, node_name: str) -> ContainerInfo:
        attrs = await self._inspect(container_id)
        if attrs is None:
            raise RunContainerError(f"container {container_id[:12]} disappeared right after its start")
        details = _details_from_inspect(attrs, node_name, _state_key(attrs["State"].get("Status", "")))
        self._details[container_id] = details
        config = attrs.get("Config") or {}
        return _container_info(
            container_id,
            config.get("Labels") or {},
            config.get("Image", ""),
            attrs.get("Image", ""),
            _ip(attrs.get("NetworkSettings")),
            details,
        )

    async def _list(self, node_name: str, label_filters: list[str]) -> dict[str, PodRuntime]:
        summaries = await self._run(
            "list_containers", lambda api: api.containers(all=True, filters={"label": label_filters})
        )
        summaries = [s for s in summaries if labels.POD_UID in (s.get("Labels") or {})]
        stale = [s for s in summaries if not self._fresh(s)]
        inspected = await asyncio.gather(*(self._inspect(s["Id"]) for s in stale))
        for summary, attrs in zip(stale, inspected, strict=True):
            if attrs is None:  # removed between list and inspect
                self._details.pop(summary["Id"], None)
                continue
            self._details[summary["Id"]] = _details_from_inspect(attrs, node_name, _summary_key(summary))
        pods: dict[str, PodRuntime] = {}
        for summary in summaries:
            details = self._details.get(summary["Id"])
            if details is None:
                continue
            container_labels = summary.get("Labels") or {}
            info = _container_info(
                summary["Id"],
                container_labels,
                summary.get("Image", ""),
                summary.get("ImageID", ""),
                _ip(summary.get("NetworkSettings")),
                details,
            )
            pod = pods.get(info.pod_uid)
            if pod is None:
                pod = PodRuntime(uid=info.pod_uid, name=info.pod_name, namespace=info.pod_namespace)
                pods[info.pod_uid] = pod
            pod.containers.append(info)
        epoch = datetime.fromtimestamp(0, UTC)
        for pod in pods.values():
            # Newest first per name: the restart count orders attempts even within one second.
            pod.containers.sort(key=lambda c: (c.restart_count, c.created_at or epoch), reverse=True)
        return pods

    def _fresh(self, summary: dict[str, Any]) -> bool:
        """Whether the cached inspect data of this listed container still holds."""
        details = self._details.get(summary["Id"])
        # A plain "created" container (and paused, restarting ...) may change without the list
        # showing it, e.g. a failed start keeps State "created" but sets State.Error: inspect
        # those every time. One whose start failed is final (mapped to "exited").
        return (
            details is not None
            and details.key == _summary_key(summary)
            and details.state in ("running", "exited")
        )

    async def _stream(self, name: str, body: Callable[[_Pump], None], maxsize: int) -> AsyncIterator[Any]:
        """Runs ``body(pump)`` in a new daemon thread and yields what it puts; an exception it
        raises is raised here. Closing the generator stops the thread (closes its stream)."""
        pump = _Pump(asyncio.get_running_loop(), maxsize)
        self._pumps.add(pump)
        threading.Thread(target=pump.read, args=(body,), name=name, daemon=True).start()
        try:
            while True:
                item = await pump.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            pump.stop()
            self._pumps.discard(pump)


# ---- stream pump ----

_END = object()


class _Pump:
    """Hands the items a blocking reader produces in its own thread to an async consumer,
    through a bounded queue (a slow consumer blocks the reader, not the event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int):
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def attach(self, stream: Any) -> bool:
        """Registers the engine stream ``stop`` must close; False (stream closed) if stopped."""
        with self._lock:
            if not self.stopped.is_set():
                self._stream = stream
                return True
        _close_stream(stream)
        return False

    def put(self, item: Any) -> bool:
        """Called by the reader thread: blocks while the queue is full; False once stopped."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                future.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                if self.stopped.is_set():
                    future.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False

    def stop(self) -> None:
        """Makes the reader return (closing its stream wakes a blocked read) and the consumer
        end: what was not consumed yet is dropped."""
        with self._lock:
            self.stopped.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream)
        with contextlib.suppress(RuntimeError):  # the loop is closed: no consumer left
            self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)

    async def get(self) -> Any:
        """The next item, for the consumer."""
        return await self._queue.get()

    def read(self, body: Callable[[_Pump], None]) -> None:
        """The reader thread: runs ``body``, then hands over its exception or the end marker."""
        try:
            body(self)
        except Exception as err:
            if not self.stopped.is_set():
                self.put(err)
        finally:
            if not self.stopped.is_set():
                self.put(_END)


def _close_stream(stream: Any) -> None:
    try:
        stream.close()
    except Exception as err:  # already closed, or the socket is gone: nothing left to stop
        log.debug("closing docker stream failed error=%s", err)


# ---- pure helpers ----


def default_pull_policy(image: str) -> str:
    """Kubernetes' default imagePullPolicy: Always for ":latest" or no tag, else IfNotPresent."""
    if "@" in image:  # pinned by digest
        return "IfNotPresent"
    _, tag = docker.utils.parse_repository_tag(image)
    return "Always" if tag in (None, "latest") else "IfNotPresent"


def _pull(api: docker.APIClient, image: str) -> None:
    repository, tag = docker.utils.parse_repository_tag(image)
    try:
        # The engine reports some failures inside the progress stream, not as an HTTP status.
        for message in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(message, dict) and message.get("error"):
                raise ImagePullError(f'failed to pull image "{image}": {message["error"]}')
    except docker.errors.APIError as err:
        raise ImagePullError(f'failed to pull image "{image}": {_explanation(err)}') from err


def _remove_volume(api: docker.APIClient, name: str) -> None:
    try:
        api.remove_volume(name)
    except docker.errors.NotFound:
        pass


def _explanation(err: docker.errors.APIError) -> str:
    message = err.explanation or str(err)
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _translate(err: Exception, error: type[ContainerRuntimeError]) -> ContainerRuntimeError:
    """A docker-py/requests exception as one of the runtime's typed errors: ``error`` with
    Docker's message, RuntimeUnavailable when the engine did not answer, ContainerNotFound for
    a missing container where no more specific error applies."""
    if isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return RuntimeUnavailable(f"docker engine unreachable: {err}")
    if isinstance(err, docker.errors.APIError):
        if isinstance(err, docker.errors.NotFound) and error is ContainerRuntimeError:
            return ContainerNotFound(_explanation(err))
        return error(_explanation(err))
    return error(f"{type(err).__name__}: {err}")


def _state_key(state: str, exit_code: int | None = None) -> str:
    return f"{state}:{exit_code}" if state == "exited" else state


def _summary_key(summary: dict[str, Any]) -> str:
    match = _EXITED_STATUS.match(summary.get("Status", ""))
    return _state_key(summary.get("State", ""), int(match.group(1)) if match else None)


def _details_from_inspect(attrs: dict[str, Any], node_name: str, key: str) -> _Details:
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    error = state.get("Error", "") or ""
    if status == "running":
        mapped, exit_code = "running", None
    elif status == "exited" or (status == "created" and error):
        # A failed start leaves Docker's state "created" with State.Error: that attempt is over.
        mapped, exit_code = "exited", int(state.get("ExitCode", 0))
    elif status == "created":
        mapped, exit_code = "created", None
    else:  # paused, restarting, removing, dead
        mapped, exit_code = "unknown", None
    if status == "exited":  # the key of an inspect-born entry must match the list's
        key = _state_key("exited", exit_code)
    return _Details(
        key=key,
        node=node_name,
        state=mapped,
        exit_code=exit_code,
        started_at=_timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")),
        created_at=_timestamp(attrs.get("Created")),
        error=error,
        oom_killed=bool(state.get("OOMKilled")),
    )


def _container_info(
    container_id: str,
    container_labels: dict[str, str],
    image: str,
    image_id: str,
    ip: str,
    details: _Details,
) -> ContainerInfo:
    name = container_labels.get(labels.CONTAINER_NAME, "")
    return ContainerInfo(
        id=container_id,
        name=name,
        pod_uid=container_labels.get(labels.POD_UID, ""),
        pod_name=container_labels.get(labels.POD_NAME, ""),
        pod_namespace=container_labels.get(labels.POD_NAMESPACE, ""),
        state=details.state,
        exit_code=details.exit_code,
        started_at=details.started_at,
        finished_at=details.finished_at,
        created_at=details.created_at,
        restart_count=labels.parse_restart_count(container_labels),
        spec_hash=container_labels.get(labels.SPEC_HASH, ""),
        image=image,
        image_id=image_id,
        error=details.error,
        oom_killed=details.oom_killed,
        ip=ip if name == INFRA_CONTAINER_NAME and details.state == "running" else "",
    )


def _ip(network_settings: dict[str, Any] | None) -> str:
    """The container's bridge IP, from inspect or list data."""
    if not network_settings:
        return ""
    if network_settings.get("IPAddress"):
        return str(network_settings["IPAddress"])
    for network in (network_settings.get("Networks") or {}).values():
        if network and network.get("IPAddress"):
            return str(network["IPAddress"])
    return ""


def _timestamp(value: str | None) -> datetime | None:
    """Docker's RFC 3339 (nanoseconds) time; None for its zero time "0001-01-01T00:00:00Z"."""
    if not value or value.startswith("0001-01-01"):
        return None
    # Python takes at most microseconds: cut the fraction to 6 digits.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _hostname(pod_name: str) -> str:
    """The pod name as a hostname: at most 63 characters, not ending in "-" or "."."""
    return pod_name[:63].rstrip("-.") or "pod"


def _port_bindings(pod: objects_pb2.Pod) -> tuple[list[tuple[int, str]], dict[str, list[tuple[str, int]]]]:
    """The exposed ports and host port bindings of the infra container: every container port
    with a hostPort, on hostIP (default all addresses)."""
    exposed: list[tuple[int, str]] = []
    bindings: dict[str, list[tuple[str, int]]] = {}
    for container in pod.spec.containers:
        for port in container.ports:
            if not port.host_port:
                continue
            protocol = (port.protocol or "TCP").lower()
            key = f"{port.container_port}/{protocol}"
            if key not in bindings:
                exposed.append((port.container_port, protocol))
            bindings.setdefault(key, []).append((port.host_ip or "0.0.0.0", port.host_port))
    return exposed, bindings


def _memory_volumes(volumes: Iterable[objects_pb2.Volume]) -> list[objects_pb2.Volume]:
    """The memory-backed emptyDir volumes among ``volumes``."""
    return [v for v in volumes if v.HasField("empty_dir") and v.empty_dir.medium == "Memory"]


def _tmpfs_options(size_limit: str) -> str:
    """The mount options of a memory-backed emptyDir's tmpfs.

    Raises:
        ValueError: ``size_limit`` is not a quantity.
    """
    options = f"mode={_EMPTY_DIR_MODE:04o}"
    size = memory_bytes(size_limit) if size_limit else 0
    return f"{options},size={size}" if size > 0 else options  # size=0 would mean unlimited


def _prepare_host_path(source: objects_pb2.HostPathVolumeSource) -> str:
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


def _resources(resources: objects_pb2.ResourceRequirements) -> dict[str, int]:
    """Docker host-config resource arguments. cpu shares follow the request (the limit when no
    request, Kubernetes' defaulting); without either Docker's default weight (1024) stays.

    Raises:
        ValueError: a quantity does not parse.
    """
    limits, requests_ = resources.limits, resources.requests
    result: dict[str, int] = {}
    if "cpu" in limits:
        result["nano_cpus"] = cpu_millis(limits["cpu"]) * 1_000_000
    if "memory" in limits:
        result["mem_limit"] = memory_bytes(limits["memory"])
    cpu_request = requests_.get("cpu") or limits.get("cpu")
    if cpu_request:
        result["cpu_shares"] = max(2, cpu_millis(cpu_request) * 1024 // 1000)
    return result
