"""The master's lease lane (pymaster.server.lease_lane) in-process: the API port names it, it takes
renewals (an expired node Ready again), authorizes them like the API port and serves nothing
else; the Python client moves its renewals there and back to the API port when the lane is gone."""

from __future__ import annotations

import grpc
from master_fixtures import (
    Resources,
    admin_channel,
    cert_channel,
    eventually,
    join,
    node_manifest,
    rpc_error,
    start_master,
)

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import load_config
from pymaster.api.conditions import find_condition
from pymaster.client import Client


def ready(node: objects_pb2.Node) -> str:
    return find_condition(node.status.conditions, "Ready").status


def lane_address(app) -> str:
    return f"127.0.0.1:{app.lease_port}"


def renewals(app, service: str) -> float:
    return app.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": service, "grpc_method": "RenewLease", "grpc_code": "OK",
    }) or 0.0


async def test_the_api_port_names_the_lane_which_takes_renewals(tmp_path):
    app = await start_master(tmp_path / "data", grace=1.0)
    try:
        assert app.lease_port not in (0, app.port, app.join_port)
        async with admin_channel(app) as api, admin_channel(app, lane_address(app)) as lane_channel:
            resources, agent = Resources(api), services_pb2_grpc.NodeAgentStub(api)
            lane = services_pb2_grpc.NodeLeaseStub(lane_channel)
            err = await rpc_error(lane.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
            assert err.code() == grpc.StatusCode.NOT_FOUND
            await agent.RegisterNode(node_manifest())
            renewal = services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=0.5)
            reply = await agent.RenewLease(renewal)
            assert reply.lease_port == app.lease_port
            await eventually(lambda: resources.get("nodes", "n1", ""), lambda n: ready(n) == "Unknown")
            reply = await lane.RenewLease(renewal)
            assert (reply.lease_port, 0 < reply.next_renew_seconds <= 0.5) == (app.lease_port, True)
            # Taken on the master's loop: the expired node is Ready again.
            await eventually(lambda: resources.get("nodes", "n1", ""), lambda n: ready(n) == "True")
            # The lane serves renewals only.
            not_served = services_pb2_grpc.NodeAgentStub(lane_channel).RegisterNode(node_manifest("n2"))
            err = await rpc_error(not_served)
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await app.stop()


async def test_a_node_renews_only_its_own_lease_on_the_lane(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        a, b = await join(app, "a"), await join(app, "b")
        await a.agent.RegisterNode(node_manifest("a"))
        await b.agent.RegisterNode(node_manifest("b"))
        async with cert_channel(app, a.key_pem, a.cert_pem, address=lane_address(app)) as channel:
            lane = services_pb2_grpc.NodeLeaseStub(channel)
            err = await rpc_error(lane.RenewLease(services_pb2.RenewLeaseRequest(node_name="b")))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.PERMISSION_DENIED, 'node "a" may not renew the lease of node "b"')
            await lane.RenewLease(services_pb2.RenewLeaseRequest(node_name="a", requested_seconds=10))
        await a.channel.close()
        await b.channel.close()
    finally:
        await app.stop()


async def test_the_client_renews_on_the_lane_and_on_the_api_port_without_it(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with Client(app.address, config=load_config(app.admin_config_path)) as client:
            await client.register_node(node_manifest())
            first = await client.renew_lease("n1", 10)
            assert first.lease_port == app.lease_port
            assert (renewals(app, "pykube.v1.NodeAgent"), renewals(app, "pykube.v1.NodeLease")) == (1, 0)
            await client.renew_lease("n1", 10)
            assert (renewals(app, "pykube.v1.NodeAgent"), renewals(app, "pykube.v1.NodeLease")) == (1, 1)
            await app._lease_lane.stop(0)
            await client.renew_lease("n1", 10)  # the lane is gone: the API port takes it
            await client.renew_lease("n1", 10)  # and keeps taking them for a while
            assert (renewals(app, "pykube.v1.NodeAgent"), renewals(app, "pykube.v1.NodeLease")) == (3, 1)
    finally:
        await app.stop()


async def test_without_a_lane_renewals_stay_on_the_api_port(tmp_path):
    app = await start_master(tmp_path / "data", lease_listen="")
    try:
        async with Client(app.address, config=load_config(app.admin_config_path)) as client:
            await client.register_node(node_manifest())
            assert (await client.renew_lease("n1", 10)).lease_port == 0
            await client.renew_lease("n1", 10)
            assert renewals(app, "pykube.v1.NodeAgent") == 2
    finally:
        await app.stop()
