"""DaemonSets and Jobs end to end, in one cluster of a real pymaster (its controller manager) and
real pykubelets sharing this host's Docker Engine:

- a DaemonSet runs one pod on every node, including a node that joins later;
- a nodeSelector DaemonSet follows node labels: a node whose label goes loses its pod;
- a Job with completions 5 and parallelism 2 whose pods fail twice then succeed (restartPolicy
  OnFailure, a counter in an emptyDir) ends Complete with 5 succeeded, never more than 2 active;
- a Job whose pods always fail ends Failed (BackoffLimitExceeded) with backoffLimit 1;
- ttlSecondsAfterFinished removes a finished Job.

Each test makes its own objects and removes them (and their pods) at the end.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import NotFound
from pymaster.api.manifest import load
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Agent,
    Cluster,
    delete_pods,
    node_containers,
    pyctl,
    remove_node_containers,
    running_cluster,
    unique,
    wait_for,
    wait_nodes_ready,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("workloads")) as cluster:
        yield cluster


def daemon_set(name: str, node_selector: dict[str, str] | None = None) -> objects_pb2.DaemonSet:
    text = textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - {{name: c, image: {BUSYBOX}, command: [sleep, "3600"]}}
        """)
    (ds,) = load(text)
    ds.spec.template.spec.node_selector.update(node_selector or {})
    return ds


def job(name: str, script: str, completions: int = 1, parallelism: int = 1, backoff_limit: int = 6,
        ttl: int | None = None) -> objects_pb2.Job:
    text = textwrap.dedent(f"""\
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: {name}}}
        spec:
          completions: {completions}
          parallelism: {parallelism}
          backoffLimit: {backoff_limit}
          template:
            spec:
              restartPolicy: OnFailure
              terminationGracePeriodSeconds: 1
              volumes: [{{name: w, emptyDir: {{}}}}]
              containers:
              - name: c
                image: {BUSYBOX}
                command: [sh, -c, '{script}']
                volumeMounts: [{{name: w, mountPath: /w}}]
        """)
    (obj,) = load(text)
    if ttl is not None:
        obj.spec.ttl_seconds_after_finished = ttl
    return obj


async def owned_pods(client: Client, owner: objects_pb2.DaemonSet | objects_pb2.Job) -> list[objects_pb2.Pod]:
    pods = (await client.list_pods("default")).items
    return [p for p in pods if any(r.uid == owner.metadata.uid for r in p.metadata.owner_references)]


async def remove(client: Client, resource: str, owner) -> None:
    """Deletes the owner, then its pods (not left to the garbage collector: this module tests the
    DaemonSet and Job controllers only)."""
    try:
        await client.delete(resource, owner.metadata.name)
    except NotFound:
        pass
    await delete_pods(client, *[p.metadata.name for p in await owned_pods(client, owner)])


def condition_true(obj, type_: str):
    condition = find_condition(obj.status.conditions, type_)
    return condition if condition is not None and condition.status == "True" else None


async def test_daemon_set_runs_on_every_node_including_one_that_joins(cluster: Cluster) -> None:
    agent = Agent(cluster.workdir, cluster.master, unique("node-c"))
    async with cluster.client() as client:
        ds = await client.create(daemon_set(unique("ds")))
        try:
            async def running_on() -> set[str]:
                pods = await owned_pods(client, ds)
                return {p.spec.node_name for p in pods if p.status.phase == "Running"}

            await wait_for(lambda: _equals(running_on, set(cluster.node_names)), 60,
                           "a running daemon pod on each node")
            agent.start()
            await wait_nodes_ready(cluster.master, [agent.node_name])
            everyone = {*cluster.node_names, agent.node_name}
            await wait_for(lambda: _equals(running_on, everyone), 60, "a daemon pod on the new node too")
            pods = await owned_pods(client, ds)
            assert len(pods) == 3, [p.metadata.name for p in pods]

            async def status_settled() -> bool:
                status = (await client.get("daemonsets", ds.metadata.name)).status
                return (status.desired_number_scheduled, status.current_number_scheduled,
                        status.number_ready, status.updated_number_scheduled) == (3, 3, 3, 3)

            await wait_for(status_settled, 30, "status 3 desired, scheduled, ready, updated")
        finally:
            await remove(client, "daemonsets", ds)
            agent.stop()
            remove_node_containers(agent.node_name)
            await client.delete_node(agent.node_name)
    assert node_containers(agent.node_name) == []


