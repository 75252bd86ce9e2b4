"""The cluster end to end: a real pymaster, two real pykubelets sharing this host's Docker Engine
(nodes with different names), pyctl and the Python client, exactly as a user runs them: every
connection is mutual TLS (admin config for the client and pyctl, join token for the agents)."""

from __future__ import annotations

import asyncio
import platform
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pymaster.api import errors, objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.api.quantity import memory_bytes
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    container_events,
    delete_pods,
    http_get,
    node_containers,
    node_ready,
    pyctl,
    relist_count,
    running_cluster,
    runtime_operations,
    unique,
    wait_for,
    wait_pod_gone,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def _pod(
    name: str, script: str, restart_policy: str = "Always", cpu: str = "50m", grace: int = 2
) -> objects_pb2.Pod:
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          labels: {{app: e2e}}
        spec:
          restartPolicy: {restart_policy}
          terminationGracePeriodSeconds: {grace}
          containers:
            - name: main
              image: {BUSYBOX}
              command: ["sh", "-c", {script!r}]
              env: [{{name: GREETING, value: hi}}]
              resources:
                requests: {{cpu: {cpu}, memory: 8Mi}}
                limits: {{memory: 64Mi}}
        """)
    return load_pods(manifest)[0]


async def _wait_phase(client: Client, name: str, phases: set[str], timeout: float = 60) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if pod.status.phase in phases else None

    return await wait_for(reached, timeout, f"pod {name} in {phases}")


async def test_nodes_ready_with_capacity_and_docker_version(
    cluster: Cluster, docker_client: docker.DockerClient
) -> None:
    # Both agents run on this host: what they report must be what the host and its engine say.
    engine_version = docker_client.version()["Version"]
    os_image = platform.freedesktop_os_release()["PRETTY_NAME"]
    async with cluster.client() as client:
        for name in cluster.node_names:
            node = await client.get_node(name)
            assert node_ready(node)
            status, info = node.status, node.status.node_info
            assert int(status.capacity["cpu"]) == psutil.cpu_count()
            # Whole KiB, as the kubelet reports it.
            assert memory_bytes(status.capacity["memory"]) == psutil.virtual_memory().total // 1024 * 1024
            assert status.capacity["pods"] == "110"
            assert dict(status.allocatable) == dict(status.capacity)
            assert info.container_runtime_version == f"docker://{engine_version}"
            assert info.os_image == os_image
            assert info.kernel_version == platform.release()
            assert 0 < status.usage.memory_available_bytes <= psutil.virtual_memory().total


async def test_pod_runs_with_labels_ip_and_phase(cluster: Cluster) -> None:
    name = unique("run")
    async with cluster.client() as client:
        created = await client.create_pod(_pod(name, "echo started; sleep 3600"))
        pod = await _wait_phase(client, name, {"Running"})
        assert pod.metadata.uid == created.metadata.uid
        assert pod.spec.node_name in cluster.node_names
        assert pod.status.pod_ip
        assert pod.status.container_statuses[0].state.running.started_at.seconds > 0
        scheduled = [c for c in pod.status.conditions if c.type == "PodScheduled"]
        assert scheduled and scheduled[0].status == "True"

        containers = node_containers(pod.spec.node_name, pod.metadata.uid)
        by_name = {c.labels["pykube.container.name"]: c for c in containers}
        assert set(by_name) == {"POD", "main"}
        labels = by_name["main"].labels
        assert labels["pykube.pod.name"] == name
        assert labels["pykube.pod.namespace"] == "default"
        assert labels["pykube.node.name"] == pod.spec.node_name
        assert by_name["main"].name.startswith(f"pk_main_{name}_default_")
        assert "GREETING=hi" in by_name["main"].attrs["Config"]["Env"]
        assert by_name["main"].attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024

        await delete_pods(client, name)
        assert node_containers(pod.spec.node_name, pod.metadata.uid) == []


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (3, "Failed")])
async def test_restart_never_pod_ends_with_exit_code(cluster: Cluster, code: int, phase: str) -> None:
    name = unique(f"exit{code}")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, f"echo bye; exit {code}", restart_policy="Never"))
        pod = await _wait_phase(client, name, {phase})
        status = pod.status.container_statuses[0]
        assert status.state.terminated.exit_code == code
        assert status.restart_count == 0
        await delete_pods(client, name)


async def test_restart_always_restarts_with_crash_loop_backoff(cluster: Cluster) -> None:
    name = unique("crash")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, "sleep 1; exit 1"))

        async def backing_off() -> bool:
            pod = await client.get_pod(name)
            statuses = pod.status.container_statuses
            return bool(statuses) and statuses[0].state.waiting.reason == "CrashLoopBackOff"

        # The first restart is immediate; the next waits out a 10 s back-off, shown in the status.
        await wait_for(backing_off, 60, "CrashLoopBackOff")
        pod = await client.get_pod(name)
        status = pod.status.container_statuses[0]
        assert status.restart_count >= 1 and status.last_state.terminated.exit_code == 1
        assert "back-off 10s restarting failed container=main" in status.state.waiting.message

        async def restarted_again() -> bool:
            pod = await client.get_pod(name)
            return pod.status.container_statuses[0].restart_count >= 2

        await wait_for(restarted_again, 60, "the restart after the back-off")
        await delete_pods(client, name)


# The shell logs SIGTERM and carries on, so only SIGKILL (the grace deadline's, or a force
# delete's) ends it. The trap runs once the current `sleep 1` returns.
STUBBORN = "trap 'echo got-TERM' TERM; echo ready; while true; do sleep 1; done"


def _container(pod: objects_pb2.Pod, name: str = "main"):
    (container,) = [
        c for c in node_containers(pod.spec.node_name, pod.metadata.uid)
        if c.labels["pykube.container.name"] == name
    ]
    return container


def _logged(container, text: bytes) -> bool:
    """Whether the container's output holds ``text`` (False once the container is gone)."""
    try:
        container.reload()
        return text in container.logs()
    except docker.errors.NotFound:
        return False


