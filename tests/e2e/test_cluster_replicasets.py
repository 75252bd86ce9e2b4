"""ReplicaSets and the garbage collector end to end (a real pymaster with its controller manager,
two pykubelets sharing the real Docker Engine): a ReplicaSet keeps its replicas Running, replaces
a deleted pod, scales down, adopts a matching orphan; deleting it cascades as its
propagationPolicy says (Background: it goes at once and its pods after; Foreground: it waits,
marked, until its pods are gone; Orphan: it goes and its pods keep running, released).

One cluster serves the module; each test makes its own ReplicaSet (a unique name and label) and
waits for evidence (pod phases, owner references, the ReplicaSet's status and metadata).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pymaster.api import errors, objects_pb2
from pymaster.api.manifest import load, load_pods
from pymaster.api.workloads import controller_of
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, delete_pods, running_cluster, unique, wait_for

pytestmark = pytest.mark.e2e

TIMEOUT = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("replicasets"), prefixes=("node-a", "node-b")) as c:
        yield c


def _replica_set(name: str, replicas: int) -> objects_pb2.ReplicaSet:
    manifest = f"""
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: main, image: {BUSYBOX}, command: [sh, -c, "sleep 3600"]}}]
"""
    return load(manifest)[0]


async def _pods(client: Client, app: str) -> list[objects_pb2.Pod]:
    return list((await client.list_pods("default", label_selector=f"app={app}")).items)


def _active(pods: list[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp")]


async def _wait_running(client: Client, app: str, count: int, rs_uid: str) -> list[objects_pb2.Pod]:
    """Waits until exactly ``count`` active pods of ``app`` run, all controlled by ``rs_uid``."""

    async def running() -> list[objects_pb2.Pod] | None:
        pods = _active(await _pods(client, app))
        owned = [p for p in pods if (ref := controller_of(p)) is not None and ref.uid == rs_uid]
        ok = len(pods) == count == len(owned) and all(p.status.phase == "Running" for p in pods)
        return pods if ok else None

    return await wait_for(running, TIMEOUT, f"{count} Running pods of {app}")


async def _wait_no_pods(client: Client, app: str) -> None:
    async def none_left() -> bool:
        return not await _pods(client, app)

    await wait_for(none_left, TIMEOUT, f"no pods of {app}")


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get("replicasets", name)
    except errors.NotFound:
        return True
    return False


async def _started(
    client: Client, replicas: int
) -> tuple[str, objects_pb2.ReplicaSet, list[objects_pb2.Pod]]:
    name = unique("rs")
    rs = await client.create(_replica_set(name, replicas))
    pods = await _wait_running(client, name, replicas, rs.metadata.uid)
    return name, rs, pods


async def test_replica_set_runs_replaces_and_scales_down(cluster: Cluster) -> None:
    async with cluster.client() as client:
        name, rs, pods = await _started(client, 3)

        async def status_ready() -> bool:
            status = (await client.get("replicasets", name)).status
            return (status.replicas, status.ready_replicas, status.available_replicas) == (3, 3, 3)

        await wait_for(status_ready, TIMEOUT, "status 3/3/3")
        victim = pods[0].metadata.name
        await client.delete_pod(victim)
        replaced = await _wait_running(client, name, 3, rs.metadata.uid)
        assert victim not in {p.metadata.name for p in replaced}

        await client.scale("replicasets", name, replicas=1)
        await _wait_running(client, name, 1, rs.metadata.uid)

        async def scaled() -> bool:
            status = (await client.get("replicasets", name)).status
            return status.replicas == 1 and status.observed_generation == 2

        await wait_for(scaled, TIMEOUT, "status replicas 1, observedGeneration 2")
        await client.delete("replicasets", name)
        await _wait_no_pods(client, name)


async def test_matching_orphan_is_adopted(cluster: Cluster) -> None:
    async with cluster.client() as client:
        name = unique("adopt")
        orphan = load_pods(f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}-orphan, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: {BUSYBOX}, command: [sh, -c, "sleep 3600"]}}]
""")[0]
        await client.create_pod(orphan)
        rs = await client.create(_replica_set(name, 2))
        pods = await _wait_running(client, name, 2, rs.metadata.uid)
        assert f"{name}-orphan" in {p.metadata.name for p in pods}  # adopted, one pod created
        await client.delete("replicasets", name)
        await _wait_no_pods(client, name)


async def test_background_deletion_removes_the_set_at_once_then_its_pods(cluster: Cluster) -> None:
    async with cluster.client() as client:
        name, _, _ = await _started(client, 2)
        await client.delete("replicasets", name, propagation_policy="Background")
        assert await _gone(client, name)
        await _wait_no_pods(client, name)


async def test_foreground_deletion_waits_for_the_pods(cluster: Cluster) -> None:
    async with cluster.client() as client:
        name, _, _ = await _started(client, 2)
        marked = await client.delete("replicasets", name, propagation_policy="Foreground")
        assert marked.metadata.HasField("deletion_timestamp")
        assert list(marked.metadata.finalizers) == ["foregroundDeletion"]

        async def set_gone_after_pods() -> bool:
            pods = await _pods(client, name)
            if not await _gone(client, name):
                return False
            # Listed before the ReplicaSet was seen gone: its pods must have been gone already.
            assert not pods, f"ReplicaSet gone while {len(pods)} of its pods remained"
            return True

        await wait_for(set_gone_after_pods, TIMEOUT, "ReplicaSet gone after its pods")


async def test_orphan_deletion_keeps_the_pods_running(cluster: Cluster) -> None:
    async with cluster.client() as client:
        name, _, pods = await _started(client, 2)
        await client.delete("replicasets", name, propagation_policy="Orphan")

        async def released() -> bool:
            return await _gone(client, name)

        await wait_for(released, TIMEOUT, "ReplicaSet gone")
        left = await _pods(client, name)
        assert {p.metadata.name for p in left} == {p.metadata.name for p in pods}
        assert all(p.status.phase == "Running" and not p.metadata.owner_references for p in left)
        await delete_pods(client, *(p.metadata.name for p in left))
