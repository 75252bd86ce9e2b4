"""The container runtime boundary of the agent: what the agent observes of a pod's containers and
the operations it asks of the engine. ``runtime/docker/`` implements it with docker-py and is the
only package that imports docker; everything above works on these types.

Volumes are not the runtime's business: the volume manager (``pykubelet/volumes.py``) prepares on
the host what a container mounts and hands the runtime plain bind mounts (``Mount``).

Docker itself is the agent's memory: every container carries labels (``labels.py``) from which
``PodRuntime``/``ContainerInfo`` are rebuilt, so a restarted agent adopts what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pymaster.api import objects_pb2

INFRA_CONTAINER_NAME = "POD"  # the pykube.container.name label of a pod's infra (pause) container


class ContainerRuntimeError(Exception):
    """Base of runtime errors. ``reason`` is what the user reads in the container status."""

    reason = "RuntimeError"
    temporary = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ImagePullError(ContainerRuntimeError):
    reason = "ErrImagePull"
    temporary = True


class ImageNeverPullError(ContainerRuntimeError):
    reason = "ErrImageNeverPull"


class InfraImageMissing(ContainerRuntimeError):
    reason = "InfraImageMissing"


class CreateContainerError(ContainerRuntimeError):
    reason = "CreateContainerError"


class CreateContainerConfigError(ContainerRuntimeError):
    """The container's configuration cannot be honoured on this node, found before anything was
    created: e.g. runAsNonRoot with an image that runs as root, a missing seccomp profile."""

    reason = "CreateContainerConfigError"


class RunContainerError(ContainerRuntimeError):
    reason = "RunContainerError"


class ContainerNotFound(ContainerRuntimeError):
    """The container does not exist (any more), e.g. when asking for its logs."""

    reason = "ContainerNotFound"


class ContainerNotRunning(ContainerRuntimeError):
    """The container exists but is not running (exited, created, paused): nothing can be exec'd."""

    reason = "ContainerNotRunning"


