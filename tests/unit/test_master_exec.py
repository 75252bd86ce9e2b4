"""Cluster.Exec on the in-process master (see master_fixtures.py), proxied to a fake agent API of
node n1 served with its node certificate, driven by the Python client (``Client.exec``) and by
raw stubs: the start the agent gets, both directions relayed in order, the pod checks, errors
from the agent and the interceptor (codes, metrics), and the admin-only rule (a node's own
certificate is refused). The real agent and engine: tests/e2e/test_cluster_exec.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import grpc
import pytest
from master_fixtures import eventually, join, node_manifest, pod_manifest, serve_kubelet

from pymaster.api import errors, objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import load_config
from pymaster.client import Client
from pymaster.server.exec_proxy import read_start

Input = services_pb2.ExecInput
Output = services_pb2.ExecOutput


class FakeKubelet(services_pb2_grpc.KubeletServicer):
    """An agent API whose Exec plays a few commands: ``echo`` (stdout, stderr, exit 3), ``cat``
    (echoes stdin and reports resizes until the end of input, exit 0), ``refuse`` (the agent's
    FAILED_PRECONDITION) and ``hang`` (until cancelled)."""

    def __init__(self) -> None:
        self.starts: list[services_pb2.ExecStart] = []
        self.inputs: list[Input] = []
        self.cancelled = asyncio.Event()

    async def Exec(self, request_iterator, context) -> AsyncIterator[Output]:
        requests = aiter(request_iterator)
        start = (await anext(requests)).start
        self.starts.append(start)
        command = start.command[0]
        if command == "echo":
            yield Output(stdout=b"out\n")
            yield Output(stderr=b"err\n")
            yield Output(exit_code=3)
        elif command == "cat":
            async for message in requests:
                self.inputs.append(message)
                kind = message.WhichOneof("input")
                if kind == "stdin":
                    yield Output(stdout=message.stdin)
                elif kind == "resize":
                    yield Output(stderr=f"{message.resize.width}x{message.resize.height}".encode())
                elif kind == "close_stdin":
                    break
            yield Output(exit_code=0)
        elif command == "refuse":
            message = "container app of pod default/web is not running"
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, message)
        elif command == "hang":
            yield Output(stdout=b"started")
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


@pytest.fixture
async def client(master) -> AsyncIterator[Client]:
    async with Client(config=load_config(master.admin_config_path)) as c:
        yield c


async def running_pod(resources, agent, name: str = "web", containers=("app",), phase: str = "Running"):
    """A pod bound to n1 (registered by the caller) with ``phase`` reported."""
    await resources.create(pod_manifest(name, containers=containers))
    pod = await eventually(lambda: resources.get("pods", name), lambda p: p.spec.node_name == "n1")
    status = objects_pb2.PodStatus(phase=phase)
    update = services_pb2.PodStatusUpdate(namespace="default", name=name, uid=pod.metadata.uid, status=status)
    await agent.UpdatePodStatus(update)
    return pod


@pytest.fixture
async def web(resources, agent, kubelet) -> objects_pb2.Pod:
    _, port = kubelet
    await agent.RegisterNode(node_manifest(kubelet_port=port))
    return await running_pod(resources, agent)


async def test_output_and_exit_code_through_the_master(client, kubelet, web):
    fake, _ = kubelet
    session = client.exec("default", "web", ["echo", "hi"])
    chunks = [chunk async for chunk in session]
    assert [(c.stream, c.data) for c in chunks] == [("stdout", b"out\n"), ("stderr", b"err\n")]
    assert session.exit_code == 3
    start = fake.starts[0]
    # The agent gets the pod by uid and the container chosen (the only one), nothing else.
    assert (start.pod_uid, start.container, list(start.command), start.name) == (web.metadata.uid, "app",
                                                                               ["echo", "hi"], "")
    assert await client.exec("default", "web", ["echo"]).collect() == (b"out\n", b"err\n", 3)


async def test_stdin_and_resizes_are_relayed_in_order(client, kubelet, web):
    fake, _ = kubelet

    async def stdin() -> AsyncIterator[bytes]:
        yield b"one "
        yield b"two"

    async with client.exec("default", "web", ["cat"], stdin=stdin(), tty=True, size=(80, 24)) as session:
        out = [chunk async for chunk in session]
    assert b"".join(c.data for c in out if c.stream == "stdout") == b"one two"
    assert session.exit_code == 0
    start = fake.starts[0]
    assert (start.stdin, start.tty, start.size.width, start.size.height) == (True, True, 80, 24)
    assert [m.WhichOneof("input") for m in fake.inputs] == ["stdin", "stdin", "close_stdin"]

    async with client.exec("default", "web", ["cat"], stdin=True) as pushed:
        await pushed.send_stdin(b"a")
        await pushed.resize(100, 30)
        await pushed.send_stdin(b"b")
        await pushed.close_stdin()
        assert [tuple(c) async for c in pushed] == [("stdout", b"a"), ("stderr", b"100x30"), ("stdout", b"b")]
    assert pushed.exit_code == 0


@pytest.mark.parametrize(
    ("name", "container", "command", "error", "message"),
    [
        ("nope", "", ["echo"], errors.NotFound, 'pods "nope" not found'),
        ("web", "db", ["echo"], errors.ValidationError, "container: container db is not valid for pod web"),
        ("web", "", [], errors.ValidationError, "command: required"),
        ("Bad_Name", "", ["echo"], errors.ValidationError, "name: invalid value"),
        ("web", "", ["refuse"], errors.FailedPrecondition, "container app of pod default/web is not running"),
    ],
)
async def test_errors(client, web, name, container, command, error, message):
    with pytest.raises(error) as err:
        await client.exec("default", name, command, container=container).collect()
    assert err.value.message.startswith(message), err.value.message


async def test_the_pod_must_be_bound_and_running(client, resources, agent, kubelet):
    _, port = kubelet
    await resources.create(pod_manifest("pending", cpu="64"))  # fits nowhere: never bound
    with pytest.raises(errors.FailedPrecondition, match="pod pending is not scheduled yet"):
        await client.exec("default", "pending", ["echo"]).collect()
    await agent.RegisterNode(node_manifest(kubelet_port=port))
    await running_pod(resources, agent, "starting", phase="Pending")
    expected = "pod starting is not running; current phase is Pending"
    with pytest.raises(errors.FailedPrecondition, match=expected):
        await client.exec("default", "starting", ["echo"]).collect()
    await running_pod(resources, agent, "done", phase="Succeeded")
    expected = "cannot exec into a container in a completed pod; current phase is Succeeded"
    with pytest.raises(errors.FailedPrecondition, match=expected):
        await client.exec("default", "done", ["echo"]).collect()
    await running_pod(resources, agent, "two", containers=("a", "b"))
    with pytest.raises(errors.ValidationError) as err:
        await client.exec("default", "two", ["echo"]).collect()
    assert (err.value.field, err.value.detail) == (
        "container", "a container name must be specified for pod two, choose one of: [a b]"
    )


async def test_a_second_start_is_refused_and_never_reaches_the_agent(channel, kubelet, web):
    fake, _ = kubelet
    call = services_pb2_grpc.ClusterStub(channel).Exec()
    start = services_pb2.ExecStart(namespace="default", name="web", command=["cat"], stdin=True)
    await call.write(Input(start=start))
    await call.write(Input(stdin=b"x"))
    assert (await call.read()).stdout == b"x"
    await call.write(Input(start=services_pb2.ExecStart(pod_uid="another", command=["sh"])))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "start: only the first message of an exec may start it"
    )
    assert len(fake.starts) == 1 and fake.inputs == [Input(stdin=b"x")]


async def test_a_caller_that_goes_away_cancels_the_agents_call(master, channel, kubelet, web):
    fake, _ = kubelet
    call = services_pb2_grpc.ClusterStub(channel).Exec()
    await call.write(Input(start=services_pb2.ExecStart(name="web", command=["hang"])))
    assert (await call.read()).stdout == b"started"
    call.cancel()
    await asyncio.wait_for(fake.cancelled.wait(), 10)

    def handled(code: str) -> float | None:
        labels = {"grpc_type": "bidi_stream", "grpc_service": "pykube.v1.Cluster", "grpc_method": "Exec",
                  "grpc_code": code}
        return master.registry.get_sample_value("grpc_server_handled_total", labels)

    async def fetch() -> float | None:
        return handled("Canceled")

    await eventually(fetch, lambda value: value == 1.0)


async def test_the_interceptor_counts_and_maps_exec_calls(master, client, web):
    assert (await client.exec("default", "web", ["echo"]).collect())[2] == 3
    with pytest.raises(errors.NotFound):
        await client.exec("default", "nope", ["echo"]).collect()

    def handled(code: str) -> float | None:
        labels = {"grpc_type": "bidi_stream", "grpc_service": "pykube.v1.Cluster", "grpc_method": "Exec",
                  "grpc_code": code}
        return master.registry.get_sample_value("grpc_server_handled_total", labels)

    async def fetch() -> tuple[float | None, float | None]:
        return handled("OK"), handled("NotFound")

    await eventually(fetch, lambda values: values == (1.0, 1.0))


async def test_an_unreachable_agent_is_unavailable(client, resources, agent):
    await agent.RegisterNode(node_manifest(kubelet_port=1))  # nothing listens on port 1
    await running_pod(resources, agent)
    with pytest.raises(errors.Unavailable, match="cannot reach the agent of node n1 at 127.0.0.1:1"):
        await client.exec("default", "web", ["echo"]).collect()


async def test_a_nodes_certificate_may_not_exec(master, kubelet, web):
    fake, _ = kubelet
    node = await join(master, "n1")
    try:
        call = node.cluster.Exec()
        await call.write(Input(start=services_pb2.ExecStart(name="web", command=["echo"])))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    finally:
        await node.channel.close()
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED, 'node "n1" may not call Cluster.Exec'
    )
    assert fake.starts == []


async def test_the_start_must_come_first_and_in_time():
    async def requests(*messages: Input) -> AsyncIterator[Input]:
        for message in messages:
            yield message

    with pytest.raises(errors.ValidationError, match="start: an exec must begin with its start"):
        await read_start(requests(Input(stdin=b"x")))
    with pytest.raises(errors.ValidationError, match="start: an exec must begin with its start"):
        await read_start(requests())

    async def silent() -> AsyncIterator[Input]:
        await asyncio.Event().wait()
        yield Input()

    with pytest.raises(errors.ValidationError, match=r"none within 0.01s"):
        await read_start(silent(), timeout=0.01)
    with pytest.raises(errors.ValidationError, match="command: at most"):
        await read_start(requests(Input(start=services_pb2.ExecStart(name="w", command=["x" * 300_000]))))


async def test_a_message_that_does_not_decode_is_invalid_argument(master, channel, kubelet, web):
    fake, _ = kubelet
    raw = channel.stream_stream("/pykube.v1.Cluster/Exec")  # bytes in, bytes out
    first = raw()
    await first.write(b"\xff\xff\xff")  # as the start
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await first.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("the request is not a valid message: ")

    later = raw()  # after a good start: the relay stops, the agent's call is cancelled
    start = services_pb2.ExecStart(name="web", command=["hang"])
    await later.write(Input(start=start).SerializeToString())
    assert Output.FromString(await later.read()).stdout == b"started"
    await later.write(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await later.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await asyncio.wait_for(fake.cancelled.wait(), 10)


async def test_big_stdin_goes_in_messages_the_master_takes(client, kubelet, web):
    fake, _ = kubelet
    data = os.urandom(5 * 1024 * 1024)  # over the master's 4 MiB message limit in one piece
    async with client.exec("default", "web", ["cat"], stdin=True) as session:
        await session.send_stdin(data)
        await session.close_stdin()
        out, _, code = await session.collect()
    assert (out == data, code) == (True, 0)
    sizes = [len(m.stdin) for m in fake.inputs if m.WhichOneof("input") == "stdin"]
    assert sizes == [1024 * 1024] * 5
