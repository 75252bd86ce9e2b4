"""``DockerRuntime``: the Runtime protocol's operations on the Docker Engine.

A pod is one infra ("pause") container holding the network namespace (and the published host
ports) plus one container per app container joined to its network and IPC namespaces. Every
container carries the labels of ``labels.py``, so ``list_pods`` rebuilds the whole picture from
Docker alone and a restarted agent adopts what runs.

Pod features:

- ``hostNetwork``: the infra container runs in the host's network namespace (Docker's "host"
  network: no published ports, no IP of its own, the host's hostname); the app containers join
  it as usual. Its ContainerInfo.ip stays empty: the pod's IP is the node's (pod_status).
- security: the pod's and each container's securityContext and the OOM score adjustment of the
  pod's QoS class become Docker options (``security.py``): User, GroupAdd, CapAdd/CapDrop,
  Privileged, ReadonlyRootfs, SecurityOpt (no-new-privileges, seccomp, AppArmor), OomScoreAdj on
  the app containers; the pod's sysctls and the sandbox's OomScoreAdj (-998) on the infra
  container, which owns the network and IPC namespaces the sysctls belong to.
- pod network: ``SandboxConfig.network`` puts the infra container on the node's pod network (a
  bridge network ``ensure_bridge_network`` keeps, see ``networks.py``); its resolv.conf is the
  pod's (``SandboxConfig.dns``), rewritten after the start and shared by the app containers.
- logs: every app container logs through Docker's json-file driver with ``max-size`` and
  ``max-file`` from ``ContainerLogLimits`` (the agent's ``--container-log-max-size``/``-files``),
  so Docker rotates its log and drops the oldest file: a chatty container cannot fill the disk.
  The infra container prints nothing and keeps the engine's default log driver.
- volumes: the runtime only bind-mounts what the volume manager (``pykubelet/volumes.py``)
  prepared on the host; the engine must therefore see the host's file system (a local engine).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import psutil

from pykubelet.admission import host_apparmor_enabled
from pykubelet.runtime import labels
from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    BridgeNetwork,
    ContainerDiskUsage,
    ContainerInfo,
    ContainerLogLimits,
    CreateContainerConfigError,
    CreateContainerError,
    ExecResult,
    ImageNeverPullError,
    ImagePullError,
    InfraImageMissing,
    Mount,
    PodDNS,
    PodRuntime,
    RunContainerError,
    SandboxConfig,
    TerminalSize,
)
from pykubelet.runtime.docker import convert, images, logs_events, networks, security
from pykubelet.runtime.docker.disk_usage import DiskUsageReader
from pykubelet.runtime.docker.engine import Engine, Observer
from pykubelet.runtime.docker.exec_stream import DockerExecSession, exec_stream
from pykubelet.runtime.docker.exec_sync import exec_sync
from pykubelet.runtime.docker.streams import Streams
from pymaster.api import objects_pb2


class DockerRuntime:
    """The Runtime protocol on a Docker Engine.

    Args:
        base_url: the engine's address, e.g. "unix:///var/run/docker.sock"; None honours
            DOCKER_HOST (and DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) like the docker CLI.
        max_workers: the bound of the thread pool running engine calls.
        observe: called as ``observe(operation_type, seconds, error)`` after every engine call
            (operation types: list_containers, inspect_container, create_container,
            start_container, stop_container, remove_container, pull_image, inspect_image, logs,
            events, version, create_exec, start_exec, inspect_exec, resize_exec,
            list_container_stats, info, ensure_network, remove_network). It may be called from the
            stream threads.
        log_limits: the log rotation of app containers (json-file ``max-size``/``max-file``).
        seccomp_dir: where Localhost seccomp profiles are read (the agent's
            ``<root-dir>/seccomp``); None: a container asking for one fails with
            CreateContainerConfigError.
        memory_capacity: the machine's memory in bytes, for the OOM score adjustment of
            Burstable containers (default: psutil's total).
        apparmor_enabled: whether the host enforces AppArmor (default: read from the host).

    The engine is contacted lazily: constructing a DockerRuntime never fails while the engine
    is down; calls raise RuntimeUnavailable until it answers.
    """

    def __init__(
        self,
        base_url: str | None = None,
        max_workers: int = 8,
        observe: Observer | None = None,
        log_limits: ContainerLogLimits | None = None,
        seccomp_dir: str | None = None,
        memory_capacity: int | None = None,
        apparmor_enabled: bool | None = None,
    ):
        self._engine = Engine(base_url, max_workers, observe)
        self._node_security = security.NodeSecurity(
            apparmor=host_apparmor_enabled() if apparmor_enabled is None else apparmor_enabled,
            seccomp_dir=os.path.abspath(seccomp_dir) if seccomp_dir is not None else None,
            memory_capacity=memory_capacity or psutil.virtual_memory().total,
            min_oom_score_adj=security.read_min_oom_score_adj(),
        )
        self._log_config = convert.log_config(log_limits or ContainerLogLimits())
        self._streams = Streams()
        self._disk_usage = DiskUsageReader(self._engine)
        self._details: dict[str, convert.Details] = {}
        self._sessions: set[DockerExecSession] = set()  # open interactive execs, closed with us

    async def version(self) -> str:
        """The engine's version, e.g. "20.10.24"."""
        result = await self._engine.run("version", lambda api: api.version())
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

    async def container_disk_usage(self, node_name: str, pod_uid: str) -> list[ContainerDiskUsage]:
        """Each container of one pod with its writable layer (Docker's SizeRw, from one list call
        with sizes) and its json-file logs on the host. See ``disk_usage.py``.

        Raises:
            RuntimeUnavailable: the engine did not answer.
        """
        return await self._disk_usage.pod_usage(node_name, pod_uid)

    async def ensure_image(
        self, image: str, pull_policy: str, on_pull: Callable[[str], None] | None = None
    ) -> float | None:
        """Makes ``image`` present per imagePullPolicy (empty: Kubernetes' default for the image);
        ``on_pull(image)`` is called when a pull starts. Returns the pull's seconds, None when the
        image was present.

        Raises:
            ImageNeverPullError: absent with policy Never.
            ImagePullError: the pull failed (registry unreachable, unknown image ...).
            RuntimeUnavailable: the engine did not answer.
        """
        return await images.ensure_image(self._engine, image, pull_policy, on_pull)

    async def ensure_bridge_network(self, want: BridgeNetwork) -> bool:
        """Makes the node's pod network match ``want``; True when it was (re-)created. See
        ``networks.ensure_bridge_network``."""
        return await networks.ensure_bridge_network(self._engine, want)

    async def remove_network(self, name: str) -> None:
        """Removes a Docker network (a missing one is fine)."""
        await networks.remove_network(self._engine, name)

    async def start_infra(
        self,
        pod: objects_pb2.Pod,
        node_name: str,
        infra_image: str,
        restart_count: int = 0,
        sandbox: SandboxConfig | None = None,
    ) -> ContainerInfo:
        """Creates and starts the pod's infra container: ``sandbox.network`` (else the default
        bridge) with the pod's resolv.conf (``sandbox.dns``), hostname = pod name,
        every container port with a hostPort published on it, IPC shareable for the app
        containers; under hostNetwork the host's network instead (no ports to publish, no IP);
        the pod's sysctls; OomScoreAdj -998. Returns it inspected, with its IP.

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
        exposed, bindings = ([], {}) if host_network else convert.port_bindings(pod)
        infra_security = security.infra_options(pod, self._node_security)
        sandbox = sandbox or SandboxConfig()
        dns = sandbox.dns
        network_mode = "host" if host_network else (sandbox.network or None)
        # Docker's record of the settings (not on the host's network, where it may refuse them);
        # the file itself is rewritten after the start either way.
        docker_dns = None if host_network else dns

        def create(api: docker.APIClient) -> dict[str, Any]:
            host_config = api.create_host_config(
                port_bindings=bindings or None,
                ipc_mode="shareable",
                restart_policy={"Name": "no"},
                network_mode=network_mode,
                dns=list(docker_dns.nameservers) or None if docker_dns else None,
                dns_search=list(docker_dns.searches) or None if docker_dns else None,
                dns_opt=list(docker_dns.options) or None if docker_dns else None,
                **infra_security,
            )
            return api.create_container(
                infra_image,
                name=name,
                hostname=None if host_network else convert.hostname(meta.name),
                labels=labels.infra_labels(pod, node_name, restart_count),
                ports=exposed or None,
                host_config=host_config,
                detach=True,
                use_config_proxy=False,
            )

        created = await self._engine.run("create_container", create, CreateContainerError)
        try:
            await self._engine.run("start_container", lambda api: api.start(created["Id"]), RunContainerError)
            if dns is not None:
                await self._write_resolv_conf(created["Id"], dns)
        except RunContainerError:
            await self.remove_container(created["Id"])
            raise
        return await self._inspect_info(created["Id"], node_name)

    async def _write_resolv_conf(self, container_id: str, dns: PodDNS) -> None:
        """Writes the pod's resolv.conf over the one Docker made for its infra container.

        Raises:
            RunContainerError: the file could not be written (the engine is not on this host).
        """
        attrs = await self._inspect(container_id)
        path = (attrs or {}).get("ResolvConfPath") or ""
        if not path:
            raise RunContainerError(f"infra container {container_id[:12]} has no resolv.conf to write")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, networks.write_resolv_conf, path, dns)
        except OSError as err:
            raise RunContainerError(f"cannot write the pod's resolv.conf {path}: {err}") from err

    async def start_container(
        self,
        pod: objects_pb2.Pod,
        container: objects_pb2.Container,
        node_name: str,
        infra: ContainerInfo,
        restart_count: int,
        mounts: Sequence[Mount],
        resolved: objects_pb2.Container | None = None,
    ) -> ContainerInfo:
        """Creates and starts one app container in the infra container's network and IPC
        namespaces; ``command`` replaces the image's ENTRYPOINT and ``args`` its CMD, as in
        Kubernetes. Resources: limits.cpu -> NanoCpus, limits.memory -> Memory, requests.cpu (or
        limits.cpu) -> CpuShares. Docker's own restart policy stays "no": the agent restarts.
        ``mounts`` (prepared by the volume manager) become bind mounts, in their order; the
        pod's and the container's securityContext and the QoS class's OOM score adjustment ->
        ``security.container_options``; stdin / stdinOnce / tty -> OpenStdin /
        StdinOnce / Tty; spec.shareProcessNamespace -> the infra container's PID namespace; the
        log is json-file, rotated per the runtime's ``log_limits``.

        ``resolved`` (default: ``container``) gives what runs: command, args and env, resolved
        and expanded by the agent; the name, labels and spec hash come from ``container``.

        A container whose start fails is kept (its State.Error records why, and it counts as
        that attempt); the next attempt gets a new name from its restart count.

        Raises:
            CreateContainerConfigError: its securityContext cannot be honoured here (runAsNonRoot
                and a root image, an unusable seccomp or AppArmor profile); nothing is created.
            CreateContainerError: Docker refused to create it (its message), or a bad quantity.
            RunContainerError: the start failed, e.g. executable not found.
        """
        meta = pod.metadata
        name = labels.container_name(container.name, meta.name, meta.namespace, meta.uid, restart_count)
        container_labels = labels.container_labels(
            pod, container.name, node_name, restart_count, labels.container_spec_hash(container)
        )
        image_user = ""
        if security.needs_image_user(pod, container):
            image_user = await self._image_user(container.image)
        try:
            resources = convert.resources(container.resources)
            secured = security.container_options(pod, container, self._node_security, image_user)
        except ValueError as err:
            raise CreateContainerError(f"invalid resources of container {container.name}: {err}") from err
        docker_mounts = convert.bind_mounts(mounts)

        runs = resolved if resolved is not None else container
        # shareProcessNamespace: one PID namespace, the infra container's (its pause is PID 1).
        pid_mode = f"container:{infra.id}" if pod.spec.share_process_namespace else None

        def create(api: docker.APIClient) -> dict[str, Any]:
            host_config = api.create_host_config(
                network_mode=f"container:{infra.id}",
                ipc_mode=f"container:{infra.id}",
                pid_mode=pid_mode,
                restart_policy={"Name": "no"},
                log_config=self._log_config,
                mounts=docker_mounts or None,
                **secured.host_config(),
                **resources,
            )
            config = api.create_container_config(
                container.image,
                command=list(runs.args) or None,
                entrypoint=list(runs.command) or None,
                environment=[f"{env.name}={env.value}" for env in runs.env] or None,
                working_dir=container.working_dir or None,
                labels=container_labels,
                host_config=host_config,
                detach=True,
                stdin_open=container.stdin,
                tty=container.tty,
                user=secured.user,
            )
            # docker-py ties StdinOnce to stdin_open; Kubernetes has them apart.
            config["StdinOnce"] = container.stdin_once
            return api.create_container_from_config(config, name)

        created = await self._engine.run("create_container", create, CreateContainerError)
        await self._engine.run("start_container", lambda api: api.start(created["Id"]), RunContainerError)
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

        await self._engine.run("stop_container", stop)

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

        await self._engine.run("remove_container", remove)
        self._details.pop(container_id, None)

    async def exec(
        self, container_id: str, command: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> ExecResult:
        """Runs ``command`` in a running container within ``timeout`` seconds; stdout and stderr
        come back separately, each cut at 1 MiB. On timeout the result says ``timed_out`` and
        the command is left running (the Docker API cannot kill it). See ``exec_sync.py``.

        Raises:
            ContainerNotFound: no such container.
            ContainerRuntimeError: the container is not running, or Docker refused.
            RuntimeUnavailable: the engine did not answer.
        """
        return await exec_sync(self._engine, self._streams, container_id, command, timeout, stdin)

    async def exec_stream(
        self,
        container_id: str,
        command: Sequence[str],
        stdin: bool = False,
        tty: bool = False,
        size: TerminalSize | None = None,
    ) -> DockerExecSession:
        """Starts ``command`` interactively in a running container (``pyctl exec``); close the
        returned session when done. See ``exec_stream.py``.

        Raises:
            ContainerNotFound: no such container.
            ContainerNotRunning: the container is not running (or paused).
            ContainerRuntimeError: Docker refused.
            RuntimeUnavailable: the engine did not answer.
        """
        session = await exec_stream(
            self._engine, self._streams, container_id, command, stdin, tty, size, self._sessions.discard
        )
        self._sessions.add(session)
        return session

    def logs(
        self, container_id: str, follow: bool, tail_lines: int | None, timestamps: bool
    ) -> AsyncIterator[bytes]:
        """Streams a container's stdout/stderr as raw chunks (not split in lines); close the
        generator (``contextlib.aclosing``) to end it. See ``logs_events.logs``.

        Raises:
            ContainerNotFound: no such container.
        """
        return logs_events.logs(self._engine, self._streams, container_id, follow, tail_lines, timestamps)

    def events(self, node_name: str) -> AsyncIterator[str]:
        """Streams the pod uid of every lifecycle event of this node's containers, reconnecting
        when the engine goes away. See ``logs_events.events``."""
        return logs_events.events(self._engine, self._streams, node_name)

    async def close(self) -> None:
        """Ends the exec sessions, the streams, the thread pool (without waiting for calls in
        flight) and the client."""
        for session in list(self._sessions):
            session.close_now()
        self._streams.stop_all()
        self._engine.close()

    # ---- helpers ----

    async def _image_user(self, image: str) -> str:
        """The user an image runs as (its Config.User; "" is root).

        Raises:
            CreateContainerConfigError: the image is not present (it was ensured just before).
        """

        def inspect(api: docker.APIClient) -> str:
            try:
                attrs = api.inspect_image(image)
            except docker.errors.ImageNotFound:
                raise CreateContainerConfigError(f'image "{image}" not found to verify its user') from None
            return str((attrs.get("Config") or {}).get("User") or "")

        return await self._engine.run("inspect_image", inspect, CreateContainerConfigError)

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data; None once it is gone."""

        def inspect(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                return api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None

        return await self._engine.run("inspect_container", inspect)

    async def _inspect_info(self, container_id: str, node_name: str) -> ContainerInfo:
        attrs = await self._inspect(container_id)
        if attrs is None:
            raise RunContainerError(f"container {container_id[:12]} disappeared right after its start")
        key = convert.state_key(attrs["State"].get("Status", ""))
        details = convert.details_from_inspect(attrs, node_name, key)
        self._details[container_id] = details
        config = attrs.get("Config") or {}
        return convert.container_info(
            container_id,
            config.get("Labels") or {},
            config.get("Image", ""),
            attrs.get("Image", ""),
            convert.ip(attrs.get("NetworkSettings")),
            details,
        )

    async def _list(self, node_name: str, label_filters: list[str]) -> dict[str, PodRuntime]:
        summaries = await self._engine.run(
            "list_containers", lambda api: api.containers(all=True, filters={"label": label_filters})
        )
        summaries = [s for s in summaries if labels.POD_UID in (s.get("Labels") or {})]
        stale = [s for s in summaries if not self._fresh(s)]
        inspected = await asyncio.gather(*(self._inspect(s["Id"]) for s in stale))
        for summary, attrs in zip(stale, inspected, strict=True):
            if attrs is None:  # removed between list and inspect
                self._details.pop(summary["Id"], None)
                continue
            self._details[summary["Id"]] = convert.details_from_inspect(
                attrs, node_name, convert.summary_key(summary)
            )
        pods: dict[str, PodRuntime] = {}
        for summary in summaries:
            details = self._details.get(summary["Id"])
            if details is None:
                continue
            info = convert.container_info(
                summary["Id"],
                summary.get("Labels") or {},
                summary.get("Image", ""),
                summary.get("ImageID", ""),
                convert.ip(summary.get("NetworkSettings")),
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
            and details.key == convert.summary_key(summary)
            and details.state in ("running", "exited")
        )

