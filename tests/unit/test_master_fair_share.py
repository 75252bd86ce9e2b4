"""No one node starves the control plane: a node's second bound-pods stream replaces the first,
a node holds a bounded number of streams, and pods may not publish host ports below 1024 (unless
the master allows it) nor the master's own ports."""

from __future__ import annotations

import grpc
import pytest
from master_fixtures import node_manifest, pod_manifest

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.errors import Forbidden, ResourceExhausted
from pymaster.api.identity import Identity
from pymaster.app import MasterApp
from pymaster.server.interceptors import StreamLimits


async def test_a_second_bound_pods_stream_of_a_node_replaces_the_first(agent) -> None:
    await agent.RegisterNode(node_manifest("n1"))
    request = services_pb2.BoundPodsRequest(node_name="n1")
    first = agent.WatchBoundPods(request)
    assert (await first.read()).type == services_pb2.BoundPodsEvent.SNAPSHOT
    second = agent.WatchBoundPods(request)
    assert (await second.read()).type == services_pb2.BoundPodsEvent.SNAPSHOT
    assert await first.read() == grpc.aio.EOF  # ended by the hub, not left to pile up
    second.cancel()


def node(name: str) -> Identity:
    return Identity("node", name)


def test_stream_limits_cap_nodes_only() -> None:
    limits = StreamLimits(max_per_node=2)
    with limits.hold(node("n1")), limits.hold(node("n1")):
        with pytest.raises(ResourceExhausted, match='node "n1" already holds 2 streams'):
            with limits.hold(node("n1")):
                pass
        with limits.hold(node("n2")):  # another node has its own share
            pass
        admin = Identity("admin", "admin")
        with limits.hold(admin), limits.hold(admin), limits.hold(admin), limits.hold(None):
            pass
    with limits.hold(node("n1")), limits.hold(node("n1")):  # released when the streams end
        pass


def with_host_port(port: int) -> objects_pb2.Pod:
    pod = pod_manifest("web")
    pod.spec.containers[0].ports.add(container_port=8080, host_port=port)
    return pod


async def test_low_and_own_host_ports_are_refused(master: MasterApp, resources) -> None:
    for port, why in [
        (80, "host ports below 1024 are not allowed on this cluster (pymaster --allow-privileged-host-port"),
        (master.port, f"host port {master.port} is a port of pymaster itself on this cluster"),
        (master.join_port, f"host port {master.join_port} is a port of pymaster itself"),
        (master.metrics_port, f"host port {master.metrics_port} is a port of pymaster itself"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await resources.create(with_host_port(port))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details().startswith(f"spec.containers[0].ports[0].hostPort: {why}")
    await resources.create(with_host_port(18080))


async def test_the_flag_opens_low_host_ports_but_never_the_masters_own(tmp_path) -> None:
    app = MasterApp(tmp_path, "127.0.0.1:0", "127.0.0.1:0", allow_privileged_host_ports=True)
    await app.start()
    try:
        assert app.port in app.api.pods.admission.reserved_host_ports
        await app.api.pods.create(with_host_port(80))
        pod = with_host_port(app.port)
        pod.metadata.name = "web-2"
        with pytest.raises(Forbidden, match="is a port of pymaster itself"):
            await app.api.pods.create(pod)
    finally:
        await app.stop()
