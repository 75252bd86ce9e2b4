"""The cluster end to end: a real pymaster, two real pykubelets sharing this host's Docker Engine
(nodes with different names), pyctl and the Python client, exactly as a user runs them: every
connection is mutual TLS (admin config for the client and pyctl, join token for the agents)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pymaster.api import errors, objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    http_get,
    node_containers,
    node_ready,
    pyctl,
    running_cluster,
    unique,
    wait_for,
    wait_nodes_ready,
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


async def _delete_and_wait_gone(client: Client, name: str) -> None:
    await client.delete_pod(name)

    async def gone() -> bool:
        try:
            await client.get_pod(name)
        except errors.NotFound:
            return True
        return False

    await wait_for(gone, 60, f"pod {name} deleted")


async def test_nodes_ready_with_capacity_and_docker_version(cluster: Cluster) -> None:
    async with cluster.client() as client:
        for name in cluster.node_names:
            node = await client.get_node(name)
            assert node_ready(node)
            assert int(node.status.capacity["cpu"]) >= 1
            assert node.status.capacity["pods"] == "110"
            assert node.status.capacity["memory"]
            assert node.status.node_info.container_runtime_version.startswith("docker://")
            assert node.status.node_info.kernel_version
            assert node.status.usage.memory_available_bytes > 0


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

        await _delete_and_wait_gone(client, name)
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
        await _delete_and_wait_gone(client, name)


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
        await _delete_and_wait_gone(client, name)


async def test_force_delete_cuts_a_graceful_stop_short(cluster: Cluster) -> None:
    name = unique("stubborn")
    async with cluster.client() as client:
        # The shell ignores SIGTERM, so only the grace period's SIGKILL (or a shorter one) ends it.
        await client.create_pod(_pod(name, "trap '' TERM; while true; do sleep 1; done", grace=300))
        pod = await _wait_phase(client, name, {"Running"})
        await client.delete_pod(name)
        assert (await client.get_pod(name)).metadata.HasField("deletion_timestamp")

        async def stopping() -> bool:  # the agent has started its 300 s graceful stop
            return any(c.status == "running" for c in node_containers(pod.spec.node_name, pod.metadata.uid))

        await wait_for(stopping, 10, "the graceful stop to begin")
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
        agent.start()

        async def node_renewed() -> bool:
            node = await client.get_node(agent.node_name)
            return node_ready(node) and node.status.usage.running_pods >= 1

        await wait_for(node_renewed, 60, "the restarted agent to report")
        containers = node_containers(pod.spec.node_name, pod.metadata.uid)
        assert sorted(c.id for c in containers) == before
        assert all(c.status == "running" for c in containers)
        pod = await client.get_pod(name)
        assert pod.status.phase == "Running"
        assert pod.status.container_statuses[0].restart_count == 0
        await _delete_and_wait_gone(client, name)


async def test_master_kill9_and_restart_loses_no_pod(cluster: Cluster) -> None:
    names = [unique("durable") for _ in range(3)]
    async with cluster.client() as client:
        uids = [(await client.create_pod(_pod(n, "sleep 3600"))).metadata.uid for n in names]
    cluster.master.kill9()
    cluster.master.start()
    await cluster.master.wait_serving()
    async with cluster.client() as client:
        for name, uid in zip(names, uids, strict=True):
            assert (await client.get_pod(name)).metadata.uid == uid
        for name in names:
            await _wait_phase(client, name, {"Running"})
        await wait_nodes_ready(cluster.master, cluster.node_names)
        for name in names:
            await _delete_and_wait_gone(client, name)


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
        assert "0/2 nodes available: 2 insufficient cpu" in cond.message
        pod = await client.get_pod(name)
        assert pod.status.phase == "Pending" and not pod.spec.node_name
        await _delete_and_wait_gone(client, name)


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