async def test_force_delete_cuts_a_graceful_stop_short(cluster: Cluster) -> None:
    name = unique("stubborn")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, STUBBORN, grace=300))
        pod = await _wait_phase(client, name, {"Running"})
        main = _container(pod)
        await wait_for(lambda: _logged(main, b"ready"), 20, "the trap to be set")
        await client.delete_pod(name)
        assert (await client.get_pod(name)).metadata.HasField("deletion_timestamp")

        # The agent has begun its 300 s graceful stop: the container got SIGTERM, and runs on.
        await wait_for(lambda: _logged(main, b"got-TERM"), 20, "the SIGTERM of the graceful stop")
        main.reload()
        assert main.status == "running"
        await client.delete_pod(name, grace_period_seconds=0, force=True)
        with pytest.raises(errors.NotFound):
            await client.get_pod(name)

        async def gone() -> bool:
            return node_containers(pod.spec.node_name, pod.metadata.uid) == []

        await wait_for(gone, 30, "the force delete to cut the 300 s stop short")


async def test_agent_kill9_and_restart_restarts_nothing(cluster: Cluster) -> None:
    name = unique("adopt")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, "sleep 3600"))
        pod = await _wait_phase(client, name, {"Running"})
        before = sorted(c.id for c in node_containers(pod.spec.node_name, pod.metadata.uid))

        agent = cluster.agent(pod.spec.node_name)
        agent.kill9()
        log_offset = len(agent.log())
        agent.start()

        def new_log() -> str:
            return agent.log()[log_offset:]

        # The NEW agent got its pods from the master and started this pod's worker...
        def worker_started() -> bool:
            log = new_log()
            return (f"pod snapshot node={agent.node_name}" in log
                    and f"pod worker started pod=default/{name}" in log)

        await wait_for(worker_started, 60, "the restarted agent to take the pod")
        # ...whose first sync runs at once; two relists later the agent has seen its outcome.
        relists = relist_count(agent.metrics_port)
        await wait_for(lambda: relist_count(agent.metrics_port) >= relists + 2, 30, "two relists")
        assert runtime_operations(agent.metrics_port, "create_container") == 0, new_log()[-3000:]
        assert f"pod sync pod=default/{name} " not in new_log()  # logged only when it acts
        containers = node_containers(pod.spec.node_name, pod.metadata.uid)
        assert sorted(c.id for c in containers) == before
        assert all(c.status == "running" for c in containers)
        pod = await client.get_pod(name)
        assert pod.status.phase == "Running"
        assert pod.status.container_statuses[0].restart_count == 0
        await delete_pods(client, name)


