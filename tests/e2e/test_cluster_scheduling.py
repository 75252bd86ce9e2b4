"""Scheduling end to end, in one cluster of a real pymaster and three real pykubelets sharing this
host's Docker Engine:

- equal pods spread evenly over the nodes;
- of two pods waiting for room on one node, the higher priority one gets it when room frees;
- a pod with a scheduling gate waits with PodScheduled=False/SchedulingGated, and is scheduled
  once an update removes the gate;
- a pod whose nodeSelector no node matches stays Pending with the grouped FailedScheduling
  message until a node with that label joins (a fourth agent started by the test), and then
  lands there.

Each test makes its own pods and removes them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from pymaster.api import errors, objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.quantity import cpu_millis
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Agent,
    Cluster,
    node_containers,
    remove_node_containers,
    running_cluster,
    unique,
    wait_for,
    wait_nodes_ready,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("scheduling"),
                         prefixes=("node-a", "node-b", "node-c")) as c:
        yield c


def make_pod(name: str, cpu: str = "50m", selector: dict[str, str] | None = None,
             priority_class: str = "", gates: tuple[str, ...] = ()) -> objects_pb2.Pod:
    container = objects_pb2.Container(name="main", image=BUSYBOX, command=["sh", "-c", "sleep 3600"])
    container.resources.requests.update({"cpu": cpu, "memory": "16Mi"})
    spec = objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=0,
                               node_selector=selector or {}, priority_class_name=priority_class)
    spec.scheduling_gates.extend(objects_pb2.PodSchedulingGate(name=g) for g in gates)
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name), spec=spec)


def scheduled(pod: objects_pb2.Pod) -> tuple[str, str, str] | None:
    condition = find_condition(pod.status.conditions, "PodScheduled")
    return None if condition is None else (condition.status, condition.reason, condition.message)


async def remove_pods(client: Client, names: list[str]) -> None:
    for name in names:
        try:
            await client.delete_pod(name, grace_period_seconds=0, force=True)
        except errors.NotFound:
            pass

    async def gone() -> bool:
        left = {p.metadata.name for p in (await client.list_pods()).items}
        return not left & set(names)

    await wait_for(gone, 30, f"pods {names} gone")


async def bound(client: Client, names: list[str]) -> dict[str, str]:
    async def all_bound() -> dict[str, str] | None:
        placed = {n: (await client.get_pod(n)).spec.node_name for n in names}
        return placed if all(placed.values()) else None

    return await wait_for(all_bound, 30, f"{names} bound")


async def unschedulable(client: Client, name: str) -> str:
    """Waits for PodScheduled=False/Unschedulable; returns its message."""

    async def parked() -> str | None:
        state = scheduled(await client.get_pod(name))
        return state[2] if state and state[:2] == ("False", "Unschedulable") else None

    return await wait_for(parked, 15, f"{name} unschedulable")


async def test_equal_pods_spread_evenly(cluster: Cluster) -> None:
    names = [unique("spread") for _ in range(6)]
    async with cluster.client() as client:
        try:
            for name in names:
                await client.create_pod(make_pod(name))
            counts = Counter((await bound(client, names)).values())
            assert sorted(counts.get(n, 0) for n in cluster.node_names) == [2, 2, 2], counts
        finally:
            await remove_pods(client, names)


async def test_higher_priority_pod_gets_the_room_first(cluster: Cluster) -> None:
    label = {"pykube.test/room": unique("room")}
    node_name = cluster.b.node_name
    async with cluster.client() as client:
        node = await client.get_node(node_name)
        node.metadata.labels.update(label)
        await client.update_node(node)
        allocatable = cpu_millis(node.status.allocatable["cpu"])
        hog, low, high = unique("hog"), unique("low"), unique("high")
        try:
            await client.create_pod(make_pod(hog, f"{allocatable - 100}m", label))
            await bound(client, [hog])
            # Each would take 60% of the node: only one fits once the hog goes.
            share = f"{allocatable * 6 // 10}m"
            await client.create_pod(make_pod(low, share, label))
            await unschedulable(client, low)
            await client.create_pod(make_pod(high, share, label, priority_class="system-cluster-critical"))
            message = await unschedulable(client, high)
            assert message.startswith("0/3 nodes are available:") and "Insufficient cpu" in message
            # Both back-offs (1 s after each failed attempt) must be over, so that the freed room
            # sends both pods to the active queue at once and the priority alone decides.
            failed_at = time.monotonic()
            await wait_for(lambda: time.monotonic() - failed_at > 1.2, 5, "back-off over")
            await client.delete_pod(hog, grace_period_seconds=0, force=True)
            assert (await bound(client, [high]))[high] == node_name
            await unschedulable(client, low)
            assert not (await client.get_pod(low)).spec.node_name
        finally:
            await remove_pods(client, [hog, low, high])
            node = await client.get_node(node_name)
            del node.metadata.labels["pykube.test/room"]
            await client.update_node(node)


async def test_gated_pod_waits_until_the_gate_is_removed(cluster: Cluster) -> None:
    name = unique("gated")
    async with cluster.client() as client:
        try:
            await client.create_pod(make_pod(name, gates=("example.com/approval",)))

            async def gated() -> bool:
                return scheduled(await client.get_pod(name)) == (
                    "False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")

            await wait_for(gated, 15, "SchedulingGated")
            pod = await client.get_pod(name)
            assert not pod.spec.node_name
            del pod.spec.scheduling_gates[:]
            await client.update(pod)
            await bound(client, [name])
        finally:
            await remove_pods(client, [name])


async def test_pending_until_a_node_with_the_label_joins(cluster: Cluster) -> None:
    disk = unique("ssd")
    name = unique("picky")
    async with cluster.client() as client:
        await client.create_pod(make_pod(name, selector={"pykube.test/disk": disk}))
        agent = Agent(cluster.workdir, cluster.master, unique("node-d"),
                      ["--node-labels", f"pykube.test/disk={disk}"])
        try:
            message = await unschedulable(client, name)
            # NodeSelector's reason, or NodeAffinity's once that plugin takes nodeSelector over
            # in the default profile, as in kube-scheduler.
            assert re.fullmatch(r"0/3 nodes are available: 3 node\(s\) didn't match Pod's node "
                                r"(selector|affinity/selector)\.", message), message
            events = (await client.list("events", "default")).items
            assert any(e.involved_object.name == name and e.reason == "FailedScheduling"
                       and e.message == message for e in events)
            agent.start()
            await wait_nodes_ready(cluster.master, [agent.node_name])
            assert (await bound(client, [name]))[name] == agent.node_name
        finally:
            await remove_pods(client, [name])
            agent.stop()
            remove_node_containers(agent.node_name)
            await client.delete_node(agent.node_name)
    assert node_containers(agent.node_name) == []
