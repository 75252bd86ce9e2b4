"""The Docker runtime, the sync plan's execution and the pod status against the real engine: one
pod at a time, no agent process. Each test uses its own node name and leaves no container."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pykubelet import sync
from pykubelet.executor import PodExecutor
from pykubelet.network.pod_network import bridge_network
from pykubelet.pod_status import Observations, compute_pod_status
from pykubelet.runtime import labels
from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerLogLimits,
    ContainerNotFound,
    ContainerRuntimeError,
    ExecResult,
    InfraImageMissing,
    PodRuntime,
    RuntimeUnavailable,
)
from pykubelet.runtime.docker import DockerRuntime, exec_sync
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2

from .harness import BUSYBOX, free_port, wait_for

pytestmark = pytest.mark.e2e

PAUSE = "pykube/pause:3.9"
# Pull attempts go to a registry that refuses at once: no internet is ever touched.
UNREACHABLE = "127.0.0.1:1/pykube"


def make_pod(
    command: list[str],
    policy: str = "Always",
    name: str = "web",
    image: str = BUSYBOX,
    pull_policy: str = "IfNotPresent",
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=str(uuid.uuid4()))
    )
    pod.spec.restart_policy = policy
    pod.spec.termination_grace_period_seconds = 1
    pod.spec.containers.add(name="main", image=image, command=command, image_pull_policy=pull_policy)
    return pod


@pytest.fixture
def volumes(tmp_path: Path) -> PodVolumes:
    """The volume manager of the test's agent (these pods mount nothing: it stays empty)."""
    return PodVolumes(tmp_path / "pods")


async def sync_once(
    rt: DockerRuntime, volumes: PodVolumes, pod: objects_pb2.Pod, node: str, infra_image: str = PAUSE
):
    """One pod sync as the agent does it; returns (actions, failures, observed after)."""
    observed = await rt.get_pod(node, pod.metadata.uid)
    actions = sync.compute_pod_actions(pod, observed)
    failures = await PodExecutor(rt, volumes, node, infra_image).execute(pod, actions, observed)
    return actions, failures, await rt.get_pod(node, pod.metadata.uid)


async def until_main(rt: DockerRuntime, pod: objects_pb2.Pod, node: str, state: str) -> PodRuntime:
    """Waits until the newest "main" container is in ``state``."""

    async def check() -> PodRuntime | None:
        observed = await rt.get_pod(node, pod.metadata.uid)
        latest = observed.latest("main") if observed is not None else None
        return observed if latest is not None and latest.state == state else None

    return await wait_for(check, 30, f"main to be {state}")


def status(pod: objects_pb2.Pod, observed: PodRuntime | None, failures=None) -> objects_pb2.PodStatus:
    by_name = {f.container_name: f for f in failures or []}
    return compute_pod_status(pod, observed, Observations(failures=by_name), "127.0.0.1", datetime.now(UTC))


