"""The Docker runtime's interactive exec (``exec_stream``, behind ``pyctl exec``) against the real
engine: output kept apart per stream, exit codes, stdin and its end of file, a TTY and its
resizes, errors, and sessions that end cleanly (no reader or writer thread left) whichever side
stops first, also behind the agent API's Exec (``KubeletService``, served in-process without TLS:
the master-only rule is tests/unit/test_agent_exec.py's). Each test uses its own node name and
leaves no container."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from pykubelet.runtime.base import (
    STDERR,
    STDOUT,
    ContainerNotFound,
    ContainerNotRunning,
    ExecSession,
    TerminalSize,
)
from pykubelet.runtime.docker import DockerRuntime
from pykubelet.server import KubeletService
from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc

from .harness import BUSYBOX, wait_for

PAUSE = "pykube/pause:3.9"

pytestmark = pytest.mark.e2e


@pytest.fixture
async def container_id(runtime: DockerRuntime, clean_node: str) -> str:
    """A running busybox container (of a pod on the test's node) that sleeps."""
    return await sleeping_container(runtime, clean_node)


async def sleeping_container(rt: DockerRuntime, node: str) -> str:
    """Starts a pod of ``node`` (infra + one busybox container that sleeps); its container id."""
    meta = objects_pb2.ObjectMeta(name="web", namespace="default", uid=str(uuid.uuid4()))
    pod = objects_pb2.Pod(metadata=meta)
    pod.spec.containers.add(name="main", image=BUSYBOX, command=["sleep", "3600"])
    infra = await rt.start_infra(pod, node, PAUSE)
    return (await rt.start_container(pod, pod.spec.containers[0], node, infra, 0, [])).id


def exec_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("docker-exec-")]


async def no_exec_threads() -> None:
    async def gone() -> bool:
        return not exec_threads()

    await wait_for(gone, 10, "the exec's reader and writer threads to end", interval=0.05)


async def collect(session: ExecSession) -> tuple[list[tuple[int, bytes]], int]:
    """Every output chunk, then the exit code."""
    chunks = [chunk async for chunk in session.output()]
    return chunks, await session.exit_code()


def joined(chunks: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(data for s, data in chunks if s == stream)


async def read_until(output: AsyncIterator[tuple[int, bytes]], marker: bytes, timeout: float = 10) -> bytes:
    """What the (TTY) output holds once ``marker`` has appeared in it."""
    seen = b""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            _, data = await anext(output)
            seen += data
    return seen


async def test_stdout_and_stderr_apart_and_the_exit_code(runtime, container_id):
    script = "echo out; echo err >&2; echo more; exit 3"
    async with await runtime.exec_stream(container_id, ["sh", "-c", script]) as session:
        chunks, code = await collect(session)
    assert (joined(chunks, STDOUT), joined(chunks, STDERR), code) == (b"out\nmore\n", b"err\n", 3)
    async with await runtime.exec_stream(container_id, ["true"]) as session:
        assert await collect(session) == ([], 0)
    await no_exec_threads()


async def test_unknown_command_is_exit_code_126_with_the_runtime_message(runtime, container_id):
    async with await runtime.exec_stream(container_id, ["no-such-command"]) as session:
        chunks, code = await collect(session)
    assert code == 126  # as `docker exec` and `kubectl exec` report it
    assert b"executable file not found" in joined(chunks, STDOUT) + joined(chunks, STDERR)


async def test_stdin_is_echoed_back_by_cat_and_its_end_ends_cat(runtime, container_id):
    script = ["sh", "-c", "cat; echo done >&2"]
    async with await runtime.exec_stream(container_id, script, stdin=True) as session:
        output = session.output()
        await session.write_stdin(b"hello\n")
        # Interactive: the first line comes back before the input ends.
        stream, data = await asyncio.wait_for(anext(output), 10)
        assert (stream, data) == (STDOUT, b"hello\n")
        big = os.urandom(2 * 2**20)  # more than the pipes hold: no deadlock, the writer waits
        writing = asyncio.create_task(session.write_stdin(big))
        echoed = b""
        while len(echoed) < len(big):
            stream, data = await asyncio.wait_for(anext(output), 10)
            echoed += data
        await writing
        assert echoed == big
        await session.close_stdin()
        rest = [chunk async for chunk in output]
        assert rest == [(STDERR, b"done\n")]
        assert await session.exit_code() == 0
    await no_exec_threads()


async def test_tty_is_a_terminal_with_one_stream(runtime, container_id):
    script = "tty; echo to-stderr >&2"
    async with await runtime.exec_stream(container_id, ["sh", "-c", script], tty=True) as session:
        chunks, code = await collect(session)
    assert code == 0
    assert {stream for stream, _ in chunks} == {STDOUT}
    text = joined(chunks, STDOUT)
    assert text.startswith(b"/dev/pts/"), text
    assert text.endswith(b"to-stderr\r\n")  # the terminal's line endings


async def test_tty_size_and_resize_are_seen_by_stty(runtime, container_id):
    session = await runtime.exec_stream(container_id, ["sh"], stdin=True, tty=True, size=TerminalSize(80, 24))
    async with session:
        output = session.output()
        # $((...)): the terminal echoes the command line, the marker must only be in the answer.
        await session.write_stdin(b"stty size; echo END-$((0+1))\n")
        assert b"24 80\r\n" in await read_until(output, b"END-1\r\n")
        await session.resize(TerminalSize(width=132, height=43))
        await session.write_stdin(b"stty size; echo END-$((0+2))\n")
        assert b"43 132\r\n" in await read_until(output, b"END-2\r\n")
        await session.close_stdin()  # ignored with a TTY: the terminal's EOF is the end of input
        await session.write_stdin(b"exit 7\n")
        async for _ in output:
            pass
        assert await session.exit_code() == 7
    await no_exec_threads()


async def test_closing_mid_stream_ends_both_threads(runtime, container_id):
    # A command that neither reads its stdin nor ends, with a writer blocked on a full pipe.
    session = await runtime.exec_stream(container_id, ["sh", "-c", "echo up; exec sleep 3600"], stdin=True)
    output = session.output()
    assert await asyncio.wait_for(anext(output), 10) == (STDOUT, b"up\n")
    writing = asyncio.create_task(session.write_stdin(os.urandom(4 * 2**20)))
    await asyncio.sleep(0)  # the writer thread takes the chunk and blocks on the full pipe
    assert not writing.done()
    await session.close()
    await asyncio.wait_for(writing, 10)  # dropped, not raised
    assert [chunk async for chunk in output] == []
    await session.write_stdin(b"after close")  # dropped too
    await no_exec_threads()


async def test_a_consumer_that_goes_away_closes_the_stream(runtime, container_id):
    script = ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]
    session = await runtime.exec_stream(container_id, script)
    output = session.output()
    assert (await asyncio.wait_for(anext(output), 10))[1].startswith(b"tick")
    await output.aclose()  # e.g. the gRPC call was cancelled
    await session.close()
    await no_exec_threads()


