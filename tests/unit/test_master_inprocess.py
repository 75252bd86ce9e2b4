"""The real master app in-process (port 0, SQLite in tmp_path), driven over grpc.aio with mutual
TLS, as the admin (the client config the app writes to <data-dir>/admin.yaml).

Nodes are registered through the NodeAgent RPCs by the test itself (the admin may call them
all): this is the master alone, no agent and no Docker. What nodes may and may not do is
tests/unit/test_master_tls.py's.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2, pki, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import channel_credentials, channel_options, load_config
from pymaster.api.errors import NotFound, TooOld
from pymaster.metrics import MasterMetrics
from pymaster.server.app import MasterApp
from pymaster.server.interceptors import MasterInterceptor
from pymaster.server.pod_helpers import find_condition

BoundPodsEvent = services_pb2.BoundPodsEvent


# ---- fixtures and helpers ----


async def start_master(data_dir, grace: float = 40.0) -> MasterApp:
    app = MasterApp(data_dir, "127.0.0.1:0", "127.0.0.1:0", node_monitor_grace_period=grace)
    await app.start()
    return app


def admin_channel(app: MasterApp) -> grpc.aio.Channel:
    """An mTLS channel with the admin certificate, from the config the app wrote."""
    config = load_config(app.admin_config_path)
    credentials = channel_credentials(config)
    return grpc.aio.secure_channel(config.server, credentials, options=channel_options(config))


@pytest.fixture
async def master(tmp_path) -> AsyncIterator[MasterApp]:
    app = await start_master(tmp_path / "data")
    yield app
    await app.stop()


@pytest.fixture
async def channel(master) -> AsyncIterator[grpc.aio.Channel]:
    async with admin_channel(master) as ch:
        yield ch


@pytest.fixture
def cluster(channel) -> services_pb2_grpc.ClusterStub:
    return services_pb2_grpc.ClusterStub(channel)


@pytest.fixture
def agent(channel) -> services_pb2_grpc.NodeAgentStub:
    return services_pb2_grpc.NodeAgentStub(channel)


async def eventually(
    fetch: Callable[[], Awaitable[object]], predicate: Callable[[object], bool], timeout: float = 10.0
) -> object:
    """Polls ``fetch`` until ``predicate`` holds on its result; returns that result."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value: {value}")
        await asyncio.sleep(0.02)


