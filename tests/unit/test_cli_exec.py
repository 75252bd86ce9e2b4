"""pyctl exec's logic (``pymaster.cli.exec.exec_command``) with a fake stream source in place of the
client: where the output goes, the exit code and its message, stdin to its end, kubectl's TTY
rules, errors, and a real pseudo-terminal as pyctl's stdin (raw mode for the exec and restored,
its size at the start and after SIGWINCH)."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pymaster.api import errors
from pymaster.cli import exec as cli_exec
from pymaster.client_exec import ExecChunk


class FakeSession:
    """What ``Client.exec`` returns, scripted: reads all of stdin (when given) and echoes it on
    stdout after ``chunks``, or raises ``error``; ``during`` runs while the output streams."""

    def __init__(self, chunks: list[tuple[str, bytes]], exit_code: int, error: Exception | None,
                 stdin: AsyncIterator[bytes] | None, during: Any = None):
        self.chunks, self.error, self.stdin, self.during = chunks, error, stdin, during
        self.exit_code: int | None = None
        self._code = exit_code
        self.closed = False

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def __aiter__(self) -> AsyncIterator[ExecChunk]:
        if self.error is not None:
            raise self.error
        for stream, data in self.chunks:
            yield ExecChunk(stream, data)
        if self.during is not None:
            await self.during(self)
        if self.stdin is not None:
            yield ExecChunk("stdout", b"".join([data async for data in self.stdin]))
        self.exit_code = self._code


class FakeClient:
    server = "127.0.0.1:6443"
    timeout = 10.0

    def __init__(self, chunks=(), exit_code: int = 0, error: Exception | None = None, during: Any = None):
        self.script = (list(chunks), exit_code, error, during)
        self.calls: list[dict[str, Any]] = []
        self.session: FakeSession | None = None

    def exec(self, namespace, name, command, container="", stdin=None, tty=False, size=None, resizes=None):
        self.calls.append(dict(namespace=namespace, name=name, command=command, container=container,
                               stdin=stdin is not None, tty=tty, size=size, resizes=resizes))
        chunks, code, error, during = self.script
        self.session = FakeSession(chunks, code, error, stdin, during)
        return self.session


class Ctx:
    """The parts of pyctl's Context that exec uses."""

    def __init__(self, client: FakeClient, stdin: Any = None):
        self.client, self.ns = client, "team"
        self.out_bytes = io.BytesIO()
        self.err_bytes = io.BytesIO()
        self.err = io.TextIOWrapper(self.err_bytes, write_through=True)
        self.stdin = stdin if stdin is not None else io.BytesIO()

    def print_error(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()

    @property
    def stderr(self) -> bytes:
        return self.err_bytes.getvalue()


def args(*command: str, pod="web", container="", stdin=False, tty=False) -> argparse.Namespace:
    return argparse.Namespace(pod=pod, container=container, remote_command=list(command), stdin=stdin,
                              tty=tty)


async def test_output_streams_and_the_exit_code():
    client = FakeClient([("stdout", b"out\n"), ("stderr", b"err\n"), ("stdout", b"\xff")], exit_code=3)
    ctx = Ctx(client)
    assert await cli_exec.exec_command(args("sh", "-c", "x", container="app"), ctx) == 3
    assert ctx.out_bytes.getvalue() == b"out\n\xff"  # bytes as they are
    assert ctx.stderr == b"err\ncommand terminated with exit code 3\n"
    assert client.calls == [dict(namespace="team", name="web", command=["sh", "-c", "x"], container="app",
                                 stdin=False, tty=False, size=None, resizes=None)]
    assert client.session.closed


async def test_success_says_nothing_more():
    ctx = Ctx(FakeClient([("stdout", b"fine\n")]))
    assert await cli_exec.exec_command(args("true"), ctx) == 0
    assert (ctx.out_bytes.getvalue(), ctx.stderr) == (b"fine\n", b"")


async def test_stdin_is_streamed_to_its_end_only_with_i():
    data = os.urandom(200_000)
    ctx = Ctx(FakeClient(), stdin=io.BytesIO(data))
    assert await cli_exec.exec_command(args("cat", stdin=True), ctx) == 0
    assert ctx.out_bytes.getvalue() == data
    ctx = Ctx(FakeClient(), stdin=io.BytesIO(b"unread"))
    assert await cli_exec.exec_command(args("cat"), ctx) == 0
    assert ctx.client.calls[0]["stdin"] is False and ctx.stdin.tell() == 0


async def test_tty_needs_i_and_a_terminal():
    ctx = Ctx(FakeClient(), stdin=io.BytesIO(b""))
    assert await cli_exec.exec_command(args("sh", stdin=True, tty=True), ctx) == 0
    assert ctx.stderr == (cli_exec.TTY_UNAVAILABLE + "\n").encode()
    assert (ctx.client.calls[0]["tty"], ctx.client.calls[0]["size"]) == (False, None)
    ctx = Ctx(FakeClient())
    assert await cli_exec.exec_command(args("sh", tty=True), ctx) == 0  # -t without -i: no TTY, no warning
    assert (ctx.client.calls[0]["tty"], ctx.stderr) == (False, b"")


CHOOSE = "a container name must be specified for pod web, choose one of: [a b]"


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (errors.NotFound('pods "web" not found'), 'Error from server (NotFound): pods "web" not found'),
        (errors.ValidationError("container", CHOOSE), f"error: {CHOOSE}"),
        (errors.FailedPrecondition("container app of pod default/web is not running"),
         "Error from server (BadRequest): container app of pod default/web is not running"),
        (errors.Forbidden('node "n1" may not call Cluster.Exec'),
         'Error from server (Forbidden): node "n1" may not call Cluster.Exec'),
    ],
)
async def test_api_errors_are_one_line_and_exit_1(error, line):
    ctx = Ctx(FakeClient(error=error))
    assert await cli_exec.exec_command(args("sh"), ctx) == 1
    assert ctx.stderr == (line + "\n").encode()