async def test_pod_runs_with_labels_network_env_limits_and_logs(runtime, volumes, clean_node, docker_client):
    pod = make_pod(["sh", "-c", "echo hello; echo $GREETING; sleep 3600"])
    main = pod.spec.containers[0]
    main.env.add(name="GREETING", value="from-env")
    main.resources.limits.update({"cpu": "500m", "memory": "64Mi"})
    main.resources.requests["cpu"] = "250m"

    actions, failures, observed = await sync_once(runtime, volumes, pod, clean_node)
    assert (actions.create_sandbox, actions.containers_to_start, failures) == (True, {"main": 0}, [])

    pods = await runtime.list_pods(clean_node)
    assert list(pods) == [pod.metadata.uid]
    observed = pods[pod.metadata.uid]
    states = {c.name: c.state for c in observed.containers}
    assert states == {INFRA_CONTAINER_NAME: "running", "main": "running"}
    infra, app = observed.infra, observed.latest("main")
    assert infra.ip
    assert (app.pod_name, app.pod_namespace, app.restart_count) == ("web", "default", 0)
    assert app.spec_hash == labels.container_spec_hash(main)

    attrs = docker_client.api.inspect_container(app.id)
    assert attrs["Name"] == f"/pk_main_web_default_{pod.metadata.uid[:8]}_0"
    assert attrs["Config"]["Labels"][labels.NODE_NAME] == clean_node
    assert attrs["Config"]["Labels"][labels.CONTAINER_NAME] == "main"
    assert "GREETING=from-env" in attrs["Config"]["Env"]
    host = attrs["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["CpuShares"]) == (500_000_000, 64 * 2**20, 256)
    assert host["NetworkMode"] == host["IpcMode"] == f"container:{infra.id}"
    assert host["RestartPolicy"]["Name"] in ("", "no")
    # The kubelet's default log rotation: 10Mi per file, 5 files.
    log_config = {"Type": "json-file", "Config": {"max-size": str(10 * 2**20), "max-file": "5"}}
    assert host["LogConfig"] == log_config
    infra_attrs = docker_client.api.inspect_container(infra.id)
    assert infra_attrs["Name"] == f"/pk_POD_web_default_{pod.metadata.uid[:8]}_0"
    assert infra_attrs["Config"]["Hostname"] == "web"

    pod_status = status(pod, observed)
    assert pod_status.phase == "Running"
    assert pod_status.pod_ip == infra.ip
    assert pod_status.container_statuses[0].container_id == f"docker://{app.id}"

    async def logged() -> bytes | None:
        async with contextlib.aclosing(runtime.logs(app.id, False, None, False)) as chunks:
            output = b"".join([chunk async for chunk in chunks])
        return output if b"from-env" in output else None

    assert (await wait_for(logged, 10, "the container's output")).startswith(b"hello\n")
    assert sync.compute_pod_actions(pod, await runtime.get_pod(clean_node, pod.metadata.uid)).is_noop()

    # Another agent's node on the same engine sees none of it.
    assert await runtime.list_pods(f"{clean_node}-other") == {}
    assert await runtime.get_pod(f"{clean_node}-other", pod.metadata.uid) is None


@pytest.mark.parametrize(("code", "phase", "reason"), [(3, "Failed", "Error"), (0, "Succeeded", "Completed")])
async def test_exit_code_under_never(runtime, volumes, clean_node, code, phase, reason):
    pod = make_pod(["sh", "-c", f"exit {code}"], policy="Never")
    await sync_once(runtime, volumes, pod, clean_node)
    observed = await until_main(runtime, pod, clean_node, "exited")
    assert observed.latest("main").exit_code == code
    pod_status = status(pod, observed)
    terminated = pod_status.container_statuses[0].state.terminated
    assert (pod_status.phase, terminated.exit_code, terminated.reason) == (phase, code, reason)
    assert terminated.finished_at.seconds > 0

    # Finished: the sandbox is stopped, then nothing more happens.
    actions, failures, observed = await sync_once(runtime, volumes, pod, clean_node)
    assert (actions.kill_pod, actions.create_sandbox, actions.containers_to_start) == (True, False, {})
    assert observed.infra.state == "exited"
    assert sync.compute_pod_actions(pod, observed).is_noop()
    assert status(pod, observed).phase == phase


async def test_restart_always_counts_and_keeps_one_dead(runtime, volumes, clean_node):
    pod = make_pod(["sh", "-c", "echo once; exit 1"])
    await sync_once(runtime, volumes, pod, clean_node)
    for attempt in range(1, 4):
        await until_main(runtime, pod, clean_node, "exited")
        actions, failures, observed = await sync_once(runtime, volumes, pod, clean_node)
        assert (actions.containers_to_start, failures) == ({"main": attempt}, [])
        assert observed.latest("main").restart_count == attempt
    observed = await runtime.get_pod(clean_node, pod.metadata.uid)
    assert sorted(c.restart_count for c in observed.containers if c.name == "main") == [2, 3]
    container_status = status(pod, observed).container_statuses[0]
    assert container_status.restart_count == 3
    assert container_status.last_state.terminated.exit_code == 1
    assert status(pod, observed).phase == "Running"


async def test_start_failure_is_reported_then_terminated(runtime, volumes, clean_node):
    pod = make_pod(["/no/such/binary"], policy="Never")
    _, failures, observed = await sync_once(runtime, volumes, pod, clean_node)
    assert [(f.container_name, f.reason) for f in failures] == [("main", "RunContainerError")]
    assert "no/such/binary" in failures[0].message
    assert status(pod, observed, failures).container_statuses[0].state.waiting.reason == "RunContainerError"
    # The failed attempt is over: next sync nothing restarts (Never) and the pod has Failed.
    latest = observed.latest("main")
    assert (latest.state, latest.exit_code) == ("exited", 127)
    pod_status = status(pod, observed)
    assert pod_status.phase == "Failed"
    assert pod_status.container_statuses[0].state.terminated.reason == "ContainerCannotRun"


async def test_missing_images_are_failures_not_crashes(runtime, volumes, clean_node):
    never = make_pod(["true"], image="pykube/does-not-exist:1", pull_policy="Never")
    _, failures, observed = await sync_once(runtime, volumes, never, clean_node)
    assert [f.reason for f in failures] == ["ErrImageNeverPull"]
    assert observed.infra.state == "running" and observed.latest("main") is None
    pod_status = status(never, observed, failures)
    assert pod_status.phase == "Pending"
    assert pod_status.container_statuses[0].state.waiting.reason == "ErrImageNeverPull"

    pulled = make_pod(["true"], name="pulled", image=f"{UNREACHABLE}/missing:1")
    _, failures, _ = await sync_once(runtime, volumes, pulled, clean_node)
    assert [f.reason for f in failures] == ["ErrImagePull"]
    assert f"{UNREACHABLE}/missing:1" in failures[0].message


async def test_unknown_infra_image(runtime, volumes, clean_node, docker_client):
    pod = make_pod(["sleep", "3600"])
    infra_image = f"{UNREACHABLE}/no-pause:0"
    _, failures, observed = await sync_once(runtime, volumes, pod, clean_node, infra_image=infra_image)
    assert [(f.container_name, f.reason) for f in failures] == [("main", InfraImageMissing.reason)]
    assert f"infra image {infra_image} not found locally" in failures[0].message
    assert "--pod-infra-image" in failures[0].message
    assert observed is None
    assert status(pod, observed, failures).container_statuses[0].state.waiting.reason == "InfraImageMissing"


async def test_spec_change_restarts_the_container(runtime, volumes, clean_node):
    pod = make_pod(["sleep", "3600"])
    _, _, first = await sync_once(runtime, volumes, pod, clean_node)
    pod.spec.containers[0].command[:] = ["sh", "-c", "sleep 3600"]  # any change of the container spec
    actions, failures, observed = await sync_once(runtime, volumes, pod, clean_node)
    assert list(actions.containers_to_kill) == [first.latest("main").id]
    assert failures == []
    latest = observed.latest("main")
    assert (latest.state, latest.restart_count) == ("running", 1)
    assert observed.infra.id == first.infra.id


async def test_host_port_is_published_on_the_infra_container(runtime, volumes, clean_node):
    pod = make_pod(["sh", "-c", "mkdir -p /www && echo served > /www/index.html && httpd -f -p 8080 -h /www"])
    port = free_port()
    pod.spec.containers[0].ports.add(container_port=8080, host_port=port, host_ip="127.0.0.1", protocol="TCP")
    _, failures, _ = await sync_once(runtime, volumes, pod, clean_node)
    assert failures == []

    async def served() -> str | None:
        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
                return response.read().decode()

        try:
            return await asyncio.to_thread(get)
        except OSError:
            return None

    assert (await wait_for(served, 20, "the pod's host port")).strip() == "served"


async def test_kill_pod_removes_everything(runtime, volumes, clean_node, docker_client):
    pod = make_pod(["sleep", "3600"])
    _, _, observed = await sync_once(runtime, volumes, pod, clean_node)
    await PodExecutor(runtime, volumes, clean_node, PAUSE).kill_pod(observed, 1, remove=True)
    assert await runtime.get_pod(clean_node, pod.metadata.uid) is None
    node_filter = {"label": f"{labels.NODE_NAME}={clean_node}"}
    assert docker_client.containers.list(all=True, filters=node_filter) == []
    logs = runtime.logs(observed.latest("main").id, False, None, False)
    with pytest.raises(ContainerNotFound):
        async with contextlib.aclosing(logs) as chunks:
            async for _ in chunks:
                pass


async def test_events_yield_the_pod_uid_when_a_container_dies(runtime, volumes, clean_node, docker_client):
    pod = make_pod(["sleep", "3600"])
    _, _, observed = await sync_once(runtime, volumes, pod, clean_node)
    seen: list[str] = []

    async def consume() -> None:
        async for uid in runtime.events(clean_node):
            seen.append(uid)

    task = asyncio.create_task(consume())
    try:
        # The stream connects in the background: start labelled probes until one is seen.
        async def connected() -> bool:
            probe = f"probe-{uuid.uuid4().hex[:6]}"
            docker_client.containers.run(
                PAUSE, detach=True, labels={labels.NODE_NAME: clean_node, labels.POD_UID: probe}
            )
            return any(uid.startswith("probe-") for uid in seen)

        await wait_for(connected, 20, "the event stream")
        seen.clear()
        await runtime.stop_container(observed.latest("main").id, 0)
        await wait_for(lambda: _async_true(pod.metadata.uid in seen), 20, "the die event")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: _async_true(not _threads(f"docker-events-{clean_node}")), 10, "the reader to end")


