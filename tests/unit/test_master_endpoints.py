"""The in-process master (see master_fixtures.py) beyond the API objects: pod logs proxied from the
agent, health, reflection, metrics, and the error-mapping interceptor on its own."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from master_fixtures import (
    bound_pod,
    eventually,
    get,
    next_event,
    node_manifest,
    pod_manifest,
    rpc_error,
)
from prometheus_client import CollectorRegistry

from pymaster.api import pki, services_pb2, services_pb2_grpc
from pymaster.api.errors import NotFound, TooOld
from pymaster.metrics import MasterMetrics
from pymaster.server.interceptors import MasterInterceptor

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
