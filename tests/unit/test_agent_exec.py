"""The agent API's Exec over a real grpc.aio server with mutual TLS and the fake runtime: the start,
the relay of stdin, resizes and end of input into the runtime's session, the output then the exit
code, the errors of a bad stream, and the master-only rule (the real engine: tests/e2e)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, ExecResult, PodRuntime, TerminalSize
from pykubelet.server import AgentServer, ServerTLS
from pymaster.api import pki, services_pb2, services_pb2_grpc
from tests.fakes import FakeRuntime

Input = services_pb2.ExecInput


def c(cid: str, name: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(
        id=cid, name=name, pod_uid="u1", pod_name="web", pod_namespace="default", state=state
    )


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


def credentials(ca: pki.CertificateAuthority, cn: str, group: str) -> grpc.ChannelCredentials:
    key, cert = ca.issue(cn, group, [], 3600, server=False)
    return grpc.ssl_channel_credentials(ca.cert_pem, private_key=key, certificate_chain=cert)


@pytest.fixture
async def runtime() -> FakeRuntime:
    rt = FakeRuntime()
    containers = [c("app1", "app"), c("side1", "sidecar", "exited"), c("i", INFRA_CONTAINER_NAME)]
    rt.pods["u1"] = PodRuntime("u1", "web", "default", containers)
    rt.exec_results["app1"] = ExecResult(3, b"out\n", b"err\n")
    return rt


@pytest.fixture
async def channel(runtime: FakeRuntime, ca: pki.CertificateAuthority) -> AsyncIterator[grpc.aio.Channel]:
    key, cert = ca.issue(pki.node_common_name("n1"), pki.NODES_GROUP, ["n1", "127.0.0.1"], 3600)
    server = AgentServer("127.0.0.1:0", runtime, "n1", ServerTLS(key, cert, ca.cert_pem))  # type: ignore[arg-type]
    port = await server.start()
    master = credentials(ca, pki.MASTER_CLIENT_CN, pki.MASTERS_GROUP)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", master) as ch:
        yield ch
    await server.stop(0)


def start(command: tuple[str, ...] = ("sh",), container: str = "app", **fields: object) -> Input:
    return Input(start=services_pb2.ExecStart(pod_uid="u1", container=container, command=command, **fields))


async def run(channel: grpc.aio.Channel, *messages: Input) -> list[services_pb2.ExecOutput]:
    """Sends ``messages`` then ends the stream; returns every reply."""

    async def requests() -> AsyncIterator[Input]:
        for message in messages:
            yield message

    call = services_pb2_grpc.KubeletStub(channel).Exec(requests(), timeout=10)
    return [reply async for reply in call]


async def failure(channel: grpc.aio.Channel, *messages: Input) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run(channel, *messages)
    return err.value.code(), err.value.details()


def kinds(replies: list[services_pb2.ExecOutput]) -> list[tuple[str, object]]:
    return [(r.WhichOneof("output"), getattr(r, r.WhichOneof("output"))) for r in replies]


async def test_output_then_the_exit_code_last(channel, runtime):
    assert kinds(await run(channel, start(("sh", "-c", "x")))) == [
        ("stdout", b"out\n"), ("stderr", b"err\n"), ("exit_code", 3)
    ]
    session = runtime.exec_sessions[0]
    assert (session.command, session.stdin, session.tty) == (["sh", "-c", "x"], False, False)
    assert session.closed


async def test_the_log_names_the_program_not_its_arguments(channel, runtime, caplog):
    caplog.set_level("INFO", logger="pykubelet.server")
    await run(channel, start(("mysql", "--password=hunter2")))
    (line,) = [r.getMessage() for r in caplog.records if "exec started" in r.getMessage()]
    assert "program='mysql' args=1" in line and "hunter2" not in line


async def test_the_only_app_container_is_the_default(channel, runtime):
    runtime.pods["u1"].containers = [c("app1", "app"), c("i", INFRA_CONTAINER_NAME)]
    assert kinds(await run(channel, start(container="")))[-1] == ("exit_code", 3)
    assert runtime.calls[-1] == ("exec_stream", "app1", ("sh",))


async def test_stdin_and_its_end_reach_the_session_in_order(channel, runtime):
    runtime.exec_results["app1"] = ExecResult(0, b"", b"")
    messages = [start(stdin=True), Input(stdin=b"a"), Input(stdin=b"b"), Input(close_stdin=True)]
    replies = await run(channel, *messages)
    assert kinds(replies) == [("stdout", b"a"), ("stdout", b"b"), ("exit_code", 0)]
    assert runtime.exec_sessions[0].written == [b"a", b"b"]
    assert runtime.exec_sessions[0].stdin_closed


async def test_the_end_of_the_callers_stream_is_the_end_of_input(channel, runtime):
    runtime.exec_results["app1"] = ExecResult(0, b"", b"")
    replies = await run(channel, start(stdin=True), Input(stdin=b"x"))  # no close_stdin
    assert kinds(replies) == [("stdout", b"x"), ("exit_code", 0)]
    assert runtime.exec_sessions[0].stdin_closed


async def test_tty_size_and_resizes(channel, runtime):
    size = services_pb2.TerminalSize(width=80, height=24)
    replies = await run(
        channel,
        start(stdin=True, tty=True, size=size),
        Input(resize=services_pb2.TerminalSize(width=120, height=40)),
        Input(resize=services_pb2.TerminalSize(width=0, height=0)),  # no size: ignored
        Input(close_stdin=True),
    )
    assert kinds(replies) == [("stdout", b"out\n"), ("stdout", b"err\n"), ("exit_code", 3)]  # one stream
    assert runtime.exec_sessions[0].sizes == [TerminalSize(80, 24), TerminalSize(120, 40)]


@pytest.mark.parametrize(
    ("messages", "code", "message"),
    [
        ((), grpc.StatusCode.INVALID_ARGUMENT, "start: an exec must begin with its start"),
        ((Input(stdin=b"x"),), grpc.StatusCode.INVALID_ARGUMENT, "start: an exec must begin with its start"),
        ((start(()),), grpc.StatusCode.INVALID_ARGUMENT, "command: required"),
        ((start(container="db"),), grpc.StatusCode.NOT_FOUND, "container db not found in pod default/web"),
        ((Input(start=services_pb2.ExecStart(pod_uid="u9", command=["sh"])),), grpc.StatusCode.NOT_FOUND,
         "pod uid u9 has no containers on node n1"),
        ((start(container=""),), grpc.StatusCode.INVALID_ARGUMENT, "choose one of: app, sidecar"),
        ((start(container="sidecar"),), grpc.StatusCode.FAILED_PRECONDITION,
         "container sidecar of pod default/web is not running"),
    ],
)
async def test_refused_starts(channel, runtime, messages, code, message):
    got_code, details = await failure(channel, *messages)
    assert (got_code, message in details) == (code, True), details
    assert runtime.exec_sessions == []


@pytest.mark.parametrize(
    ("first", "bad", "message"),
    [
        (start(stdin=True), start(), "start: only the first message of an exec may start it"),
        (start(), Input(stdin=b"x"), "stdin: the exec was started without stdin"),
    ],
)
async def test_a_message_out_of_place_ends_the_exec(channel, runtime, first, bad, message):
    runtime.exec_hold = True  # an output that lasts until the session is closed
    assert await failure(channel, first, bad) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert runtime.exec_sessions[0].closed


async def test_a_caller_that_goes_away_closes_the_session(channel, runtime):
    runtime.exec_results["app1"] = ExecResult(0, b"first", b"")
    call = services_pb2_grpc.KubeletStub(channel).Exec()
    await call.write(start(stdin=True))
    assert (await call.read()).stdout == b"first"
    call.cancel()

    async def closed() -> None:
        while not (runtime.exec_sessions and runtime.exec_sessions[0].closed):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(closed(), 5)


@pytest.mark.parametrize(
    ("cn", "group"),
    [(pki.ADMIN_CN, pki.MASTERS_GROUP), (pki.node_common_name("n2"), pki.NODES_GROUP)],
)
async def test_only_the_master_may_exec(runtime, ca, cn, group):
    key, cert = ca.issue(pki.node_common_name("n1"), pki.NODES_GROUP, ["n1", "127.0.0.1"], 3600)
    server = AgentServer("127.0.0.1:0", runtime, "n1", ServerTLS(key, cert, ca.cert_pem))  # type: ignore[arg-type]
    port = await server.start()
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials(ca, cn, group)) as ch:
            code, details = await failure(ch, start())
    finally:
        await server.stop(0)
    assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED, "only the master may call the agent API")
    assert runtime.exec_sessions == []