async def test_other_validation_errors_are_raised_for_main():
    ctx = Ctx(FakeClient(error=errors.ValidationError("command", "required")))
    with pytest.raises(errors.ValidationError):
        await cli_exec.exec_command(args(), ctx)


# ---- a real pseudo-terminal as pyctl's stdin ----


def set_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


@pytest.fixture
def terminal() -> Iterator[tuple[io.BufferedReader, int]]:
    """The follower side of a new pty, as a binary stdin, and its leader's descriptor."""
    leader, follower = os.openpty()
    set_size(follower, 80, 24)
    stdin = os.fdopen(follower, "rb", buffering=0)
    try:
        yield stdin, leader
    finally:
        stdin.close()
        os.close(leader)


async def test_tty_raw_mode_size_and_resizes(terminal):
    stdin, leader = terminal
    before = termios.tcgetattr(stdin.fileno())
    seen: dict[str, Any] = {}

    async def during(session: FakeSession) -> None:
        attrs = termios.tcgetattr(stdin.fileno())
        seen["raw"] = not attrs[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
        set_size(stdin.fileno(), 132, 43)
        os.kill(os.getpid(), signal.SIGWINCH)
        resizes = ctx.client.calls[0]["resizes"]
        seen["resize"] = await asyncio.wait_for(anext(resizes), 5)
        os.write(leader, b"typed\x04")  # raw: the Ctrl-D goes through as a byte
        seen["stdin"] = await asyncio.wait_for(anext(session.stdin), 5)
        session.stdin = None

    ctx = Ctx(FakeClient([("stdout", b"/dev/pts/0\r\n")], exit_code=0, during=during), stdin=stdin)
    assert await cli_exec.exec_command(args("sh", stdin=True, tty=True), ctx) == 0
    call = ctx.client.calls[0]
    assert (call["tty"], call["stdin"], call["size"]) == (True, True, (80, 24))
    assert seen == {"raw": True, "resize": (132, 43), "stdin": b"typed\x04"}
    assert termios.tcgetattr(stdin.fileno()) == before  # restored
    assert ctx.out_bytes.getvalue() == b"/dev/pts/0\r\n"


async def test_the_terminal_is_restored_after_an_error(terminal):
    stdin, _ = terminal
    before = termios.tcgetattr(stdin.fileno())
    ctx = Ctx(FakeClient(error=errors.NotFound('pods "web" not found')), stdin=stdin)
    assert await cli_exec.exec_command(args("sh", stdin=True, tty=True), ctx) == 1
    assert termios.tcgetattr(stdin.fileno()) == before
    assert ctx.stderr == b'Error from server (NotFound): pods "web" not found\n'
