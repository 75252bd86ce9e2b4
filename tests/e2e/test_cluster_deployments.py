"""Deployments end to end: a real pymaster (with its controller manager) and three real
pykubelets sharing this host's Docker Engine, pods with a readiness probe so Ready means ready.

- 6 replicas are spread 2 per node (the scheduler spreads the pods of one owner);
- a rolling update from one image tag to another (`pyctl set image`): the Ready pods of the
  Deployment, sampled every 200 ms, stay within [replicas - maxUnavailable, replicas + maxSurge]
  (a pod marked for deletion is not counted: it no longer serves), then `pyctl rollout undo`
  returns to the first template, scaling the old ReplicaSet back up instead of making a third;
- an agent killed with SIGKILL: its replicas run again on the other nodes.

The module's tests run in file order; the last one kills an agent.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.kinds import DEPLOYMENTS
from pymaster.api.manifest import load
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, pyctl, running_cluster, unique, wait_for

pytestmark = pytest.mark.e2e

GRACE = 3
TOLERATION = 2
REPLICAS = 6
MAX_SURGE, MAX_UNAVAILABLE = 2, 1  # the defaults 25% / 25% of 6, rounded up / down
BUSYBOX_V2 = f"{BUSYBOX}-v2"  # a second tag of the local image (no registry here)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("deployments"), prefixes=("node-a", "node-b", "node-c"),
        master_extra=["--node-monitor-grace-period", str(GRACE),
                      "--default-unreachable-toleration-seconds", str(TOLERATION),
                      "--default-not-ready-toleration-seconds", str(TOLERATION)],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def second_tag(docker_client) -> Iterator[str]:
    docker_client.images.get(BUSYBOX).tag(BUSYBOX_V2)
    yield BUSYBOX_V2
    docker_client.images.remove(BUSYBOX_V2, noprune=True)


def deployment(name: str, version: str = "v1") -> objects_pb2.Deployment:
    """A Deployment of REPLICAS busybox pods, Ready one probe (1 s) after they start; ``version``
    is an env var of the template, so a new version is a new template."""
    manifest = textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {REPLICAS}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: {BUSYBOX}
                command: [sleep, "3600"]
                env: [{{name: VERSION, value: {version}}}]
                readinessProbe:
                  exec: {{command: ["true"]}}
                  initialDelaySeconds: 1
                  periodSeconds: 1
        """)
    (obj,) = load(manifest, [DEPLOYMENTS])
    return obj


def ready(pod: objects_pb2.Pod) -> bool:
    condition = find_condition(pod.status.conditions, "Ready")
    return condition is not None and condition.status == "True" and not pod.metadata.HasField(
        "deletion_timestamp")


async def ready_pods(client: Client, name: str) -> list[objects_pb2.Pod]:
    listed = await client.list("pods", "default", label_selector=f"app={name}")
    return [pod for pod in listed.items if ready(pod)]


def version(pod: objects_pb2.Pod) -> str:
    return next(e.value for e in pod.spec.containers[0].env if e.name == "VERSION")


async def rolled_out(client: Client, name: str, want: str, image: str = BUSYBOX) -> list[objects_pb2.Pod]:
    """REPLICAS Ready pods all of version ``want`` and ``image``, and the Deployment saying it has
    completed."""
    pods = await ready_pods(client, name)
    listed = await client.list("pods", "default", label_selector=f"app={name}")
    if len(pods) != REPLICAS or len(listed.items) != REPLICAS or {version(p) for p in pods} != {want}:
        return []
    if {p.spec.containers[0].image for p in pods} != {image}:
        return []
    d = await client.get("deployments", name)
    progressing = find_condition(d.status.conditions, "Progressing")
    done = progressing is not None and progressing.reason == "NewReplicaSetAvailable"
    return pods if done and d.status.available_replicas == REPLICAS else []


async def test_replicas_spread_over_the_nodes(cluster: Cluster) -> None:
    name = unique("spread")
    async with cluster.client() as client:
        await client.create(deployment(name))
        pods = await wait_for(lambda: rolled_out(client, name, "v1"), 90, "6 Ready pods")
        assert Counter(p.spec.node_name for p in pods) == {node: 2 for node in cluster.node_names}
        await client.delete("deployments", name)


async def test_rolling_update_keeps_ready_pods_within_bounds_and_undo_reuses_the_old_set(
    cluster: Cluster, second_tag: str
) -> None:
    name = unique("roll")
    async with cluster.client() as client:
        await client.create(deployment(name))
        await wait_for(lambda: rolled_out(client, name, "v1"), 90, "the first rollout")
        first_sets = (await client.list("replicasets", "default", label_selector=f"app={name}")).items
        assert len(first_sets) == 1

        samples: list[int] = []
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                samples.append(len(await ready_pods(client, name)))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        try:
            # In a thread: the sampler keeps sampling while pyctl runs.
            done = await asyncio.to_thread(pyctl, cluster.master, "set", "image", f"deploy/{name}",
                                           f"main={second_tag}")
            assert done.stdout.strip() == f"deployment.apps/{name} image updated", done.stderr
            await wait_for(lambda: rolled_out(client, name, "v1", second_tag), 120, "the new tag's rollout")
        finally:
            stop.set()
            await sampler
        assert min(samples) >= REPLICAS - MAX_UNAVAILABLE, samples
        assert max(samples) <= REPLICAS + MAX_SURGE, samples
        assert len(samples) > 5

        # Undo: the first template again; its ReplicaSet is scaled back up with the next revision.
        undone = pyctl(cluster.master, "rollout", "undo", f"deploy/{name}")
        assert undone.stdout.strip() == f"deployment.apps/{name} rolled back", undone.stderr
        await wait_for(lambda: rolled_out(client, name, "v1"), 120, "the undo to the first tag")
        sets = {rs.metadata.name: rs for rs in
                (await client.list("replicasets", "default", label_selector=f"app={name}")).items}
        assert len(sets) == 2
        old = sets[first_sets[0].metadata.name]
        assert old.spec.replicas == REPLICAS
        assert old.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
        await client.delete("deployments", name)


async def test_replicas_of_a_killed_agent_run_again_elsewhere(cluster: Cluster) -> None:
    name = unique("survive")
    victim = cluster.agents[2]
    async with cluster.client() as client:
        await client.create(deployment(name))
        pods = await wait_for(lambda: rolled_out(client, name, "v1"), 90, "6 Ready pods")
        assert any(p.spec.node_name == victim.node_name for p in pods)
        victim.kill9()

        async def elsewhere() -> list[objects_pb2.Pod]:
            pods = await ready_pods(client, name)
            on_live = [p for p in pods if p.spec.node_name != victim.node_name]
            return on_live if len(on_live) == REPLICAS else []

        # Node grace + toleration + rescheduling and a readiness probe: well within 60 s.
        await wait_for(elsewhere, 60, "6 Ready pods on the live nodes")
        await client.delete("deployments", name)
