"""The in-process master (see master_fixtures.py) serving nodes (Resources "nodes", NodeAgent):
registration, scheduling, cordons, leases and node status, and the agent's view of its pods (bound
pods, status, graceful deletion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from master_fixtures import (
    Resources,
    admin_channel,
    bound_pod,
    condition,
    eventually,
    next_change,
    next_event,
    node_manifest,
    pod_manifest,
    rpc_error,
    start_master,
)

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.conditions import find_condition

BoundPodsEvent = services_pb2.BoundPodsEvent


# ---- nodes and scheduling ----


async def test_registered_node_gets_the_pod(resources, agent):
    response = await agent.RegisterNode(node_manifest())
    ready = find_condition(response.node.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")

    await resources.create(pod_manifest("web", cpu="500m"))
    pod = await eventually(lambda: resources.get("pods", "web"), lambda p: p.spec.node_name == "n1")
    assert condition(pod).status == "True"
    assert pod.status.phase == "Pending"


async def test_oversized_pod_stays_pending_with_reason(resources, agent):
    await agent.RegisterNode(node_manifest(cpu="2"))
    await resources.create(pod_manifest("huge", cpu="3"))
    pod = await eventually(lambda: resources.get("pods", "huge"), lambda p: condition(p) is not None)
    assert not pod.spec.node_name and pod.status.phase == "Pending"
    assert (condition(pod).status, condition(pod).reason, condition(pod).message) == (
        "False",
        "Unschedulable",
        "0/1 nodes are available: 1 Insufficient cpu.",
    )


async def test_cordon_with_update_node(resources, agent):
    node = (await agent.RegisterNode(node_manifest())).node
    node.spec.unschedulable = True
    node.status.allocatable["cpu"] = "64"  # not the user's to change: ignored
    cordoned = await resources.update(node)
    assert cordoned.spec.unschedulable and cordoned.status.allocatable["cpu"] == "2"
    err = await rpc_error(resources.update(node))  # stale resourceVersion
    assert err.code() == grpc.StatusCode.ABORTED

    await resources.create(pod_manifest())
    pod = await eventually(lambda: resources.get("pods", "web"), lambda p: condition(p) is not None)
    assert condition(pod).message == "0/1 nodes are available: 1 node(s) were unschedulable."

    again = await agent.RegisterNode(node_manifest())  # an agent restart keeps the cordon
    assert again.node.spec.unschedulable
    nodes = await resources.list("nodes", field_selector="spec.unschedulable=true")
    assert [n.metadata.name for n in nodes.items] == ["n1"]


async def test_extended_resources_schedule_and_an_admin_update_wakes_pending_pods(resources, agent):
    dongle = "example.com/dongle"
    with_dongles = node_manifest("n1")
    for advertised in (with_dongles.status.capacity, with_dongles.status.allocatable):
        advertised[dongle] = "2"  # as with --extended-resource example.com/dongle=2
    await agent.RegisterNode(with_dongles)
    other = (await agent.RegisterNode(node_manifest("n2"))).node

    async def pod_wanting(name: str, count: str) -> None:
        pod = pod_manifest(name)
        pod.spec.containers[0].resources.limits[dongle] = count
        await resources.create(pod)

    await pod_wanting("one", "1")
    one = await eventually(lambda: resources.get("pods", "one"), lambda p: p.spec.node_name)
    assert one.spec.node_name == "n1"
    assert one.spec.containers[0].resources.requests[dongle] == "1"  # defaulted from the limit
    await pod_wanting("two", "2")  # one dongle left on n1, none on n2
    two = await eventually(lambda: resources.get("pods", "two"), lambda p: condition(p) is not None)
    assert not two.spec.node_name
    assert condition(two).message == f"0/2 nodes are available: 2 Insufficient {dongle}."

    other.status.capacity[dongle] = "2"  # the admin's patch of n2's status; allocatable follows
    patched = await resources.update(other)
    assert (patched.status.capacity[dongle], patched.status.allocatable[dongle]) == ("2", "2")
    two = await eventually(lambda: resources.get("pods", "two"), lambda p: p.spec.node_name)
    assert two.spec.node_name == "n2"


async def test_watch_nodes(resources, agent):
    await agent.RegisterNode(node_manifest("n1"))
    stream = resources.watch("nodes", field_selector="spec.unschedulable=false")
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "n1")
    assert isinstance(event.object, objects_pb2.Node)
    await agent.RegisterNode(node_manifest("n2"))
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "n2")
    await resources.update(_cordoned(await resources.get("nodes", "n1", "")))
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "n1")  # left the selection
    await resources.delete("nodes", "n2", "")
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "n2")
    stream.cancel()


async def test_lease_renewal(agent):
    err = await rpc_error(agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="ghost")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    await agent.RegisterNode(node_manifest())
    reply = await agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=5))
    assert 4.5 <= reply.next_renew_seconds <= 5
    reply = await agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=60))
    assert reply.next_renew_seconds <= 40 / 3


async def test_expired_lease_marks_node_unknown_and_renewal_restores(tmp_path):
    app = await start_master(tmp_path / "data", grace=1.0)
    try:
        async with admin_channel(app) as ch:
            resources, agent = Resources(ch), services_pb2_grpc.NodeAgentStub(ch)
            await agent.RegisterNode(node_manifest())

            def ready_is(status: str) -> Callable[[objects_pb2.Node], bool]:
                return lambda n: find_condition(n.status.conditions, "Ready").status == status

            node = await eventually(lambda: resources.get("nodes", "n1", ""), ready_is("Unknown"))
            ready = find_condition(node.status.conditions, "Ready")
            assert (ready.reason, ready.message) == (
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
            await agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=0.1))
            # The renewal writes Ready=True before it returns.
            assert ready_is("True")(await resources.get("nodes", "n1", ""))
    finally:
        await app.stop()


async def test_restart_gives_nodes_a_fresh_grace_period(tmp_path):
    app = await start_master(tmp_path / "data", grace=1.0)
    try:
        async with admin_channel(app) as ch:
            await services_pb2_grpc.NodeAgentStub(ch).RegisterNode(node_manifest())
            registered = time.monotonic()
    finally:
        await app.stop()
    # Let the lease age past the grace period while no master runs.
    await asyncio.sleep(max(0.0, registered + 1.0 - time.monotonic()))
    app = await start_master(tmp_path / "data", grace=1.0)
    try:
        async with admin_channel(app) as ch:
            resources = Resources(ch)
            node = await resources.get("nodes", "n1", "")
            assert find_condition(node.status.conditions, "Ready").status == "True"  # a grace period from now
            await eventually(
                lambda: resources.get("nodes", "n1", ""),
                lambda n: find_condition(n.status.conditions, "Ready").status == "Unknown",
            )
    finally:
        await app.stop()


async def test_report_node_status(agent):
    await agent.RegisterNode(node_manifest())
    status = objects_pb2.NodeStatus()
    status.allocatable.update({"cpu": "1500m", "memory": "3Gi", "pods": "110"})
    status.usage.cpu_percent = 42.0
    status.conditions.add(type="DiskPressure", status="True")  # ignored: conditions are the master's
    node = await agent.ReportNodeStatus(services_pb2.NodeStatusReport(node_name="n1", status=status))
    assert node.status.allocatable["cpu"] == "1500m" and node.status.capacity["cpu"] == "2"
    assert node.status.usage.cpu_percent == 42.0
    assert find_condition(node.status.conditions, "Ready").status == "True"
    err = await rpc_error(
        agent.ReportNodeStatus(services_pb2.NodeStatusReport(node_name="ghost", status=status))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---- the agent's view of its pods ----


async def test_watch_bound_pods_snapshot_then_changes(resources, agent):
    first = await bound_pod(resources, agent, "a")
    stream = agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="n1"))
    snapshot = await next_event(stream)
    assert snapshot.type == BoundPodsEvent.SNAPSHOT
    assert [p.metadata.uid for p in snapshot.pods] == [first.metadata.uid]
    assert int(snapshot.resource_version) >= int(first.metadata.resource_version)

    await resources.create(pod_manifest("b"))
    event = await next_event(stream)
    assert (event.type, event.pods[0].metadata.name, event.pods[0].spec.node_name) == (
        BoundPodsEvent.UPSERT,
        "b",
        "n1",
    )
    assert int(event.resource_version) > int(snapshot.resource_version)

    await resources.delete("pods", "a", grace_period_seconds=0, force=True)
    event = await next_event(stream)
    assert (event.type, event.pods[0].metadata.name) == (BoundPodsEvent.REMOVED, "a")
    stream.cancel()

    empty = agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="n2"))
    assert list((await next_event(empty)).pods) == []
    empty.cancel()


async def test_update_pod_status_keeps_scheduler_condition(resources, agent):
    pod = await bound_pod(resources, agent)
    status = objects_pb2.PodStatus(phase="Running", pod_ip="172.17.0.9")
    status.conditions.add(type="Ready", status="True")
    update = services_pb2.PodStatusUpdate(
        namespace="default", name="web", uid=pod.metadata.uid, status=status
    )
    updated = await agent.UpdatePodStatus(update)
    assert updated.status.phase == "Running" and updated.status.pod_ip == "172.17.0.9"
    assert condition(updated).status == "True"
    assert condition(updated, "Ready").status == "True"
    again = await agent.UpdatePodStatus(update)
    assert again.metadata.resource_version == updated.metadata.resource_version  # nothing changed: no write

    update.uid = "someone-else"
    err = await rpc_error(agent.UpdatePodStatus(update))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_graceful_delete_then_agent_confirms(resources, agent):
    pod = await bound_pod(resources, agent)
    marked = await resources.delete("pods", "web")
    assert marked.metadata.HasField("deletion_timestamp")
    assert marked.metadata.deletion_grace_period_seconds == 30
    assert marked.metadata.deletion_timestamp.seconds >= int(time.time()) + 29
    shorter = await resources.delete("pods", "web", grace_period_seconds=5)
    assert shorter.metadata.deletion_grace_period_seconds == 5
    longer = await resources.delete("pods", "web", grace_period_seconds=60)
    assert longer.metadata.deletion_timestamp == shorter.metadata.deletion_timestamp
    assert (await resources.get("pods", "web")).metadata.HasField("deletion_timestamp")

    # A confirmation for another uid is ignored; the right one removes the pod.
    await agent.ConfirmPodTerminated(services_pb2.PodTerminated(namespace="default", name="web", uid="x"))
    await resources.get("pods", "web")
    await agent.ConfirmPodTerminated(
        services_pb2.PodTerminated(namespace="default", name="web", uid=pod.metadata.uid)
    )
    err = await rpc_error(resources.get("pods", "web"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_force_delete_and_unbound_delete_are_immediate(resources, agent):
    await bound_pod(resources, agent)
    removed = await resources.delete("pods", "web", grace_period_seconds=0, force=True)
    assert removed.metadata.name == "web"
    assert (await rpc_error(resources.get("pods", "web"))).code() == grpc.StatusCode.NOT_FOUND

    await resources.update(_cordoned(await resources.get("nodes", "n1", "")))
    await resources.create(pod_manifest("pending"))
    await resources.delete("pods", "pending")
    assert (await rpc_error(resources.get("pods", "pending"))).code() == grpc.StatusCode.NOT_FOUND


def _cordoned(node: objects_pb2.Node) -> objects_pb2.Node:
    node.spec.unschedulable = True
    return node


async def test_delete_node_releases_its_pods_from_grace(resources, agent):
    await bound_pod(resources, agent)
    deleted = await resources.delete("nodes", "n1", "")
    assert deleted.metadata.name == "n1"
    # No agent can confirm any more: the pod goes at once.
    await resources.delete("pods", "web")
    assert (await rpc_error(resources.get("pods", "web"))).code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---- taints ----


async def test_a_new_node_takes_its_agents_taints_once(resources, agent):
    """The kubelet's --register-with-taints: a node created by its registration carries the
    taints its agent sent (NoExecute ones stamped); a node the master knows keeps its own."""
    reported = node_manifest()
    reported.spec.taints.add(key="dedicated", value="db", effect="NoSchedule")
    reported.spec.taints.add(key="draining", effect="NoExecute")
    before = time.time()
    node = (await agent.RegisterNode(reported)).node
    schedule, execute = node.spec.taints
    assert (schedule.key, schedule.value, schedule.HasField("time_added")) == ("dedicated", "db", False)
    assert (execute.key, before - 1 <= execute.time_added.seconds <= time.time() + 1) == ("draining", True)
    # An admin removes one; the agent registering again (a restart) does not bring it back.
    del node.spec.taints[1]
    await resources.update(node)
    node = (await agent.RegisterNode(reported)).node
    assert [t.key for t in node.spec.taints] == ["dedicated"]


async def test_node_taints_are_the_admins_and_noexecute_ones_get_time_added(resources, agent):
    node = (await agent.RegisterNode(node_manifest())).node
    node.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    node.spec.taints.add(key="evict", effect="NoExecute")
    before = time.time()
    tainted = await resources.update(node)
    schedule, execute = tainted.spec.taints
    assert not schedule.HasField("time_added")
    assert before - 1 <= execute.time_added.seconds <= time.time() + 1

    # An update that keeps the taint keeps its time (the clock of its evictions).
    tainted.metadata.labels["team"] = "infra"
    again = await resources.update(tainted)
    assert again.spec.taints[1].time_added == execute.time_added

    again.spec.taints[0].effect = "Sometimes"
    err = await rpc_error(resources.update(again))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith('spec.taints[0].effect: unsupported value "Sometimes"'), err.details()