class RuntimeUnavailable(ContainerRuntimeError):
    """The engine did not answer; retried with back-off."""

    reason = "RuntimeUnavailable"
    temporary = True


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into a container, prepared by the volume manager.

    Attributes:
        target: the path inside the container (the volumeMount's mountPath).
        source: the absolute host path (an emptyDir's directory, a hostPath).
        read_only: mounted read-only.
    """

    target: str
    source: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerLogLimits:
    """How far a container's log may grow on the node (the kubelet's ``--container-log-max-size``
    and ``--container-log-max-files``): the runtime rotates the log file once it reaches
    ``max_size`` bytes and keeps at most ``max_files`` files, the current one included.

    Attributes:
        max_size: bytes per log file (default 10Mi, the kubelet's).
        max_files: files kept per container (default 5, the kubelet's; at least 2).
    """

    max_size: int = 10 * 1024**2
    max_files: int = 5


@dataclass(frozen=True)
class PodDNS:
    """A pod's resolv.conf (``pykubelet.network.pod_dns``): every container of the pod shares it.

    Attributes:
        nameservers: ``nameserver`` lines, in order.
        searches: the ``search`` line's domains.
        options: the ``options`` line's entries (``ndots:5``, ``edns0``).
    """

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxConfig:
    """Where a pod's infra container lives on the network (not under spec.hostNetwork).

    Attributes:
        network: the engine network it joins (the node's pod network); "" for the engine's
            default bridge.
        dns: the pod's resolv.conf; None leaves the engine's default.
    """

    network: str = ""
    dns: PodDNS | None = None


@dataclass(frozen=True)
class BridgeNetwork:
    """A bridge network of the engine as the node's pod network wants it.

    Attributes:
        name: the Docker network's name (``pykube-<node>``).
        subnet: its IPAM subnet (the node's pod CIDR).
        gateway: its gateway (the bridge's own address).
        options: driver options (bridge name, masquerade off).
        labels: its labels.
    """

    name: str
    subnet: str
    gateway: str
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container (``Runtime.exec``) left behind.

    Attributes:
        exit_code: the command's exit code; -1 when it timed out (it may still be running).
        stdout: its standard output, cut at the runtime's cap.
        stderr: its standard error, cut at the runtime's cap.
        timed_out: the timeout expired before the command ended.
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


STDOUT = 1  # the stream of an ExecSession's output chunk: standard output (with a TTY, all of it)
STDERR = 2  # standard error (never with a TTY)


@dataclass(frozen=True)
class TerminalSize:
    """The size of an exec's terminal, in characters."""

    width: int
    height: int


class ExecSession(Protocol):
    """An interactive command running in a container (``Runtime.exec_stream``; ``pyctl exec``).

    ``output()`` streams ``(STDOUT | STDERR, bytes)`` chunks until the command's output ends;
    ``exit_code()`` is then its exit code. ``write_stdin``/``close_stdin`` feed its standard
    input (when started with ``stdin``), ``resize`` its terminal (when started with ``tty``).
    ``close()`` (or leaving ``async with``) ends the stream at any time and frees what it holds;
    the command itself may keep running (the engine may offer no way to kill it).
    """

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """The command's output as it comes; call once. Raises ContainerRuntimeError when the
        engine fails mid-stream."""
        ...

    async def write_stdin(self, data: bytes) -> None:
        """Writes to the command's standard input; returns once written (so a command that does
        not read holds its writer back). Data for a command that has ended is dropped."""
        ...

    async def close_stdin(self) -> None:
        """End of input: the command reads end of file. Ignored with a TTY: there the end of
        input is the terminal's EOF character (Ctrl-D), which the caller sends as data."""
        ...

    async def resize(self, size: TerminalSize) -> None:
        """Resizes the command's terminal (ignored without a TTY)."""
        ...

    async def exit_code(self) -> int:
        """The command's exit code, once ``output()`` has ended."""
        ...

    async def close(self) -> None:
        """Ends the stream (idempotent); ``output()`` ends, the session's threads return."""
        ...

    async def __aenter__(self) -> ExecSession: ...

    async def __aexit__(self, *exc: object) -> None: ...


@dataclass
class ContainerInfo:
    """One Docker container of a pod, as observed (from inspect or list + labels)."""

    id: str
    name: str  # the pod's container name, or INFRA_CONTAINER_NAME
    pod_uid: str
    pod_name: str
    pod_namespace: str
    state: str  # "created", "running", "exited", "unknown" (paused/restarting/dead map here)
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None
    restart_count: int = 0  # label pykube.restart.count: the attempt number of this container
    spec_hash: str = ""  # label pykube.spec.hash: hash of the container spec it was created from
    image: str = ""
    image_id: str = ""
    error: str = ""  # Docker's State.Error
    oom_killed: bool = False
    # The infra container's IP on the bridge; empty for app containers and for a pod on the host's
    # network (its podIP is the node's address: pod_status uses spec.hostNetwork).
    ip: str = ""


@dataclass(frozen=True)
class ContainerDiskUsage:
    """The node's disk one container takes (the kubelet's container fs stats): its writable layer
    and its log files.

    Attributes:
        id: the container's id.
        name: the pod's container name, or INFRA_CONTAINER_NAME.
        restart_count: the attempt number of this container (label pykube.restart.count).
        rootfs_bytes: the size of its writable layer (what it wrote over its image).
        logs_bytes: the disk its log files take, rotated ones included.
    """

    id: str
    name: str
    restart_count: int
    rootfs_bytes: int
    logs_bytes: int


@dataclass
class PodRuntime:
    """Every container the engine holds for one pod on this node, newest first per name."""

    uid: str
    name: str
    namespace: str
    containers: list[ContainerInfo] = field(default_factory=list)

    @property
    def infra(self) -> ContainerInfo | None:
        """The newest infra container, if any."""
        return next((c for c in self.containers if c.name == INFRA_CONTAINER_NAME), None)

    def latest(self, name: str) -> ContainerInfo | None:
        """The newest container for the pod's container ``name``."""
        return next((c for c in self.containers if c.name == name), None)


class Runtime(Protocol):
    """The operations the agent needs from a container engine. All calls are async; blocking
    engine calls run in a bounded thread pool so one slow call delays only its own pod."""

    async def version(self) -> str:
        """The engine's version, e.g. "20.10.24" (reported as docker://<version>)."""
        ...

    async def list_pods(self, node_name: str) -> dict[str, PodRuntime]:
        """Every pod uid with containers labelled for ``node_name``, including exited ones."""
        ...

    async def get_pod(self, node_name: str, pod_uid: str) -> PodRuntime | None:
        """The containers of one pod, freshly inspected; None when it has none."""
        ...

    async def container_disk_usage(self, node_name: str, pod_uid: str) -> list[ContainerDiskUsage]:
        """What each container of one pod (every attempt still kept, the infra container included)
        takes on the node's disk now. Not free (the engine walks each writable layer): call it
        every few seconds at most. Empty when the pod has no container."""
        ...

    async def ensure_image(
        self, image: str, pull_policy: str, on_pull: Callable[[str], None] | None = None
    ) -> float | None:
        """Makes ``image`` present per imagePullPolicy; ``on_pull(image)`` when a pull starts.
        Returns the pull's seconds, None when the image was present (not pulled).
        Raises ImagePullError, ImageNeverPullError."""
        ...

    async def start_infra(
        self,
        pod: objects_pb2.Pod,
        node_name: str,
        infra_image: str,
        restart_count: int = 0,
        sandbox: SandboxConfig | None = None,
    ) -> ContainerInfo:
        """Creates and starts the pod's infra container (network and IPC namespaces, with the pod's
        sysctls; published ports; the host's network namespace under spec.hostNetwork).
        ``restart_count`` is the attempt number of the sandbox (0 first, +1 per re-creation), so
        a re-created infra container never clashes with the name of a dead one. ``sandbox``: the
        network it joins and the pod's resolv.conf (shared by the app containers).
        Raises InfraImageMissing / CreateContainerError / RunContainerError."""
        ...

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
        """Creates and starts one app container joined to the infra container's namespaces, with
        ``mounts`` (prepared by the volume manager, in volumeMounts order) and its
        securityContext. ``resolved`` is ``container`` with its environment resolved (valueFrom,
        envFrom) and $(VAR) expanded in env, command and args: what runs (default: ``container``
        as is); the name, labels and spec hash always come from ``container``. Raises
        CreateContainerConfigError (its securityContext cannot be honoured on this node: nothing
        was created) / CreateContainerError / RunContainerError."""
        ...

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period. Stopping a stopped container is fine."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Removes a container (forcefully). Removing a missing container is fine."""
        ...

    async def exec(
        self, container_id: str, command: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> ExecResult:
        """Runs ``command`` in a running container and waits at most ``timeout`` seconds for it;
        ``stdin`` (if any) is its standard input, then end of file. A command that outlives the
        timeout comes back with ``timed_out`` and is left running. Raises ContainerNotFound, and
        ContainerRuntimeError for a container that is not running."""
        ...

    async def exec_stream(
        self,
        container_id: str,
        command: Sequence[str],
        stdin: bool = False,
        tty: bool = False,
        size: TerminalSize | None = None,
    ) -> ExecSession:
        """Starts ``command`` in a running container, interactively (``pyctl exec``): its output
        streamed as it comes, with its standard input open when ``stdin``, on a terminal of
        ``size`` when ``tty`` (stdout and stderr are then one stream, STDOUT). Close the session
        when done. Raises ContainerNotFound, ContainerNotRunning, ContainerRuntimeError."""
        ...

    def logs(
        self, container_id: str, follow: bool, tail_lines: int | None, timestamps: bool
    ) -> AsyncIterator[bytes]:
        """Streams a container's stdout/stderr. Raises ContainerNotFound."""
        ...

    def events(self, node_name: str) -> AsyncIterator[str]:
        """Streams the pod uid of every container event (start, die, destroy ...) on this node."""
        ...

    async def close(self) -> None: ...
