"""The master's lease lane (pymaster.server.lease_lane, its own process) beside an in-process
master: the API port names it, it takes renewals (an expired node Ready again), authorizes them
like the API port and serves nothing else; it learns of deleted nodes and ends with the master;
the Python client moves its renewals there and back to the API port when the lane is gone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

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
from pymaster.api.errors import TooOld
from pymaster.client import Client
from pymaster.server import lease_lane_wire as wire
from pymaster.server.lease_lane import RESTART_MIN_SECONDS, LeaseLane
from pymaster.store.base import ADDED, DELETED, MODIFIED


def ready(node: objects_pb2.Node) -> str:
    return find_condition(node.status.conditions, "Ready").status


def lane_address(app) -> str:
    return f"127.0.0.1:{app.lease_port}"


def renewals(app, service: str) -> float:
    return app.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": service, "grpc_method": "RenewLease", "grpc_code": "OK",
    }) or 0.0


async def renewed_on_lane(lane: services_pb2_grpc.NodeLeaseStub, renewal: services_pb2.RenewLeaseRequest,
                          timeout: float = 10.0) -> services_pb2.RenewLeaseResponse:
    """The lane's answer once it knows the node (it learns of nodes from the master's store a
    moment after they register; until then it sends the renewal to the API port)."""

    async def attempt() -> services_pb2.RenewLeaseResponse | None:
        try:
            return await lane.RenewLease(renewal)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return None

    return await eventually(attempt, lambda reply: reply is not None, timeout)


def async_value(read):
    async def fetch():
        return read()

    return fetch


def lane_refusal(lane: services_pb2_grpc.NodeLeaseStub, renewal: services_pb2.RenewLeaseRequest):
    """The lane's error for ``renewal`` (None: renewed)."""

    async def fetch() -> grpc.aio.AioRpcError | None:
        try:
            await lane.RenewLease(renewal)
        except grpc.aio.AioRpcError as err:
            return err
        return None

    return fetch


async def test_the_api_port_names_the_lane_which_takes_renewals(tmp_path):
    app = await start_master(tmp_path / "data", grace=1.0)
    try:
        assert app.lease_port not in (0, app.port, app.join_port)
        async with admin_channel(app) as api, admin_channel(app, lane_address(app)) as lane_channel:
            resources, agent = Resources(api), services_pb2_grpc.NodeAgentStub(api)
            lane = services_pb2_grpc.NodeLeaseStub(lane_channel)
            # A node the lane does not know: the API port answers for it (NOT_FOUND there).
            err = await rpc_error(lane.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.UNAVAILABLE, "the lease lane does not know node n1; renew on the API port")
            await agent.RegisterNode(node_manifest())
            renewal = services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=0.5)
            reply = await agent.RenewLease(renewal)
            assert reply.lease_port == app.lease_port
            await eventually(lambda: resources.get("nodes", "n1", ""), lambda n: ready(n) == "Unknown")
            # The lane learns of the node from the master's store.
            reply = await renewed_on_lane(lane, renewal)
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
            await renewed_on_lane(lane, services_pb2.RenewLeaseRequest(node_name="a", requested_seconds=10))
            err = await rpc_error(lane.RenewLease(services_pb2.RenewLeaseRequest(node_name="b")))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.PERMISSION_DENIED, 'node "a" may not renew the lease of node "b"')
        await a.channel.close()
        await b.channel.close()
    finally:
        await app.stop()