async def _equals(fn, expected) -> bool:
    return await fn() == expected


async def test_daemon_set_follows_node_labels(cluster: Cluster) -> None:
    key = "pykube.test/edge"
    value = unique("yes")
    a, b = cluster.node_names
    for node in (a, b):
        assert pyctl(cluster.master, "label", "node", node, f"{key}={value}").returncode == 0
    async with cluster.client() as client:
        ds = await client.create(daemon_set(unique("edge"), {key: value}))
        try:
            async def nodes_with_pods() -> set[str]:
                return {p.spec.node_name for p in await owned_pods(client, ds)
                        if not p.metadata.HasField("deletion_timestamp")}

            await wait_for(lambda: _equals(nodes_with_pods, {a, b}), 60, "daemon pods on both nodes")
            result = pyctl(cluster.master, "label", "node", b, f"{key}-")
            assert result.returncode == 0, result.stderr
            await wait_for(lambda: _equals(nodes_with_pods, {a}), 60, "the pod of the unlabelled node gone")
            status = (await client.get("daemonsets", ds.metadata.name)).status
            assert status.desired_number_scheduled == 1
        finally:
            await remove(client, "daemonsets", ds)
            for node in (a, b):
                pyctl(cluster.master, "label", "node", node, f"{key}-")


FAIL_TWICE = 'n=$(cat /w/n 2>/dev/null || echo 0); echo $((n+1)) > /w/n; [ "$n" -ge 2 ]'


async def test_job_completes_with_its_parallelism_through_failures(cluster: Cluster) -> None:
    async with cluster.client() as client:
        created = await client.create(job(unique("twice"), FAIL_TWICE, completions=5, parallelism=2))
        most_active = 0
        try:
            async def complete() -> objects_pb2.Job | None:
                nonlocal most_active
                current = await client.get("jobs", created.metadata.name)
                pods = await owned_pods(client, created)
                running = [p for p in pods if p.status.phase in ("Pending", "Running")
                           and not p.metadata.HasField("deletion_timestamp")]
                most_active = max(most_active, len(running), current.status.active)
                return current if condition_true(current, "Complete") else None

            done = await wait_for(complete, 240, "the job Complete")
            assert done.status.succeeded == 5 and done.status.active == 0
            assert done.status.HasField("completion_time")
            assert most_active == 2, most_active
            pods = await owned_pods(client, created)
            assert len(pods) == 5 and all(p.status.phase == "Succeeded" for p in pods)
            assert all(p.status.container_statuses[0].restart_count == 2 for p in pods)
            events = [e for e in (await client.list("events", "default")).items
                      if e.involved_object.uid == created.metadata.uid]
            assert sum(e.reason == "SuccessfulCreate" for e in events) >= 1
            assert any(e.reason == "Completed" for e in events)
        finally:
            await remove(client, "jobs", created)


async def test_job_that_always_fails_reaches_its_backoff_limit(cluster: Cluster) -> None:
    async with cluster.client() as client:
        created = await client.create(job(unique("doomed"), "exit 3", backoff_limit=1))
        try:
            async def failed() -> objects_pb2.WorkloadCondition | None:
                return condition_true(await client.get("jobs", created.metadata.name), "Failed")

            condition = await wait_for(failed, 90, "the job Failed")
            assert (condition.reason, condition.message) == (
                "BackoffLimitExceeded", "Job has reached the specified backoff limit")

            async def no_active_pod() -> bool:
                pods = await owned_pods(client, created)
                return all(p.status.phase in ("Succeeded", "Failed") for p in pods)

            await wait_for(no_active_pod, 60, "the job's pods stopped")
        finally:
            await remove(client, "jobs", created)


async def test_ttl_after_finished_removes_the_job(cluster: Cluster) -> None:
    ttl = 3
    async with cluster.client() as client:
        created = await client.create(job(unique("brief"), "true", ttl=ttl))
        completed_at: float | None = None
        try:
            async def gone() -> bool:
                nonlocal completed_at
                try:
                    current = await client.get("jobs", created.metadata.name)
                except NotFound:
                    return True
                if completed_at is None and condition_true(current, "Complete"):
                    completed_at = time.monotonic()
                return False

            await wait_for(gone, 90, "the job deleted after its ttl")
            assert completed_at is not None, "the job was seen Complete before it went"
            assert time.monotonic() - completed_at >= ttl - 1, "deleted before its ttl"
        finally:
            await remove(client, "jobs", created)