def pod_manifest(
    name: str = "web",
    cpu: str = "100m",
    labels: dict[str, str] | None = None,
    image: str = "busybox:1.35",
    containers: tuple[str, ...] = ("app",),
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.labels.update(labels or {"app": name})
    for container_name in containers:
        container = pod.spec.containers.add(name=container_name, image=image)
        container.resources.requests["cpu"] = cpu
    return pod


def node_manifest(name: str = "n1", cpu: str = "2", kubelet_port: int = 10250) -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.labels["kubernetes.io/hostname"] = name
    for resources in (node.status.capacity, node.status.allocatable):
        resources.update({"cpu": cpu, "memory": "4Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="127.0.0.1")
    node.status.daemon_endpoints.kubelet_endpoint.port = kubelet_port
    return node


def get(name: str, namespace: str = "default") -> services_pb2.GetRequest:
    return services_pb2.GetRequest(namespace=namespace, name=name)


def condition(pod: objects_pb2.Pod, type_: str = "PodScheduled") -> objects_pb2.PodCondition | None:
    return find_condition(pod.status.conditions, type_)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def next_event(call: grpc.aio.Call, timeout: float = 10.0) -> Message:
    """The next message of a streaming call (fails at the end of the stream)."""
    message = await asyncio.wait_for(call.read(), timeout)
    assert message is not grpc.aio.EOF, "stream ended"
    return message


async def bound_pod(cluster, agent, name: str = "web") -> objects_pb2.Pod:
    """Registers node n1, creates a pod and waits until the scheduler binds it."""
    await agent.RegisterNode(node_manifest())
    await cluster.CreatePod(pod_manifest(name))
    return await eventually(lambda: cluster.GetPod(get(name)), lambda p: p.spec.node_name == "n1")


# ---- pods: create, read, apply, update ----


async def test_create_get_list(cluster):
    created = await cluster.CreatePod(pod_manifest("web", labels={"app": "web"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.namespace == "default" and created.metadata.generation == 1
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    await cluster.CreatePod(pod_manifest("db", labels={"app": "db"}))

    assert (await cluster.GetPod(get("web"))).metadata.uid == created.metadata.uid
    listed = await cluster.ListPods(services_pb2.ListRequest())
    assert [p.metadata.name for p in listed.items] == ["db", "web"]
    assert int(listed.resource_version) >= int(created.metadata.resource_version)
    selected = await cluster.ListPods(services_pb2.ListRequest(label_selector="app=web"))
    assert [p.metadata.name for p in selected.items] == ["web"]
    other = await cluster.ListPods(services_pb2.ListRequest(namespace="kube-system"))
    assert not other.items


async def test_errors_map_to_status_codes(cluster):
    invalid = pod_manifest()
    invalid.spec.containers[0].image = ""
    err = await rpc_error(cluster.CreatePod(invalid))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].image: ")

    await cluster.CreatePod(pod_manifest())
    err = await rpc_error(cluster.CreatePod(pod_manifest()))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    err = await rpc_error(cluster.GetPod(get("nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    err = await rpc_error(cluster.ListPods(services_pb2.ListRequest(label_selector="app in web")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("labelSelector: ")


async def test_apply_created_unchanged_configured(cluster):
    first = await cluster.ApplyPod(pod_manifest())
    assert first.action == "created"
    # Let the scheduler write its verdict (no nodes) so that nothing else writes the pod.
    settled = await eventually(lambda: cluster.GetPod(get("web")), lambda p: condition(p) is not None)
    again = await cluster.ApplyPod(pod_manifest())
    assert again.action == "unchanged"
    assert again.pod.metadata.resource_version == settled.metadata.resource_version

    relabelled = await cluster.ApplyPod(pod_manifest(labels={"app": "web", "tier": "front"}))
    assert relabelled.action == "configured"
    assert relabelled.pod.metadata.labels["tier"] == "front"
    assert relabelled.pod.metadata.uid == first.pod.metadata.uid
    assert relabelled.pod.status.phase == "Pending"

    changed_cpu = pod_manifest(labels={"app": "web", "tier": "front"}, cpu="200m")
    err = await rpc_error(cluster.ApplyPod(changed_cpu))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].resources")


async def test_apply_keeps_node_name_set_by_scheduler(cluster, agent):
    pod = await bound_pod(cluster, agent)
    # A new tag that would default imagePullPolicy differently keeps the stored policy.
    response = await cluster.ApplyPod(pod_manifest(image="busybox:latest"))
    assert response.action == "configured"
    assert response.pod.spec.node_name == "n1"
    assert response.pod.spec.containers[0].image == "busybox:latest"
    assert response.pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert response.pod.metadata.generation == pod.metadata.generation + 1
    assert condition(response.pod).status == "True"


async def test_update_checks_resource_version(cluster):
    await cluster.CreatePod(pod_manifest())
    # The scheduler writes the pod once (no nodes); start from that version.
    created = await eventually(lambda: cluster.GetPod(get("web")), lambda p: condition(p) is not None)
    update = objects_pb2.Pod()
    update.CopyFrom(created)
    update.metadata.labels["tier"] = "front"
    updated = await cluster.UpdatePod(update)
    assert updated.metadata.labels["tier"] == "front"

    stale = objects_pb2.Pod()
    stale.CopyFrom(created)  # the old resourceVersion
    stale.metadata.labels["tier"] = "back"
    err = await rpc_error(cluster.UpdatePod(stale))
    assert err.code() == grpc.StatusCode.ABORTED


# ---- watches ----


async def test_watch_lists_then_follows(cluster):
    await cluster.CreatePod(pod_manifest("a"))
    stream = cluster.WatchPods(services_pb2.WatchRequest())
    first = await next_event(stream)
    assert (first.type, first.object.metadata.name) == (services_pb2.ADDED, "a")
    await cluster.CreatePod(pod_manifest("b"))
    event = await next_event(stream)
    # The scheduler may write its verdict on "a" (no nodes) in between.
    while (event.type, event.object.metadata.name) == (services_pb2.MODIFIED, "a"):
        event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "b")
    stream.cancel()


async def test_watch_from_resource_version_with_selector(cluster):
    await cluster.CreatePod(pod_manifest("a", labels={"app": "a"}))
    rv = (await cluster.ListPods(services_pb2.ListRequest())).resource_version
    stream = cluster.WatchPods(services_pb2.WatchRequest(resource_version=rv, label_selector="tier=front"))
    await cluster.CreatePod(pod_manifest("b", labels={"app": "b"}))  # never matches
    await cluster.ApplyPod(pod_manifest("a", labels={"app": "a", "tier": "front"}))  # enters
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "a")
    await cluster.ApplyPod(pod_manifest("a", labels={"app": "a"}))  # leaves
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "a")
    stream.cancel()


async def test_watch_too_old_after_restart_is_out_of_range(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with admin_channel(app) as ch:
            cluster = services_pb2_grpc.ClusterStub(ch)
            await cluster.CreatePod(pod_manifest("a"))
            await cluster.CreatePod(pod_manifest("b"))
    finally:
        await app.stop()
    app = await start_master(tmp_path / "data")  # the event log starts empty at the stored rv
    try:
        async with admin_channel(app) as ch:
            cluster = services_pb2_grpc.ClusterStub(ch)
            assert len((await cluster.ListPods(services_pb2.ListRequest())).items) == 2
            stream = cluster.WatchPods(services_pb2.WatchRequest(resource_version="1"))
            err = await rpc_error(next_event(stream))
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        await app.stop()


# ---- nodes and scheduling ----


async def test_registered_node_gets_the_pod(cluster, agent):
    response = await agent.RegisterNode(node_manifest())
    ready = find_condition(response.node.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert response.lease_period_seconds == 0

    await cluster.CreatePod(pod_manifest("web", cpu="500m"))
    pod = await eventually(lambda: cluster.GetPod(get("web")), lambda p: p.spec.node_name == "n1")
    assert condition(pod).status == "True"
    assert pod.status.phase == "Pending"


async def test_oversized_pod_stays_pending_with_reason(cluster, agent):
    await agent.RegisterNode(node_manifest(cpu="2"))
    await cluster.CreatePod(pod_manifest("huge", cpu="3"))
    pod = await eventually(lambda: cluster.GetPod(get("huge")), lambda p: condition(p) is not None)
    assert not pod.spec.node_name and pod.status.phase == "Pending"
    assert (condition(pod).status, condition(pod).reason, condition(pod).message) == (
        "False",
        "Unschedulable",
        "0/1 nodes available: 1 insufficient cpu",
    )


async def test_cordon_with_update_node(cluster, agent):
    node = (await agent.RegisterNode(node_manifest())).node
    node.spec.unschedulable = True
    node.status.allocatable["cpu"] = "64"  # not the user's to change: ignored
    cordoned = await cluster.UpdateNode(node)
    assert cordoned.spec.unschedulable and cordoned.status.allocatable["cpu"] == "2"
    err = await rpc_error(cluster.UpdateNode(node))  # stale resourceVersion
    assert err.code() == grpc.StatusCode.ABORTED

    await cluster.CreatePod(pod_manifest())
    pod = await eventually(lambda: cluster.GetPod(get("web")), lambda p: condition(p) is not None)
    assert condition(pod).message == "0/1 nodes available: 1 node(s) were unschedulable"

    again = await agent.RegisterNode(node_manifest())  # an agent restart keeps the cordon
    assert again.node.spec.unschedulable
    nodes = await cluster.ListNodes(services_pb2.ListRequest(field_selector="spec.unschedulable=true"))
    assert [n.metadata.name for n in nodes.items] == ["n1"]


async def test_watch_nodes(cluster, agent):
    await agent.RegisterNode(node_manifest("n1"))
    stream = cluster.WatchNodes(services_pb2.WatchRequest(field_selector="spec.unschedulable=false"))
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "n1")
    await agent.RegisterNode(node_manifest("n2"))
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "n2")
    await cluster.UpdateNode(_cordoned(await cluster.GetNode(get("n1", ""))))
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "n1")  # left the selection
    await cluster.DeleteNode(services_pb2.DeleteRequest(name="n2"))
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "n2")
    stream.cancel()


async def test_lease_renewal(cluster, agent):
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
            cluster, agent = services_pb2_grpc.ClusterStub(ch), services_pb2_grpc.NodeAgentStub(ch)
            await agent.RegisterNode(node_manifest())

            def ready_is(status: str) -> Callable[[objects_pb2.Node], bool]:
                return lambda n: find_condition(n.status.conditions, "Ready").status == status

            node = await eventually(lambda: cluster.GetNode(get("n1", "")), ready_is("Unknown"))
            ready = find_condition(node.status.conditions, "Ready")
            assert (ready.reason, ready.message) == (
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
            await agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=0.1))
            # The renewal writes Ready=True before it returns.
            assert ready_is("True")(await cluster.GetNode(get("n1", "")))
    finally:
        await app.stop()


async def test_report_node_status(cluster, agent):
    await agent.RegisterNode(node_manifest())
    status = objects_pb2.NodeStatus()
    status.allocatable.update({"cpu": "1500m", "memory": "3Gi", "pods": "110"})
    status.usage.cpu_percent = 42.0
    status.conditions.add(type="Ready", status="False")  # ignored: conditions are the master's
    node = await agent.ReportNodeStatus(services_pb2.NodeStatusReport(node_name="n1", status=status))
    assert node.status.allocatable["cpu"] == "1500m" and node.status.capacity["cpu"] == "2"
    assert node.status.usage.cpu_percent == 42.0
    assert find_condition(node.status.conditions, "Ready").status == "True"
    err = await rpc_error(
        agent.ReportNodeStatus(services_pb2.NodeStatusReport(node_name="ghost", status=status))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---- the agent's view of its pods ----


async def test_watch_bound_pods_snapshot_then_changes(cluster, agent):
    first = await bound_pod(cluster, agent, "a")
    stream = agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="n1"))
    snapshot = await next_event(stream)
    assert snapshot.type == BoundPodsEvent.SNAPSHOT
    assert [p.metadata.uid for p in snapshot.pods] == [first.metadata.uid]
    assert int(snapshot.resource_version) >= int(first.metadata.resource_version)

    await cluster.CreatePod(pod_manifest("b"))
    event = await next_event(stream)
    assert (event.type, event.pods[0].metadata.name, event.pods[0].spec.node_name) == (
        BoundPodsEvent.UPSERT,
        "b",
        "n1",
    )
    assert int(event.resource_version) > int(snapshot.resource_version)

    await cluster.DeletePod(
        services_pb2.DeleteRequest(namespace="default", name="a", grace_period_seconds=0, force=True)
    )
    event = await next_event(stream)
    assert (event.type, event.pods[0].metadata.name) == (BoundPodsEvent.REMOVED, "a")
    stream.cancel()

    empty = agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="n2"))
    assert list((await next_event(empty)).pods) == []
    empty.cancel()