async def test_a_deleted_node_is_no_longer_renewed_on_the_lane(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        a = await join(app, "a")
        await a.agent.RegisterNode(node_manifest("a"))
        renewal = services_pb2.RenewLeaseRequest(node_name="a", requested_seconds=10)
        async with cert_channel(app, a.key_pem, a.cert_pem, address=lane_address(app)) as channel, \
                admin_channel(app) as api, admin_channel(app, lane_address(app)) as admin_lane_channel:
            lane, admin_lane = services_pb2_grpc.NodeLeaseStub(channel), services_pb2_grpc.NodeLeaseStub(
                admin_lane_channel)
            await renewed_on_lane(lane, renewal)
            await renewed_on_lane(admin_lane, renewal)
            await Resources(api).delete("nodes", "a", "")  # revokes the node's certificate too
            # The lane hears of it: neither the node's certificate nor the admin renews "a" there
            # (the lane sends both to the API port, which refuses the certificate).
            for stub in (lane, admin_lane):
                err = await eventually(lane_refusal(stub, renewal), lambda e: e is not None)
                assert (err.code(), err.details()) == (
                    grpc.StatusCode.UNAVAILABLE, "the lease lane does not know node a; renew on the API port")
            err = await rpc_error(a.agent.RenewLease(renewal))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        await a.channel.close()
    finally:
        await app.stop()


Lane = tuple[services_pb2_grpc.NodeLeaseStub, services_pb2.RenewLeaseRequest]


@contextlib.asynccontextmanager
async def node_on_lane(app) -> AsyncIterator[Lane]:
    """Registers node n1 with the admin identity; yields the admin's NodeLease stub on the lane
    and n1's renewal."""
    async with admin_channel(app) as api, admin_channel(app, lane_address(app)) as lane_channel:
        await services_pb2_grpc.NodeAgentStub(api).RegisterNode(node_manifest())
        yield (services_pb2_grpc.NodeLeaseStub(lane_channel),
               services_pb2.RenewLeaseRequest(node_name="n1", requested_seconds=10))


async def test_a_lane_process_that_dies_is_started_again_on_its_port(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with node_on_lane(app) as (lane, renewal):
            await renewed_on_lane(lane, renewal)
            first = app._lease_lane._process
            first.kill()
            assert await asyncio.wait_for(first.wait(), 10) != 0
            # Back on the same port (the API port names it), with what the master knows.
            reply = await renewed_on_lane(lane, renewal, timeout=30)
            assert reply.lease_port == app.lease_port
            second = app._lease_lane._process
            assert second is not first
    finally:
        await app.stop()
    assert second.returncode is not None  # the master's stop ends the new one too


async def test_a_lane_that_dies_again_soon_waits_longer_to_start_again(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with node_on_lane(app) as (lane, renewal):
            waits = []
            for _ in range(2):
                await renewed_on_lane(lane, renewal, timeout=30)  # serving again
                dying = app._lease_lane._process
                dying.kill()
                await dying.wait()
                died = time.monotonic()

                async def current():
                    return app._lease_lane._process

                await eventually(current, lambda process, dying=dying: process is not dying, timeout=30)
                waits.append(time.monotonic() - died)
        # A crash loop backs off (1 s, then 2 s) instead of starting the lane every second.
        assert waits[1] >= 2 * RESTART_MIN_SECONDS - 0.1, waits
    finally:
        await app.stop()


async def test_a_master_stopping_while_its_lane_is_down_does_not_wait_for_it(tmp_path):
    app = await start_master(tmp_path / "data")
    process = app._lease_lane._process
    process.kill()
    await process.wait()
    started = time.monotonic()
    await app.stop()
    assert time.monotonic() - started < 5
    assert app._lease_lane is None


async def test_the_lane_process_ends_with_the_master(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        process = app._lease_lane._process
        # A master killed outright closes its end of the lane's stdin; nothing else is said.
        process.stdin.transport.close()
        assert await asyncio.wait_for(process.wait(), 10) == 0
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
            # The lane's calls are counted by the master, with the batch of renewals they bring.
            await eventually(async_value(lambda: renewals(app, "pykube.v1.NodeLease")), lambda n: n == 1)
            assert renewals(app, "pykube.v1.NodeAgent") == 1
            app._lease_lane._process.kill()  # the lane's process dies
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


class _GapStore:
    """A store whose first watch has fallen behind (TooOld) and whose second ends at once (the
    store closed); ``list`` gives two nodes."""

    def __init__(self) -> None:
        self.watches = 0

    def watch(self, kind: str, rv: int):
        self.watches += 1
        if self.watches == 1:
            raise TooOld("behind")
        return _Ended()

    def list(self, kind: str):
        return [node_manifest("a"), node_manifest("b")], 7


class _Ended:
    def __aiter__(self):
        return self

    async def __anext__(self):
        raise StopAsyncIteration

    def close(self) -> None:
        pass


async def test_the_lane_gets_the_whole_list_after_a_gap_and_no_node_updates():
    lane = LeaseLane("127.0.0.1:0", None, None, None, _GapStore(), [])
    sent: list[tuple] = []
    lane._send = sent.append
    await lane._follow("nodes", 0, lane._send_nodes)
    assert sent == [(wire.NODES, ["a", "b"], [], True)]  # the set, replaced
    sent.clear()
    lane._send_nodes([node_manifest("a")], MODIFIED)  # a status report: nothing to tell
    lane._send_nodes([node_manifest("c")], ADDED)
    lane._send_nodes([node_manifest("a")], DELETED)
    assert sent == [(wire.NODES, ["c"], [], False), (wire.NODES, [], ["a"], False)]
