"""The agent end to end: a real ``pymaster`` and a real ``pykubelet`` process on this host's Docker
Engine, driven through the Python client: registration, pods through their lifecycle, logs,
deletion, adoption after ``kill -9``, metrics, start-up failures and a clean SIGTERM. The agent
joins with the master's token and talks mutual TLS; the client uses the master's admin config."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import psutil
import pytest

from pymaster.api import objects_pb2
from pymaster.api.quantity import memory_bytes
from pymaster.client import Client

from .harness import (
    BIN,
    BUSYBOX,
    Agent,
    Master,
    Process,
    http_get,
    metric_samples,
    node_containers,
    relist_count,
    remove_node_containers,
    runtime_operations,
    unique,
    wait_for,
    wait_pod_gone,
)

pytestmark = pytest.mark.e2e

_MODULES = {"pymaster": "pymaster.main", "pykubelet": "pykubelet.main"}
INFRA_IMAGE = "pykube/pause:3.9"


def command(name: str) -> list[str]:
    """The console script when installed, else ``python -m`` of its module."""
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", _MODULES[name]]


def start(process: Process) -> Process:
    """Starts a harness process with ``command()``'s fallback."""
    with open(process.log_path, "ab") as log:
        process.proc = subprocess.Popen([*command(process.name), *process.argv()], stdout=log,
                                        stderr=subprocess.STDOUT)
    return process


class Setup:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.master = Master(workdir)
        self.node = unique("agent-e2e")
        self.agent = Agent(workdir, self.master, self.node)

    def client(self) -> Client:
        return self.master.client()

    def restart_agent(self) -> None:
        """A new pykubelet process with the same flags (same node, same ports)."""
        self.agent.stop()
        start(self.agent)

    def logs(self) -> str:
        return "\n".join(f"==== {p.name} ====\n{p.log()[-6000:]}" for p in (self.master, self.agent))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    s = Setup(tmp_path_factory.mktemp("agent"))
    try:
        start(s.master)
        asyncio.run(s.master.wait_serving())
        start(s.agent)
        yield s
    finally:
        s.agent.stop()
        s.master.stop()
        remove_node_containers(s.node)
    assert node_containers(s.node) == [], "containers left behind"


def busybox_pod(node: str, script: str, restart_policy: str = "Always") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = unique("bb"), "default"
    pod.spec.node_name = node
    pod.spec.restart_policy = restart_policy
    # sh as PID 1 ignores SIGTERM: keep deletions short.
    pod.spec.termination_grace_period_seconds = 1
    pod.spec.containers.add(name="app", image=BUSYBOX, command=["sh", "-c", script])
    return pod


async def wait_phase(
    client: Client, name: str, phase: str, setup: Setup, timeout: float = 60
) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if pod.status.phase == phase else None

    try:
        return await wait_for(reached, timeout, f"pod {name} {phase}")
    except AssertionError:
        print(setup.logs())
        raise


async def test_node_registers_ready(setup: Setup, docker_client: docker.DockerClient) -> None:
    async with setup.client() as client:
        async def ready() -> objects_pb2.Node | None:
            node = await client.get_node(setup.node)
            ok = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
            return node if ok else None

        node = await wait_for(ready, 60, "node Ready")
    status = node.status
    # The agent runs on this host: its figures are the host's and its engine's own.
    assert int(status.capacity["cpu"]) == psutil.cpu_count()
    assert memory_bytes(status.capacity["memory"]) == psutil.virtual_memory().total // 1024 * 1024
    assert status.capacity["pods"] == "110"
    assert dict(status.allocatable) == dict(status.capacity)
    assert status.node_info.container_runtime_version == f"docker://{docker_client.version()['Version']}"
    assert status.node_info.os_image == platform.freedesktop_os_release()["PRETTY_NAME"]
    assert status.node_info.kernel_version == platform.release()
    assert status.node_info.kubelet_version.startswith("pykube/")
    assert status.node_info.operating_system == "linux"
    assert status.daemon_endpoints.kubelet_endpoint.port == setup.agent.port
    assert {a.type: a.address for a in status.addresses}["InternalIP"] == "127.0.0.1"
    labels = node.metadata.labels
    assert labels["kubernetes.io/hostname"] == setup.node
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] in ("amd64", "arm64")
    assert status.usage.memory_available_bytes > 0


async def test_pod_runs_with_labelled_containers_and_logs(setup: Setup) -> None:
    async with setup.client() as client:
        pod = await client.create_pod(busybox_pod(setup.node, "echo hello; sleep 3600"))
        running = await wait_phase(client, pod.metadata.name, "Running", setup)
        assert running.status.pod_ip and running.status.host_ip == "127.0.0.1"
        containers = node_containers(setup.node, pod.metadata.uid)
        names = sorted(c.labels["pykube.container.name"] for c in containers)
        assert names == ["POD", "app"]
        for container in containers:
            assert container.labels["pykube.pod.name"] == pod.metadata.name
            assert container.labels["pykube.pod.namespace"] == "default"

        async def logged() -> bool:
            data = b"".join([chunk async for chunk in client.pod_logs(pod.metadata.name)])
            return b"hello" in data

        await wait_for(logged, 30, "logs with hello")