async def test_update_pod_status_keeps_scheduler_condition(cluster, agent):
    pod = await bound_pod(cluster, agent)
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


async def test_graceful_delete_then_agent_confirms(cluster, agent):
    pod = await bound_pod(cluster, agent)
    marked = await cluster.DeletePod(services_pb2.DeleteRequest(namespace="default", name="web"))
    assert marked.metadata.HasField("deletion_timestamp")
    assert marked.metadata.deletion_grace_period_seconds == 30
    assert marked.metadata.deletion_timestamp.seconds >= int(time.time()) + 29
    shorter = await cluster.DeletePod(
        services_pb2.DeleteRequest(namespace="default", name="web", grace_period_seconds=5)
    )
    assert shorter.metadata.deletion_grace_period_seconds == 5
    longer = await cluster.DeletePod(
        services_pb2.DeleteRequest(namespace="default", name="web", grace_period_seconds=60)
    )
    assert longer.metadata.deletion_timestamp == shorter.metadata.deletion_timestamp
    assert (await cluster.GetPod(get("web"))).metadata.HasField("deletion_timestamp")

    # A confirmation for another uid is ignored; the right one removes the pod.
    await agent.ConfirmPodTerminated(services_pb2.PodTerminated(namespace="default", name="web", uid="x"))
    await cluster.GetPod(get("web"))
    await agent.ConfirmPodTerminated(
        services_pb2.PodTerminated(namespace="default", name="web", uid=pod.metadata.uid)
    )
    err = await rpc_error(cluster.GetPod(get("web")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_force_delete_and_unbound_delete_are_immediate(cluster, agent):
    await bound_pod(cluster, agent)
    removed = await cluster.DeletePod(
        services_pb2.DeleteRequest(namespace="default", name="web", grace_period_seconds=0, force=True)
    )
    assert removed.metadata.name == "web"
    assert (await rpc_error(cluster.GetPod(get("web")))).code() == grpc.StatusCode.NOT_FOUND

    await cluster.UpdateNode(_cordoned(await cluster.GetNode(get("n1", ""))))
    await cluster.CreatePod(pod_manifest("pending"))
    await cluster.DeletePod(services_pb2.DeleteRequest(namespace="default", name="pending"))
    assert (await rpc_error(cluster.GetPod(get("pending")))).code() == grpc.StatusCode.NOT_FOUND


def _cordoned(node: objects_pb2.Node) -> objects_pb2.Node:
    node.spec.unschedulable = True
    return node


async def test_delete_node_releases_its_pods_from_grace(cluster, agent):
    await bound_pod(cluster, agent)
    deleted = await cluster.DeleteNode(services_pb2.DeleteRequest(name="n1"))
    assert deleted.metadata.name == "n1"
    # No agent can confirm any more: the pod goes at once.
    await cluster.DeletePod(services_pb2.DeleteRequest(namespace="default", name="web"))
    assert (await rpc_error(cluster.GetPod(get("web")))).code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---- logs ----


class FakeKubelet(services_pb2_grpc.KubeletServicer):
    def __init__(self) -> None:
        self.requests: list[services_pb2.ContainerLogsRequest] = []
        self.cancelled = asyncio.Event()

    async def ContainerLogs(self, request, context):
        self.requests.append(request)
        yield services_pb2.LogChunk(data=b"hello\n")
        if request.follow:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise


@pytest.fixture
async def kubelet(master) -> AsyncIterator[tuple[FakeKubelet, int]]:
    """An agent API of node n1 as the agent serves it: its node certificate, clients must present
    a certificate of the cluster CA."""
    server = grpc.aio.server()
    fake = FakeKubelet()
    services_pb2_grpc.add_KubeletServicer_to_server(fake, server)
    key_pem, cert_pem = master.pki.ca.issue(
        pki.node_common_name("n1"), pki.NODES_GROUP, ["n1", "127.0.0.1"], 3600
    )
    credentials = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=master.pki.ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield fake, port
    await server.stop(0)


async def test_pod_logs_proxied_from_agent(cluster, agent, kubelet):
    fake, port = kubelet
    err = await rpc_error(
        next_event(cluster.PodLogs(services_pb2.LogsRequest(namespace="default", name="web")))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND

    await cluster.CreatePod(pod_manifest("web", cpu="64"))  # fits nowhere
    err = await rpc_error(
        next_event(cluster.PodLogs(services_pb2.LogsRequest(namespace="default", name="web")))
    )
    assert (err.code(), err.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "pod web is not scheduled yet",
    )

    await agent.RegisterNode(node_manifest(kubelet_port=port))
    await cluster.CreatePod(pod_manifest("two", containers=("a", "b")))
    await eventually(lambda: cluster.GetPod(get("two")), lambda p: p.spec.node_name == "n1")
    err = await rpc_error(
        next_event(cluster.PodLogs(services_pb2.LogsRequest(namespace="default", name="two")))
    )
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "container: a container name must be specified for pod two, choose one of: [a b]",
    )
    err = await rpc_error(next_event(cluster.PodLogs(services_pb2.LogsRequest(name="two", container="c"))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("container: ")

    chunks = [
        c.data
        async for c in cluster.PodLogs(services_pb2.LogsRequest(name="two", container="b", tail_lines=5))
    ]
    assert chunks == [b"hello\n"]
    pod = await cluster.GetPod(get("two"))
    assert (fake.requests[0].pod_uid, fake.requests[0].container, fake.requests[0].tail_lines) == (
        pod.metadata.uid,
        "b",
        5,
    )

    follow = cluster.PodLogs(services_pb2.LogsRequest(name="two", container="a", follow=True))
    assert (await next_event(follow)).data == b"hello\n"
    follow.cancel()  # the client goes away: the master cancels the upstream call
    await asyncio.wait_for(fake.cancelled.wait(), 10)


async def test_pod_logs_agent_unreachable(cluster, agent, kubelet):
    _, port = kubelet
    await agent.RegisterNode(node_manifest(kubelet_port=1))  # nothing listens on port 1
    await cluster.CreatePod(pod_manifest())
    await eventually(lambda: cluster.GetPod(get("web")), lambda p: p.spec.node_name == "n1")
    err = await rpc_error(next_event(cluster.PodLogs(services_pb2.LogsRequest(name="web"))))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot reach the agent of node n1 at 127.0.0.1:1" in err.details()


# ---- health, reflection, metrics ----


async def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pykube.v1.Cluster", "pykube.v1.NodeAgent"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    reply = await next_event(responses)
    names = {s.name for s in reply.list_services_response.service}
    assert {"pykube.v1.Cluster", "pykube.v1.NodeAgent", "grpc.health.v1.Health"} <= names


def http_get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


async def test_metrics_and_healthz(master, cluster, agent):
    await bound_pod(cluster, agent)
    await rpc_error(cluster.GetPod(get("nope")))

    # The scrape runs in the HTTP server's thread and needs the event loop: never block the loop.
    status, body = await asyncio.to_thread(http_get, master.metrics_port, "/healthz")
    assert (status, body) == (200, "ok")
    status, text = await asyncio.to_thread(http_get, master.metrics_port, "/metrics")
    assert status == 200
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="CreatePod",grpc_service="pykube.v1.Cluster",'
        'grpc_type="unary"} 1.0'
    ) in text
    assert 'grpc_code="NotFound",grpc_method="GetPod"' in text
    assert "grpc_server_handling_seconds_bucket" in text
    assert 'kube_pod_status_phase{namespace="default",phase="Pending",pod="web"} 1.0' in text
    assert 'kube_node_status_condition{condition="Ready",node="n1",status="true"} 1.0' in text
    assert 'scheduler_schedule_attempts_total{result="scheduled"} 1.0' in text
    assert 'scheduler_pending_pods{queue="active"} 0.0' in text
    assert "pykube_store_resource_version " in text


async def test_streams_are_counted_when_they_end(master, cluster):
    stream = cluster.WatchPods(services_pb2.WatchRequest())
    await cluster.CreatePod(pod_manifest())
    await next_event(stream)
    stream.cancel()

    def cancelled_watches() -> float | None:
        return master.registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": "server_stream",
                "grpc_service": "pykube.v1.Cluster",
                "grpc_method": "WatchPods",
                "grpc_code": "Canceled",
            },
        )

    async def fetch() -> float | None:
        return cancelled_watches()

    await eventually(fetch, lambda value: value == 1.0)


# ---- the interceptor on its own ----


class BrokenCluster(services_pb2_grpc.ClusterServicer):
    async def GetPod(self, request, context):
        raise RuntimeError("boom")

    async def ListPods(self, request, context):
        raise NotFound('pods "x" not found')

    async def WatchPods(self, request, context):
        yield services_pb2.PodEvent(type=services_pb2.ADDED)
        raise TooOld("resourceVersion 1 is too old")


async def test_interceptor_maps_errors(caplog):
    registry = CollectorRegistry()
    server = grpc.aio.server(interceptors=[MasterInterceptor(MasterMetrics(registry))])
    services_pb2_grpc.add_ClusterServicer_to_server(BrokenCluster(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            cluster = services_pb2_grpc.ClusterStub(ch)
            err = await rpc_error(cluster.GetPod(get("x")))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.INTERNAL,
                "internal error: RuntimeError: boom",
            )
            assert "unexpected error in rpc service=pykube.v1.Cluster method=GetPod" in caplog.text
            err = await rpc_error(cluster.ListPods(services_pb2.ListRequest()))
            assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, 'pods "x" not found')
            stream = cluster.WatchPods(services_pb2.WatchRequest())
            assert (await next_event(stream)).type == services_pb2.ADDED
            err = await rpc_error(next_event(stream))
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
            err = await rpc_error(cluster.GetNode(get("n1")))  # not implemented by this servicer
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)

    def handled(method: str, code: str, grpc_type: str = "unary") -> float | None:
        return registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": grpc_type,
                "grpc_service": "pykube.v1.Cluster",
                "grpc_method": method,
                "grpc_code": code,
            },
        )

    assert handled("GetPod", "Internal") == 1
    assert handled("ListPods", "NotFound") == 1
    assert handled("WatchPods", "OutOfRange", "server_stream") == 1
    assert handled("GetNode", "Unimplemented") == 1


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
            cluster = services_pb2_grpc.ClusterStub(ch)
            node = await cluster.GetNode(get("n1", ""))
            assert find_condition(node.status.conditions, "Ready").status == "True"  # a grace period from now
            await eventually(
                lambda: cluster.GetNode(get("n1", "")),
                lambda n: find_condition(n.status.conditions, "Ready").status == "Unknown",
            )
    finally:
        await app.stop()