async def test_follow_logs_stream_and_cancel(runtime, volumes, clean_node):
    pod = make_pod(["sh", "-c", "while true; do echo tick; sleep 0.2; done"])
    _, _, observed = await sync_once(runtime, volumes, pod, clean_node)
    container_id = observed.latest("main").id
    received = b""
    async with contextlib.aclosing(runtime.logs(container_id, True, 0, True)) as chunks:
        async for chunk in chunks:
            received += chunk
            if received.count(b"tick") >= 2:
                break
    assert b"Z tick" in received  # timestamps on
    reader = f"docker-logs-{container_id[:12]}"
    await wait_for(lambda: _async_true(not _threads(reader)), 10, "the reader to end")


async def running_main(rt: DockerRuntime, volumes: PodVolumes, node: str) -> str:
    """Starts a pod whose main container sleeps; returns that container's id."""
    _, failures, observed = await sync_once(rt, volumes, make_pod(["sleep", "3600"]), node)
    assert failures == []
    return observed.latest("main").id


async def test_exec_returns_the_exit_code_and_separates_stdout_from_stderr(runtime, volumes, clean_node):
    container_id = await running_main(runtime, volumes, clean_node)
    result = await runtime.exec(container_id, ["sh", "-c", "echo out; echo err >&2; echo more; exit 3"], 10)
    assert result == ExecResult(exit_code=3, stdout=b"out\nmore\n", stderr=b"err\n")
    assert await runtime.exec(container_id, ["true"], 10) == ExecResult(0, b"", b"")


