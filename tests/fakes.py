"""The one fake container runtime for unit tests of the agent's logic (like the kubelet's
``container/testing``): an in-memory implementation of ``pykubelet.runtime.base.Runtime`` that
keeps pods and containers the way Docker's labels would describe them, records every call, and
fails on demand. It is never a stand-in for Docker in tests that claim the agent works: those run
the real engine (tests/e2e).

Also ``FakeVolumes``, the volume manager's counterpart: one bind mount per container.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime

from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    STDERR,
    STDOUT,
    ContainerDiskUsage,
    ContainerInfo,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRuntimeError,
    ExecResult,
    Mount,
    PodRuntime,
    SandboxConfig,
    TerminalSize,
)
from pymaster.api import objects_pb2


def container(
    cid: str,
    name: str = "app",
    state: str = "running",
    *,
    uid: str = "u1",
    restart_count: int = 0,
    exit_code: int | None = None,
    **fields: object,
) -> ContainerInfo:
    """A ContainerInfo of pod ``uid`` (named ``pod-<uid>`` in namespace default)."""
    return ContainerInfo(
        id=cid, name=name, pod_uid=uid, pod_name=f"pod-{uid}", pod_namespace="default", state=state,
        restart_count=restart_count, exit_code=exit_code, **fields,  # type: ignore[arg-type]
    )


def pod_runtime(*containers: ContainerInfo, uid: str = "u1") -> PodRuntime:
    """A PodRuntime holding ``containers`` (give them newest first per name)."""
    return PodRuntime(uid, f"pod-{uid}", "default", list(containers))


class FakeVolumes:
    """The volume manager: one bind mount per container and its termination log; clean-ups
    recorded in ``calls``; termination messages from ``messages`` ((container, restart count) ->
    text); what volumes take on disk from ``usage`` (volume name -> bytes, 0 when not named),
    ``measured`` counting the measurements."""

    def __init__(self, calls: list[tuple]):
        self.calls = calls
        self.error: Exception | None = None
        self.messages: dict[tuple[str, int], str] = {}
        self.usage: dict[str, int] = {}
        self.measured = 0

    async def mounts(self, pod: objects_pb2.Pod, spec: objects_pb2.Container) -> list[Mount]:
        if self.error is not None:
            raise self.error
        return [Mount(f"/{spec.name}", f"/host/{pod.metadata.uid}/{spec.name}")]

    async def termination_log(
        self, pod: objects_pb2.Pod, spec: objects_pb2.Container, restart_count: int
    ) -> Mount:
        path = spec.termination_message_path or "/dev/termination-log"
        return Mount(path, f"/host/{pod.metadata.uid}/{spec.name}/{restart_count}-termination-log")

    async def termination_message(self, pod_uid: str, container: str, restart_count: int) -> str:
        return self.messages.get((container, restart_count), "")

    async def measure(self, pod: objects_pb2.Pod, names: Iterable[str]) -> dict[str, int]:
        self.measured += 1
        return {name: self.usage.get(name, 0) for name in names}

    async def cleanup(self, pod_uid: str) -> None:
        self.calls.append(("remove_volumes", pod_uid))


class FakeExecSession:
    """An interactive exec of the fake runtime: its output is the ``ExecResult``'s stdout, then its
    stderr, then (with stdin) every chunk written echoed on stdout until stdin is closed (with
    ``hold``, until the session is closed); its exit code is the result's.

    Attributes:
        command, stdin, tty: how it was started; ``sizes``: its initial size and every resize.
        written: the stdin chunks; ``stdin_closed``, ``closed``: what was ended.
    """

    def __init__(self, command: Sequence[str], result: ExecResult, stdin: bool, tty: bool,
                 size: TerminalSize | None, hold: bool = False):
        self.command, self.stdin, self.tty = list(command), stdin, tty
        self.sizes: list[TerminalSize] = [size] if size is not None else []
        self.written: list[bytes] = []
        self.stdin_closed = False
        self.closed = False
        self._result = result
        self._hold = hold
        self._echo: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def __aenter__(self) -> FakeExecSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        for stream, data in ((STDOUT, self._result.stdout), (STDERR, self._result.stderr)):
            if data:
                yield (STDOUT if self.tty else stream), data
        while (self.stdin or self._hold) and (data := await self._echo.get()) is not None:
            yield STDOUT, data

    async def write_stdin(self, data: bytes) -> None:
        if not self.stdin:
            raise ContainerRuntimeError("the exec was started without stdin")
        self.written.append(data)
        self._echo.put_nowait(data)

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        if not self._hold:
            self._echo.put_nowait(None)

    async def resize(self, size: TerminalSize) -> None:
        self.sizes.append(size)

    async def exit_code(self) -> int:
        return self._result.exit_code

    async def close(self) -> None:
        self.closed = True
        self._echo.put_nowait(None)


class FakeRuntime:
    """An in-memory Runtime.

    Attributes:
        pods: pod uid -> PodRuntime; tests may set it directly to describe what "Docker" holds.
        calls: every mutating call, in order, e.g. ("start_container", name, infra id, restart).
        fail_images: image -> the error ``ensure_image`` raises for it.
        infra_error: raised by ``start_infra`` when set.
        fail_removals: container ids whose removal fails.
        exec_results: container id -> the result of ``exec`` in it (default: exit 0, no output);
            also what an ``exec_stream`` session there outputs and exits with.
        exec_sessions: every session ``exec_stream`` started, in order.
        exec_hold: sessions started from now on keep their output open until they are closed.
        block: ``get_pod``/``list_pods`` wait for it (set by default), to hold a sync mid-way.
        gets: how many times ``get_pod`` was called.
        volumes: a FakeVolumes sharing ``calls``.
        mounts: container name -> the mounts its last start got.
        resolved: container name -> what its last start ran (env, command, args resolved).
        disk: container id -> (writable layer bytes, log bytes) ``container_disk_usage`` reports
            (0, 0 for a container not named); ``disk_reads`` counts its calls, ``disk_error``
            (when set) is raised by it.
    """

    def __init__(self, fail_images: dict[str, Exception] | None = None, infra_error: Exception | None = None):
        self.pods: dict[str, PodRuntime] = {}
        self.calls: list[tuple] = []
        self.fail_images = fail_images or {}
        self.infra_error = infra_error
        self.fail_removals: set[str] = set()
        self.exec_results: dict[str, ExecResult] = {}
        self.exec_sessions: list[FakeExecSession] = []
        self.exec_hold = False
        self.block = asyncio.Event()
        self.block.set()
        self.gets = 0
        self.volumes = FakeVolumes(self.calls)
        self.mounts: dict[str, list[Mount]] = {}
        self.resolved: dict[str, objects_pb2.Container] = {}
        self.disk: dict[str, tuple[int, int]] = {}
        self.disk_reads = 0
        self.disk_error: Exception | None = None
        self._ids = itertools.count(1)

    # ---- observation ----

    async def version(self) -> str:
        return "fake-1.0"

    async def list_pods(self, node_name: str) -> dict[str, PodRuntime]:
        await self.block.wait()
        return {uid: pod for uid, pod in self.pods.items() if pod.containers}

    async def get_pod(self, node_name: str, pod_uid: str) -> PodRuntime | None:
        self.gets += 1
        await self.block.wait()
        pod = self.pods.get(pod_uid)
        return pod if pod is not None and pod.containers else None

    async def container_disk_usage(self, node_name: str, pod_uid: str) -> list[ContainerDiskUsage]:
        self.disk_reads += 1
        if self.disk_error is not None:
            raise self.disk_error
        pod = self.pods.get(pod_uid)
        return [
            ContainerDiskUsage(c.id, c.name, c.restart_count, *self.disk.get(c.id, (0, 0)))
            for c in (pod.containers if pod is not None else [])
        ]

    # ---- operations ----

    async def ensure_image(
        self, image: str, pull_policy: str, on_pull: Callable[[str], None] | None = None
    ) -> float | None:
        self.calls.append(("ensure_image", image, pull_policy))
        if image in self.fail_images:
            raise self.fail_images[image]
        return None  # always present

    async def start_infra(
        self, pod: objects_pb2.Pod, node_name: str, infra_image: str, restart_count: int = 0,
        sandbox: SandboxConfig | None = None,
    ) -> ContainerInfo:
        self.calls.append(("start_infra", infra_image, restart_count))
        if self.infra_error is not None:
            raise self.infra_error
        info = self._add(pod, INFRA_CONTAINER_NAME, "new-infra", restart_count, ip="172.17.0.5")
        return info

    async def start_container(
        self,
        pod: objects_pb2.Pod,
        spec: objects_pb2.Container,
        node_name: str,
        infra: ContainerInfo,
        restart_count: int,
        mounts: Sequence[Mount] = (),
        resolved: objects_pb2.Container | None = None,
    ) -> ContainerInfo:
        self.calls.append(("start_container", spec.name, infra.id, restart_count))
        self.mounts[spec.name] = list(mounts)
        self.resolved[spec.name] = resolved if resolved is not None else spec
        return self._add(pod, spec.name, f"new-{spec.name}", restart_count)

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        self.calls.append(("stop", container_id, grace_seconds))
        found = self._find(container_id)
        if found is not None and found.state in ("running", "unknown"):
            found.state, found.exit_code = "exited", 137
            found.finished_at = datetime.now(UTC)

    async def remove_container(self, container_id: str) -> None:
        self.calls.append(("remove", container_id))
        if container_id in self.fail_removals:
            raise ContainerRuntimeError(f"cannot remove {container_id}")
        for pod in self.pods.values():
            pod.containers = [c for c in pod.containers if c.id != container_id]

    async def exec(
        self, container_id: str, command: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> ExecResult:
        self.calls.append(("exec", container_id, tuple(command)))
        if self._find(container_id) is None:
            raise ContainerNotFound(f"no such container: {container_id}")
        return self.exec_results.get(container_id, ExecResult(0, b"", b""))

    async def exec_stream(
        self,
        container_id: str,
        command: Sequence[str],
        stdin: bool = False,
        tty: bool = False,
        size: TerminalSize | None = None,
    ) -> FakeExecSession:
        self.calls.append(("exec_stream", container_id, tuple(command)))
        found = self._find(container_id)
        if found is None:
            raise ContainerNotFound(f"no such container: {container_id}")
        if found.state != "running":
            raise ContainerNotRunning(f"cannot exec in container {container_id}: it is not running")
        result = self.exec_results.get(container_id, ExecResult(0, b"", b""))
        session = FakeExecSession(command, result, stdin, tty, size, self.exec_hold)
        self.exec_sessions.append(session)
        return session

    async def logs(
        self, container_id: str, follow: bool, tail_lines: int | None, timestamps: bool
    ) -> AsyncIterator[bytes]:
        if self._find(container_id) is None:
            raise ContainerNotFound(f"no such container: {container_id}")
        yield f"log of {container_id}\n".encode()

    async def events(self, node_name: str) -> AsyncIterator[str]:
        await asyncio.Event().wait()  # no events: the relist finds every change
        yield ""

    async def close(self) -> None:
        pass

    # ---- helpers ----

    def _add(
        self, pod: objects_pb2.Pod, name: str, prefix: str, restart_count: int, **fields: object
    ) -> ContainerInfo:
        meta = pod.metadata
        now = datetime.now(UTC)
        info = ContainerInfo(
            id=prefix if not self._find(prefix) else f"{prefix}-{next(self._ids)}", name=name,
            pod_uid=meta.uid, pod_name=meta.name, pod_namespace=meta.namespace, state="running",
            restart_count=restart_count, created_at=now, started_at=now, **fields,
        )
        runtime = self.pods.setdefault(meta.uid, PodRuntime(meta.uid, meta.name, meta.namespace))
        runtime.containers.insert(0, info)  # newest first
        return info

    def _find(self, container_id: str) -> ContainerInfo | None:
        for pod in self.pods.values():
            for info in pod.containers:
                if info.id == container_id:
                    return info
        return None