def _seconds(stamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


async def test_master_kill9_and_restart_loses_no_pod(cluster: Cluster) -> None:
    names = [unique("durable") for _ in range(3)]
    async with cluster.client() as client:
        uids = [(await client.create_pod(_pod(n, "sleep 3600"))).metadata.uid for n in names]
    cluster.master.kill9()
    killed_at = time.time()
    cluster.master.start()
    await cluster.master.wait_serving()
    async with cluster.client() as client:
        for name, uid in zip(names, uids, strict=True):
            assert (await client.get_pod(name)).metadata.uid == uid
        for name in names:
            await _wait_phase(client, name, {"Running"})

        # A restarted master gives every node a fresh grace period, so Ready alone proves nothing:
        # each agent must have reached the new master. Its status reports do (the master stamps
        # the Ready condition's heartbeat when it hears from the agent)...
        async def every_agent_heard() -> bool:
            for node_name in cluster.node_names:
                node = await client.get_node(node_name)
                ready = [c for c in node.status.conditions if c.type == "Ready"]
                if not (node_ready(node) and _seconds(ready[0].last_heartbeat_time) > killed_at):
                    return False
            return True

        await wait_for(every_agent_heard, 30, "a heartbeat from every agent after the restart")
        # ...and so does its pod stream: a pod bound to each node after the restart runs there.
        pinned = []
        for agent in cluster.agents:
            pod = _pod(unique("after-restart"), "sleep 3600")
            pod.spec.node_name = agent.node_name
            pinned.append((await client.create_pod(pod)).metadata.name)
        for name in pinned:
            await _wait_phase(client, name, {"Running"})
        await asyncio.gather(*(delete_pods(client, name) for name in [*names, *pinned]))


async def test_unschedulable_pod_stays_pending_with_reason(cluster: Cluster) -> None:
    name = unique("huge")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, "sleep 1", cpu="512"))

        async def explained() -> objects_pb2.PodCondition | None:
            pod = await client.get_pod(name)
            cond = [c for c in pod.status.conditions if c.type == "PodScheduled"]
            return cond[0] if cond and cond[0].status == "False" else None

        cond = await wait_for(explained, 30, "a PodScheduled=False condition")
        assert cond.reason == "Unschedulable"
        assert "0/2 nodes are available: 2 Insufficient cpu." in cond.message
        pod = await client.get_pod(name)
        assert pod.status.phase == "Pending" and not pod.spec.node_name
        await delete_pods(client, name)


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: a, image: x}]}\n",
         "metadata.name"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: a}]}\n",
         "spec.containers[0].image"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n"
         "spec: {containers: [{name: a, image: x, imagee: y}]}\n",
         "spec.containers[0].imagee"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n"
         "spec: {containers: [{name: a, image: x, resources: {limits: {cpu: lots}}}]}\n",
         "spec.containers[0].resources.limits.cpu"),
    ],
)
def test_invalid_manifest_rejected_with_field_path(cluster: Cluster, manifest: str, field: str) -> None:
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert field in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_document_applies_nothing(cluster: Cluster) -> None:
    good = unique("good")
    manifest = (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {good}}}\n"
        "spec: {containers: [{name: a, image: x}]}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [{name: a, image: ''}]}\n"
    )
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert pyctl(cluster.master, "get", "pod", good).returncode != 0


