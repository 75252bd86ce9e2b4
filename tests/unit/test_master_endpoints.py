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
    next_event,
    node_manifest,
    pod_manifest,
    rpc_error,
    serve_kubelet,
)
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import NotFound, TooOld
from pymaster.api.kinds import wrap
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
    fake = FakeKubelet()
    server, port = await serve_kubelet(master, fake)
    yield fake, port
    await server.stop(0)


async def test_pod_logs_proxied_from_agent(resources, cluster, agent, kubelet):
    fake, port = kubelet
    err = await rpc_error(
        next_event(cluster.PodLogs(services_pb2.LogsRequest(namespace="default", name="web")))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND

    await resources.create(pod_manifest("web", cpu="64"))  # fits nowhere
    err = await rpc_error(
        next_event(cluster.PodLogs(services_pb2.LogsRequest(namespace="default", name="web")))
    )
    assert (err.code(), err.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "pod web is not scheduled yet",
    )

    await agent.RegisterNode(node_manifest(kubelet_port=port))
    await resources.create(pod_manifest("two", containers=("a", "b")))
    await eventually(lambda: resources.get("pods", "two"), lambda p: p.spec.node_name == "n1")
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
    pod = await resources.get("pods", "two")
    assert (fake.requests[0].pod_uid, fake.requests[0].container, fake.requests[0].tail_lines) == (
        pod.metadata.uid,
        "b",
        5,
    )

    follow = cluster.PodLogs(services_pb2.LogsRequest(name="two", container="a", follow=True))
    assert (await next_event(follow)).data == b"hello\n"
    follow.cancel()  # the client goes away: the master cancels the upstream call
    await asyncio.wait_for(fake.cancelled.wait(), 10)


async def test_pod_logs_agent_unreachable(resources, cluster, agent, kubelet):
    _, port = kubelet
    await agent.RegisterNode(node_manifest(kubelet_port=1))  # nothing listens on port 1
    await resources.create(pod_manifest())
    await eventually(lambda: resources.get("pods", "web"), lambda p: p.spec.node_name == "n1")
    err = await rpc_error(next_event(cluster.PodLogs(services_pb2.LogsRequest(name="web"))))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot reach the agent of node n1 at 127.0.0.1:1" in err.details()


# ---- health, reflection, metrics ----


async def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pykube.v1.Resources", "pykube.v1.Cluster", "pykube.v1.NodeAgent"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    reply = await next_event(responses)
    names = {s.name for s in reply.list_services_response.service}
    services = {"pykube.v1.Resources", "pykube.v1.Cluster", "pykube.v1.NodeAgent", "grpc.health.v1.Health"}
    assert services <= names


def http_get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


async def test_metrics_and_healthz(master, resources, agent):
    await bound_pod(resources, agent)
    await rpc_error(resources.get("pods", "nope"))

    # The scrape runs in the HTTP server's thread and needs the event loop: never block the loop.
    status, body = await asyncio.to_thread(http_get, master.metrics_port, "/healthz")
    assert (status, body) == (200, "ok")
    status, text = await asyncio.to_thread(http_get, master.metrics_port, "/metrics")
    assert status == 200
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Create",grpc_service="pykube.v1.Resources",'
        'grpc_type="unary"} 1.0'
    ) in text
    assert 'grpc_code="NotFound",grpc_method="Get",grpc_service="pykube.v1.Resources"' in text
    assert "grpc_server_handling_seconds_bucket" in text
    assert 'kube_pod_status_phase{namespace="default",phase="Pending",pod="web"} 1.0' in text
    assert 'kube_node_status_condition{condition="Ready",node="n1",status="true"} 1.0' in text
    assert 'scheduler_schedule_attempts_total{result="scheduled"} 1.0' in text
    assert 'scheduler_pending_pods{queue="active"} 0.0' in text
    assert "pykube_store_resource_version " in text


async def test_streams_are_counted_when_they_end(master, resources):
    stream = resources.watch("pods")
    await resources.create(pod_manifest())
    await next_event(stream)
    stream.cancel()

    def cancelled_watches() -> float | None:
        return master.registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": "server_stream",
                "grpc_service": "pykube.v1.Resources",
                "grpc_method": "Watch",
                "grpc_code": "Canceled",
            },
        )

    async def fetch() -> float | None:
        return cancelled_watches()

    await eventually(fetch, lambda value: value == 1.0)


# ---- the interceptor on its own ----


class BrokenResources(services_pb2_grpc.ResourcesServicer):
    async def Get(self, request, context):
        raise RuntimeError("boom")

    async def List(self, request, context):
        raise NotFound('pods "x" not found')

    async def Watch(self, request, context):
        yield services_pb2.WatchEvent(type=services_pb2.ADDED, object=wrap(objects_pb2.Pod()))
        raise TooOld("resourceVersion 1 is too old")


async def test_interceptor_maps_errors(caplog):
    registry = CollectorRegistry()
    server = grpc.aio.server(interceptors=[MasterInterceptor(MasterMetrics(registry))])
    services_pb2_grpc.add_ResourcesServicer_to_server(BrokenResources(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = services_pb2_grpc.ResourcesStub(ch)
            err = await rpc_error(stub.Get(services_pb2.GetRequest(resource="pods", name="x")))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.INTERNAL,
                "internal error: RuntimeError: boom",
            )
            assert "unexpected error in rpc service=pykube.v1.Resources method=Get" in caplog.text
            err = await rpc_error(stub.List(services_pb2.ListRequest(resource="pods")))
            assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, 'pods "x" not found')
            stream = stub.Watch(services_pb2.WatchRequest(resource="pods"))
            assert (await next_event(stream)).type == services_pb2.ADDED
            err = await rpc_error(next_event(stream))
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
            # Delete is not implemented by this servicer.
            err = await rpc_error(stub.Delete(services_pb2.DeleteRequest(resource="nodes", name="n1")))
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)

    def handled(method: str, code: str, grpc_type: str = "unary") -> float | None:
        return registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": grpc_type,
                "grpc_service": "pykube.v1.Resources",
                "grpc_method": method,
                "grpc_code": code,
            },
        )

    assert handled("Get", "Internal") == 1
    assert handled("List", "NotFound") == 1
    assert handled("Watch", "OutOfRange", "server_stream") == 1
    assert handled("Delete", "Unimplemented") == 1