@pytest.mark.parametrize(
    ("script", "phase", "exit_code"), [("exit 0", "Succeeded", 0), ("exit 3", "Failed", 3)]
)
async def test_restart_policy_never(setup: Setup, script: str, phase: str, exit_code: int) -> None:
    async with setup.client() as client:
        pod = await client.create_pod(busybox_pod(setup.node, script, restart_policy="Never"))
        done = await wait_phase(client, pod.metadata.name, phase, setup)
        (status,) = done.status.container_statuses
        assert status.state.terminated.exit_code == exit_code
        assert status.restart_count == 0


async def test_delete_removes_containers_then_pod(setup: Setup) -> None:
    async with setup.client() as client:
        pod = await client.create_pod(busybox_pod(setup.node, "sleep 3600"))
        await wait_phase(client, pod.metadata.name, "Running", setup)
        await client.delete_pod(pod.metadata.name)
        await wait_pod_gone(client, pod.metadata.name)
        assert node_containers(setup.node, pod.metadata.uid) == []


async def test_restart_after_kill9_adopts_running_pod(setup: Setup) -> None:
    async with setup.client() as client:
        pod = await client.create_pod(busybox_pod(setup.node, "sleep 3600"))
        await wait_phase(client, pod.metadata.name, "Running", setup)
        before = sorted(c.id for c in node_containers(setup.node, pod.metadata.uid))
        setup.agent.kill9()
        log_offset = len(setup.agent.log())
        start(setup.agent)

        def new_log() -> str:
            return setup.agent.log()[log_offset:]

        # The new agent got the pod from the master and started its worker, whose first sync runs
        # at once; two relists later it has seen the outcome: adopted, not redone.
        await wait_for(lambda: f"pod worker started pod=default/{pod.metadata.name}" in new_log(), 60,
                       "the restarted agent to take the pod")
        port = setup.agent.metrics_port
        relists = relist_count(port)
        await wait_for(lambda: relist_count(port) >= relists + 2, 30, "two relists")
        assert runtime_operations(port, "create_container") == 0, new_log()[-3000:]
        after = sorted(c.id for c in node_containers(setup.node, pod.metadata.uid))
        assert after == before
        assert all(c.status == "running" for c in node_containers(setup.node, pod.metadata.uid))
        assert (await client.get_pod(pod.metadata.name)).status.phase == "Running"


async def test_metrics_and_healthz(setup: Setup) -> None:
    port = setup.agent.metrics_port
    async with setup.client() as client:  # a pod started by this agent process
        pod = await client.create_pod(busybox_pod(setup.node, "sleep 3600"))
        await wait_phase(client, pod.metadata.name, "Running", setup)

    async def serving() -> bool:
        return http_get(f"http://127.0.0.1:{port}/healthz")[2] == "ok"

    await wait_for(serving, 30, "healthz ok")
    samples = metric_samples(port)
    assert samples[("kubelet_node_name", (("node", setup.node),))] == 1
    assert ("kubelet_running_pods", ()) in samples
    assert samples[("kubelet_running_containers", (("container_state", "running"),))] >= 1
    assert any(name == "kubelet_runtime_operations_total" for name, _ in samples)
    assert any(name == "kubelet_runtime_operations_duration_seconds_bucket" for name, _ in samples)
    assert samples[("kubelet_pod_start_duration_seconds_count", ())] >= 1
    for name in ("node_load1", "node_load5", "node_load15", "node_memory_MemTotal_bytes",
                 "node_memory_MemAvailable_bytes"):
        assert samples[(name, ())] >= 0
    assert 0 <= samples[("pykube_node_cpu_usage_ratio", ())] <= 1


async def test_reaper_removes_orphans_of_this_node_only(setup: Setup) -> None:
    client = docker.from_env()
    other_node = unique("other-node")
    created = []
    try:
        for node in (setup.node, other_node):
            labels = {"pykube.node.name": node, "pykube.pod.uid": unique("orphan-uid"),
                      "pykube.pod.name": "orphan", "pykube.pod.namespace": "default",
                      "pykube.container.name": "app"}
            created.append(client.containers.run(INFRA_IMAGE, detach=True, labels=labels))
        mine, theirs = created

        async def reaped() -> bool:
            return not client.containers.list(all=True, filters={"id": mine.id})

        await wait_for(reaped, 30, "the orphan container to be reaped")
        theirs.reload()
        assert theirs.status == "running"
    finally:
        for container in created:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--pod-infra-image", "pykube/missing:0"],
            "infra image pykube/missing:0 not found locally; build it with `make images` "
            "or pass --pod-infra-image",
        ),
        (["--docker-host", "unix:///nonexistent/docker.sock"],
         "cannot reach the Docker Engine at unix:///nonexistent/docker.sock: "),
    ],
)
def test_startup_checks_fail_clearly(tmp_path: Path, flags: list[str], message: str) -> None:
    result = subprocess.run(
        [*command("pykubelet"), "--server", "127.0.0.1:1", "--node-name", unique("bad"), "--root-dir",
         str(tmp_path), "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", *flags],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert message in result.stderr


async def test_sigterm_exits_0_and_leaves_containers_running(setup: Setup) -> None:
    async with setup.client() as client:
        pod = await client.create_pod(busybox_pod(setup.node, "sleep 3600"))
        await wait_phase(client, pod.metadata.name, "Running", setup)
    assert setup.agent.proc is not None
    setup.agent.proc.terminate()
    assert setup.agent.proc.wait(30) == 0, setup.agent.log()[-4000:]
    assert "pykubelet stopped" in setup.agent.log()
    containers = node_containers(setup.node, pod.metadata.uid)
    assert len(containers) == 2 and all(c.status == "running" for c in containers)
