"""Resources end to end (a real pymaster, two pykubelets, the real Docker Engine): a node advertises
its ``--extended-resource`` dongles, the scheduler places pods only where enough are free and
explains why not (``FailedScheduling``, Kubernetes' wording), an admin's update of a node's status
adds dongles that survive the agent's reports and wakes a pending pod, and every pod carries the
QoS class Kubernetes computes for it.

One two-node cluster serves the module: node-a has 2 dongles, node-b none. Every test makes its
own pods, deletes them (freeing their dongles) and waits for the evidence of what it claims.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, delete_pods, pyctl, running_cluster, unique, wait_for

pytestmark = pytest.mark.e2e

DONGLE = "example.com/dongle"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("resources"), prefixes=("node-a", "node-b"),
        agent_extra_by_prefix={"node-a": ["--extended-resource", f"{DONGLE}=2"]},
    ) as c:
        yield c


def _pod(name: str, resources: str = "{}") -> objects_pb2.Pod:
    """A sleeping busybox pod named ``name`` whose container has ``resources`` (flow YAML)."""
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - name: app
              image: {BUSYBOX}
              command: ["sleep", "3600"]
              resources: {resources}
        """)
    return load_pods(manifest)[0]


def _dongles(count: int) -> str:
    return f"{{limits: {{{DONGLE}: '{count}'}}}}"


async def _wait(client: Client, name: str, check, what: str, timeout: float = 60) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if check(pod) else None

    return await wait_for(reached, timeout, f"pod {name}: {what}")


async def _failed_scheduling(client: Client, name: str) -> objects_pb2.Event:
    async def recorded() -> objects_pb2.Event | None:
        events = await client.list("events", field_selector=f"involvedObject.name={name}")
        return next((e for e in events.items if e.reason == "FailedScheduling"), None)

    return await wait_for(recorded, 30, f"FailedScheduling about {name}")


def _set_dongles(node: objects_pb2.Node, count: int | None) -> None:
    """What ``pyctl patch node N --subresource status`` does to the node it sends back: the
    capacity (the allocatable follows it), or both removed for None."""
    for resources in (node.status.capacity, node.status.allocatable):
        if count is None and DONGLE in resources:
            del resources[DONGLE]
    if count is not None:
        node.status.capacity[DONGLE] = str(count)


async def test_the_node_advertises_its_extended_resources(cluster: Cluster) -> None:
    async with cluster.client() as client:
        a, b = await client.get_node(cluster.a.node_name), await client.get_node(cluster.b.node_name)
    assert (a.status.capacity[DONGLE], a.status.allocatable[DONGLE]) == ("2", "2")
    assert DONGLE not in b.status.capacity and DONGLE not in b.status.allocatable


async def test_pods_get_dongles_only_where_enough_are_free(cluster: Cluster) -> None:
    one, two = unique("dongle-1"), unique("dongle-2")
    async with cluster.client() as client:
        await client.create_pod(_pod(one, _dongles(1)))
        running = await _wait(client, one, lambda p: p.status.phase == "Running", "Running")
        assert running.spec.node_name == cluster.a.node_name
        assert running.spec.containers[0].resources.requests[DONGLE] == "1"  # defaulted from the limit

        # One dongle left on node-a and none on node-b: no overcommit, the pod waits.
        await client.create_pod(_pod(two, _dongles(2)))
        event = await _failed_scheduling(client, two)
        assert event.message == f"0/2 nodes are available: 2 Insufficient {DONGLE}."
        pending = await client.get_pod(two)
        assert not pending.spec.node_name and pending.status.phase == "Pending"
        scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")

        # The first pod's dongle comes back when it is gone: the waiting pod gets both.
        await delete_pods(client, one)
        bound = await _wait(client, two, lambda p: p.status.phase == "Running", "Running after the free")
        assert bound.spec.node_name == cluster.a.node_name
        await delete_pods(client, two)