async def test_exec_feeds_stdin_then_end_of_file(runtime, volumes, clean_node):
    container_id = await running_main(runtime, volumes, clean_node)
    script = ["sh", "-c", "cat; echo read-all >&2"]
    result = await runtime.exec(container_id, script, 10, stdin=b"line 1\nline 2")
    assert result == ExecResult(0, b"line 1\nline 2", b"read-all\n")
    # More than the pipes hold in both directions at once: no deadlock, the output capped.
    big = os.urandom(3 * 2**20)
    result = await runtime.exec(container_id, ["cat"], 30, stdin=big)
    assert (result.exit_code, result.timed_out, result.stdout) == (0, False, big[: exec_sync.OUTPUT_CAP])


async def test_exec_output_is_capped(runtime, volumes, clean_node):
    container_id = await running_main(runtime, volumes, clean_node)
    script = "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; echo done"
    result = await runtime.exec(container_id, ["sh", "-c", script], 30)
    cap = exec_sync.OUTPUT_CAP
    assert (result.exit_code, len(result.stdout), len(result.stderr)) == (0, cap, cap)


async def test_exec_timeout_leaves_the_command_running(runtime, volumes, clean_node):
    container_id = await running_main(runtime, volumes, clean_node)
    started = time.monotonic()
    result = await runtime.exec(container_id, ["sh", "-c", "echo started; exec sleep 4242"], 0.5)
    assert result.timed_out and result.exit_code == -1
    assert time.monotonic() - started < 10  # a generous bound: it did not wait for the command
    assert result.stdout == b"started\n"
    reader = f"docker-exec-{container_id[:12]}"
    await wait_for(lambda: _async_true(not _threads(reader)), 10, "the reader to end")
    ps = await runtime.exec(container_id, ["ps"], 10)
    assert b"sleep 4242" in ps.stdout  # the Docker API cannot kill an exec'd process


async def test_exec_in_a_missing_or_stopped_container(runtime, volumes, clean_node):
    with pytest.raises(ContainerNotFound):
        await runtime.exec("no-such-container", ["true"], 10)
    container_id = await running_main(runtime, volumes, clean_node)
    await runtime.stop_container(container_id, 0)
    with pytest.raises(ContainerRuntimeError, match="is not running") as err:
        await runtime.exec(container_id, ["true"], 10)
    assert not isinstance(err.value, ContainerNotFound)
    assert f"cannot exec in container {container_id[:12]}" in err.value.message