def test_pyctl_apply_get_logs_delete(cluster: Cluster, tmp_path: Path) -> None:
    name = unique("logs")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: talker
              image: {BUSYBOX}
              command: ["sh", "-c", "echo line-one; echo line-two; sleep 3600"]
        """))
    master = cluster.master
    applied = pyctl(master, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert f"pod/{name} created" in applied.stdout

    async def running() -> bool:
        async with cluster.client() as client:
            return (await client.get_pod(name)).status.phase == "Running"

    asyncio.run(wait_for(running, 60, "Running"))
    table = pyctl(master, "get", "pods", "-o", "wide")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    row = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert "Running" in row and "1/1" in row

    async def logged() -> str | None:
        result = pyctl(master, "logs", name)
        return result.stdout if "line-two" in result.stdout else None

    out = asyncio.run(wait_for(logged, 30, "the container's output in pyctl logs"))
    assert out.splitlines()[:2] == ["line-one", "line-two"]

    deleted = pyctl(master, "delete", "pod", name)
    assert deleted.returncode == 0, deleted.stderr
    assert pyctl(master, "get", "pod", name).returncode != 0


def test_both_metrics_endpoints_answer_prometheus_text(cluster: Cluster) -> None:
    endpoints = [cluster.master.metrics_port, *(a.metrics_port for a in cluster.agents)]
    for port in endpoints:
        status, content_type, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        names = {family.name for family in text_string_to_metric_families(body)}
        assert names, f"no metrics on port {port}"
    _, _, master_body = http_get(f"http://127.0.0.1:{cluster.master.metrics_port}/metrics")
    assert "grpc_server_handled_total" in master_body
    assert "kube_node_status_condition" in master_body
    _, _, agent_body = http_get(f"http://127.0.0.1:{cluster.agents[0].metrics_port}/metrics")
    assert "kubelet_running_pods" in agent_body
    assert "kubelet_runtime_operations_total" in agent_body
    assert http_get(f"http://127.0.0.1:{cluster.master.metrics_port}/healthz")[0] == 200


async def test_restart_policy_on_failure_restarts_exit_1_not_exit_0(cluster: Cluster) -> None:
    ok, failing = unique("onfailure-ok"), unique("onfailure-bad")
    async with cluster.client() as client:
        await client.create_pod(_pod(ok, "echo done; exit 0", restart_policy="OnFailure"))
        await client.create_pod(_pod(failing, "echo failing; exit 1", restart_policy="OnFailure"))

        # Exit 1 restarts: once at once, again after the 10 s back-off; the pod never ends.
        phases: set[str] = set()

        async def restarted_twice() -> bool:
            pod = await client.get_pod(failing)
            phases.add(pod.status.phase)
            statuses = pod.status.container_statuses
            return bool(statuses) and statuses[0].restart_count >= 2

        await wait_for(restarted_twice, 60, f"pod {failing} to restart twice")
        assert not phases & {"Succeeded", "Failed"}, phases
        pod = await client.get_pod(failing)
        status = pod.status.container_statuses[0]
        assert status.last_state.terminated.exit_code == 1
        # Docker holds the restarted container: a new one, labelled with its restart count.
        mains = [c for c in node_containers(pod.spec.node_name, pod.metadata.uid)
                 if c.labels["pykube.container.name"] == "main"]
        assert max(int(c.labels["pykube.restart.count"]) for c in mains) >= 2

        # Exit 0 is done: Succeeded, and still not restarted some 10 s later (the failing pod's
        # back-off), its one container exited 0.
        pod = await client.get_pod(ok)
        assert pod.status.phase == "Succeeded", pod.status
        status = pod.status.container_statuses[0]
        assert status.restart_count == 0 and status.state.terminated.exit_code == 0
        (main,) = [c for c in node_containers(pod.spec.node_name, pod.metadata.uid)
                   if c.labels["pykube.container.name"] == "main"]
        assert main.attrs["State"]["ExitCode"] == 0 and main.status == "exited"
        assert main.labels["pykube.restart.count"] == "0"
        await asyncio.gather(delete_pods(client, ok), delete_pods(client, failing))


async def test_graceful_delete_sends_sigterm_then_sigkill_at_the_deadline(cluster: Cluster) -> None:
    grace = 3
    name = unique("graceful")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, STUBBORN, grace=grace))
        pod = await _wait_phase(client, name, {"Running"})
        main = _container(pod)
        await wait_for(lambda: _logged(main, b"ready"), 20, "the trap to be set")
        deleted_at, start = time.time(), time.monotonic()
        await client.delete_pod(name)

        # SIGTERM first: the container logs it, well before the deadline.
        await wait_for(lambda: _logged(main, b"got-TERM"), grace, "SIGTERM", interval=0.05)
        assert time.monotonic() - start < grace

        await wait_pod_gone(client, name, grace + 10, interval=0.05)
        elapsed = time.monotonic() - start
        assert grace <= elapsed <= grace + 2, f"gone {elapsed:.2f}s after the delete (grace {grace}s)"
        assert node_containers(pod.spec.node_name, pod.metadata.uid) == []

    # It ignored SIGTERM, so SIGKILL (exit code 137) ended it, at the deadline and not before.
    deaths = container_events(deleted_at, {"container": main.id, "event": "die"})
    assert len(deaths) == 1, deaths
    assert deaths[0]["Actor"]["Attributes"]["exitCode"] == "137"
    killed_after = deaths[0]["timeNano"] / 1e9 - deleted_at
    assert grace <= killed_after <= grace + 2, f"killed {killed_after:.2f}s after the delete"