async def test_runtime_close_ends_open_sessions(clean_node):
    rt = DockerRuntime()
    try:
        container_id = await sleeping_container(rt, clean_node)
        session = await rt.exec_stream(container_id, ["cat"], stdin=True)
        output = session.output()
        await session.write_stdin(b"x")
        assert await asyncio.wait_for(anext(output), 10) == (STDOUT, b"x")
    finally:
        await rt.close()
    assert [chunk async for chunk in output] == []
    await no_exec_threads()


async def test_missing_or_stopped_container(runtime, container_id):
    with pytest.raises(ContainerNotFound):
        await runtime.exec_stream("no-such-container", ["true"])
    await runtime.stop_container(container_id, 0)
    expected = f"cannot exec in container {container_id[:12]}.*is not running"
    with pytest.raises(ContainerNotRunning, match=expected):
        await runtime.exec_stream(container_id, ["true"], stdin=True, tty=True)
    assert exec_threads() == []


async def test_agent_api_relays_and_a_caller_going_away_ends_the_exec(runtime, clean_node):
    container_id = await sleeping_container(runtime, clean_node)
    pods = await runtime.list_pods(clean_node)
    uid = next(iter(pods))
    assert pods[uid].latest("main").id == container_id
    server = grpc.aio.server()
    services_pb2_grpc.add_KubeletServicer_to_server(KubeletService(runtime, clean_node), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = services_pb2_grpc.KubeletStub(channel)
            start = services_pb2.ExecStart(pod_uid=uid, command=["sh", "-c", "cat; exit 4"], stdin=True)
            call = stub.Exec()
            await call.write(services_pb2.ExecInput(start=start))
            await call.write(services_pb2.ExecInput(stdin=b"ping\n"))
            assert (await call.read()).stdout == b"ping\n"
            await call.write(services_pb2.ExecInput(close_stdin=True))
            assert (await call.read()).exit_code == 4
            assert await call.read() is grpc.aio.EOF

            script = ["sh", "-c", "echo up; exec sleep 3600"]
            start = services_pb2.ExecStart(pod_uid=uid, command=script, stdin=True)
            call = stub.Exec()
            await call.write(services_pb2.ExecInput(start=start))
            assert (await call.read()).stdout == b"up\n"
            await call.write(services_pb2.ExecInput(stdin=os.urandom(4 * 2**20)))  # never read
            call.cancel()
            await no_exec_threads()
    finally:
        await server.stop(0)