async def test_a_restarted_agent_adopts_the_pod(runtime, volumes, clean_node):
    pod = make_pod(["sleep", "3600"])
    _, _, before = await sync_once(runtime, volumes, pod, clean_node)
    fresh = DockerRuntime()  # like an agent restarted after kill -9: no memory but Docker's labels
    try:
        adopted = await fresh.get_pod(clean_node, pod.metadata.uid)
        assert sorted(c.id for c in adopted.containers) == sorted(c.id for c in before.containers)
        assert sync.compute_pod_actions(pod, adopted).is_noop()
        assert status(pod, adopted).phase == "Running"
        assert (await fresh.list_pods(clean_node)).keys() == {pod.metadata.uid}
    finally:
        await fresh.close()


async def test_a_chatty_container_keeps_its_log_files_bounded(volumes, clean_node, docker_client):
    limits = ContainerLogLimits(max_size=64 * 1024, max_files=2)
    rt = DockerRuntime(log_limits=limits)
    try:
        pod = make_pod(["yes", "pykube " * 30])  # ~250 bytes per json line: fewer lines for dockerd
        _, failures, observed = await sync_once(rt, volumes, pod, clean_node)
        assert failures == []
        attrs = docker_client.api.inspect_container(observed.latest("main").id)
        assert attrs["HostConfig"]["LogConfig"] == {
            "Type": "json-file", "Config": {"max-size": "65536", "max-file": "2"}
        }
        log_path = Path(attrs["LogPath"])
        rotated = Path(f"{log_path}.1")

        async def rotated_inode(previous: int | None = None) -> int | None:
            with contextlib.suppress(FileNotFoundError):  # between Docker's renames
                inode = rotated.stat().st_ino
                return inode if inode != previous else None
            return None

        # Docker rotates by renaming: a new inode at <log>.1 is a new rotation. Two rotations mean
        # more was written than the two files hold, so the oldest output has been dropped.
        first = await wait_for(rotated_inode, 60, "the log's first rotation")
        await wait_for(lambda: rotated_inode(first), 60, "the log's second rotation")

        files = sorted(log_path.parent.glob(log_path.name + "*"))
        assert [f.name for f in files] == [log_path.name, rotated.name]  # max-file: 2, no .2
        sizes = []
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(file.stat().st_size)
        # Docker checks the size before each write: a file may pass max-size by one message.
        one_message = 16 * 1024
        assert all(size <= limits.max_size + one_message for size in sizes), sizes
        assert sum(sizes) <= limits.max_size * limits.max_files + one_message * limits.max_files
    finally:
        await rt.close()


async def test_observer_sees_every_operation_and_a_steady_relist_is_one_call(volumes, clean_node):
    seen: list[tuple[str, bool]] = []
    rt = DockerRuntime(observe=lambda operation, seconds, error: seen.append((operation, error)))
    try:
        assert await rt.version()
        await sync_once(rt, volumes, make_pod(["sleep", "3600"]), clean_node)
        await rt.stop_container("does-not-exist", 0)
        operations = {operation for operation, _ in seen}
        assert {"version", "list_containers", "inspect_image", "create_container", "start_container",
                "inspect_container", "stop_container"} <= operations
        assert not any(error for _, error in seen)

        await rt.list_pods(clean_node)
        seen.clear()
        await rt.list_pods(clean_node)
        await rt.list_pods(clean_node)
        assert seen == [("list_containers", False), ("list_containers", False)]
    finally:
        await rt.close()


async def _async_true(value: bool) -> bool:
    return value


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]



async def test_unreachable_engine_raises_runtime_unavailable(tmp_path):
    rt = DockerRuntime(base_url=f"unix://{tmp_path}/no-docker.sock")
    try:
        with pytest.raises(RuntimeUnavailable):
            await rt.list_pods("nowhere")
        with pytest.raises(RuntimeUnavailable):
            await rt.ensure_image(BUSYBOX, "IfNotPresent")
        # The event stream keeps retrying instead of failing; closing the runtime ends it.
        events = rt.events("nowhere")
        pending = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0)
        assert not pending.done()
    finally:
        await rt.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 10)
    await events.aclose()


async def test_a_stale_pod_network_of_another_node_gives_way(runtime, docker_client, clean_node):
    """A pod network left by a node of another cluster on this host (no container on it) on the
    subnet this node was handed is removed, so the node's own network can be made."""
    stale = bridge_network(f"{clean_node}-old", "10.251.7.0/24")
    mine = bridge_network(clean_node, "10.251.7.0/24")
    try:
        assert await runtime.ensure_bridge_network(stale)
        assert await runtime.ensure_bridge_network(mine)
        names = {n.name for n in docker_client.networks.list(filters={"label": "pykube.node.name"})}
        assert mine.name in names and stale.name not in names
    finally:
        for network in (mine, stale):
            await runtime.remove_network(network.name)