async def test_an_admins_dongles_wake_a_pending_pod_and_survive_the_agents_reports(cluster: Cluster) -> None:
    name = unique("dongle-3")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, _dongles(3)))  # node-a has only 2
        await _failed_scheduling(client, name)

        node_b = await client.get_node(cluster.b.node_name)
        _set_dongles(node_b, 3)
        patched = await client.update_node(node_b)
        patched_at = time.time()
        assert (patched.status.capacity[DONGLE], patched.status.allocatable[DONGLE]) == ("3", "3")
        running = await _wait(client, name, lambda p: p.status.phase == "Running", "Running on node-b")
        assert running.spec.node_name == cluster.b.node_name

        async def reported_since() -> objects_pb2.Node | None:
            node = await client.get_node(cluster.b.node_name)
            return node if node.status.usage.timestamp.seconds > patched_at + 1 else None

        after = await wait_for(reported_since, 30, "a status report of node-b after the patch")
        assert (after.status.capacity[DONGLE], after.status.allocatable[DONGLE]) == ("3", "3")

        # For a name the agent advertises itself, its own value wins at its next report.
        node_a = await client.get_node(cluster.a.node_name)
        _set_dongles(node_a, 5)
        assert (await client.update_node(node_a)).status.capacity[DONGLE] == "5"
        restored = await wait_for(
            lambda: _capacity(client, cluster.a.node_name, "2"), 30, "node-a's own dongle count back"
        )
        assert restored.status.allocatable[DONGLE] == "2"

        await delete_pods(client, name)
        node_b = await client.get_node(cluster.b.node_name)
        _set_dongles(node_b, None)
        assert DONGLE not in (await client.update_node(node_b)).status.capacity


async def _capacity(client: Client, node_name: str, count: str) -> objects_pb2.Node | None:
    node = await client.get_node(node_name)
    return node if node.status.capacity.get(DONGLE) == count else None


async def test_qos_classes(cluster: Cluster) -> None:
    pods = {
        unique("guaranteed"): ("{limits: {cpu: 100m, memory: 32Mi}}", "Guaranteed"),
        unique("burstable"): ("{requests: {cpu: 50m}, limits: {memory: 64Mi}}", "Burstable"),
        unique("besteffort"): ("{}", "BestEffort"),
        unique("dongle-only"): (_dongles(1), "BestEffort"),  # extended resources do not count
    }
    async with cluster.client() as client:
        for name, (resources, _) in pods.items():
            await client.create_pod(_pod(name, resources))
        for name, (_, qos) in pods.items():
            # Running: the agent has reported a status, and the master's class stayed.
            running = await _wait(client, name, lambda p: p.status.phase == "Running", "Running")
            assert running.status.qos_class == qos, name
            shown = pyctl(cluster.master, "get", "pod", name, "-o", "yaml")
            assert shown.returncode == 0, shown.stderr
            assert f"qosClass: {qos}" in shown.stdout
        await delete_pods(client, *pods)


@pytest.mark.parametrize(
    ("resources", "error"),
    [
        (f"{{requests: {{{DONGLE}: '1'}}, limits: {{{DONGLE}: '2'}}}}",
         f'spec.containers[0].resources.requests[{DONGLE}]: invalid value "1": must be equal to {DONGLE} '
         "limit of 2"),
        (f"{{limits: {{{DONGLE}: 500m}}}}",
         f'spec.containers[0].resources.limits[{DONGLE}]: invalid value "500m": must be an integer'),
        ("{limits: {hugepages-2Mi: 2Mi}}",
         "spec.containers[0].resources.limits.hugepages-2Mi: hugepages are not supported"),
    ],
)
async def test_invalid_resources_are_refused_at_apply(cluster: Cluster, resources: str, error: str) -> None:
    name = unique("invalid")
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers: [{{name: app, image: {BUSYBOX}, resources: {resources}}}]
        """)
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert error in result.stderr
