"""The client side of an exec (``Client.exec``, ``pyctl exec``): one bidirectional ``Cluster.Exec``
stream to the master, which proxies it to the agent of the pod's node.

``ExecSession`` is what ``Client.exec`` returns. Its output is read by iterating it, as
``ExecChunk(stream, data)`` pairs (``stream`` is "stdout" or "stderr"; with a TTY everything is
"stdout"), and once the iteration ends ``exit_code`` holds the command's exit code. Input goes
either from iterables given to ``Client.exec`` (``stdin``: bytes, then end of input when it is
exhausted; ``resizes``: (width, height) pairs), pumped by tasks of the session, or pushed with
``send_stdin``, ``close_stdin`` and ``resize``; both may be mixed, messages keep their order.

Example::

    async with client.exec("default", "web", ["sh", "-c", "cat; exit 3"], stdin=True) as session:
        await session.send_stdin(b"hello\\n")
        await session.close_stdin()
        async for stream, data in session:
            print(stream, data)
    assert session.exit_code == 3

    stdout, stderr, code = await client.exec("default", "web", ["ls", "/"]).collect()

Errors come as ``pymaster.api.errors`` exceptions from the iteration: ``NotFound`` for a missing
pod, ``FailedPrecondition`` for a pod or container that is not running, ``ValidationError`` naming
``container`` when the pod has several and none was named, ``Forbidden`` for anyone but the admin.
Leaving ``async with`` (or breaking out of the iteration) cancels the call: the agent ends the
exec's stream (the command itself may keep running, as with Docker's own exec).

This module imports only ``pymaster.api``; the client hands it its call and error translation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, NamedTuple

import grpc

from pymaster.api import errors, services_pb2

log = logging.getLogger(__name__)

MAX_STDIN_MESSAGE_BYTES = 1024 * 1024
_INPUT_QUEUE = 16  # messages waiting for gRPC to send them; a slow network holds the sender back
_END = object()  # ends the request stream


class ExecChunk(NamedTuple):
    """Some output of an exec: ``stream`` is "stdout" or "stderr" (with a TTY, always "stdout")."""

    stream: str
    data: bytes


def exec_start(
    namespace: str,
    name: str,
    command: list[str],
    container: str,
    stdin: bool,
    tty: bool,
    size: tuple[int, int] | None,
) -> services_pb2.ExecStart:
    """The first message of an exec stream; ``size`` is (width, height)."""
    start = services_pb2.ExecStart(
        namespace=namespace, name=name, container=container, command=command, stdin=stdin, tty=tty
    )
    if size is not None:
        start.size.width, start.size.height = size
    return start


class ExecSession:
    """One exec in progress (see the module docstring). Made by ``Client.exec``; the call starts
    on the first use (``async with``, iteration, or a send).

    Args:
        method: the stub's ``Cluster.Exec`` (called with the request iterator).
        start: the stream's first message.
        translate: turns a gRPC error into the API's exception.
        stdin: bytes to pump into the command's stdin, then its end of input; None to push
            them with ``send_stdin`` (when the start asks for stdin) or none.
        resizes: (width, height) terminal sizes to pump, as they come.

    Attributes:
        exit_code: the command's exit code, once the iteration has ended (None before).
    """

    def __init__(
        self,
        method: Callable[[AsyncIterator[services_pb2.ExecInput]], Any],
        start: services_pb2.ExecStart,
        translate: Callable[[grpc.aio.AioRpcError], errors.ApiError],
        stdin: AsyncIterable[bytes] | None = None,
        resizes: AsyncIterable[tuple[int, int]] | None = None,
    ):
        self.exit_code: int | None = None
        self._method = method
        self._start = start
        self._translate = translate
        self._stdin = stdin
        self._resizes = resizes
        self._queue: asyncio.Queue[object] = asyncio.Queue(_INPUT_QUEUE)
        self._call: Any = None
        self._pumps: list[asyncio.Task[None]] = []
        self._finished = False

    async def __aenter__(self) -> ExecSession:
        self._begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _begin(self) -> Any:
        if self._call is None:
            self._call = self._method(self._requests())
            if self._stdin is not None:
                self._pumps.append(asyncio.create_task(self._pump_stdin(self._stdin)))
            if self._resizes is not None:
                self._pumps.append(asyncio.create_task(self._pump_resizes(self._resizes)))
        return self._call

    async def _requests(self) -> AsyncIterator[services_pb2.ExecInput]:
        yield services_pb2.ExecInput(start=self._start)
        while (message := await self._queue.get()) is not _END:
            assert isinstance(message, services_pb2.ExecInput)
            yield message

    async def __aiter__(self) -> AsyncIterator[ExecChunk]:
        """The command's output until it ends; then ``exit_code`` is set. Iterate once.

        Raises:
            pymaster.api.errors.ApiError: the master's or the agent's error.
        """
        call = self._begin()
        try:
            async for output in call:
                kind = output.WhichOneof("output")
                if kind == "exit_code":
                    self.exit_code = output.exit_code
                elif kind is not None:
                    yield ExecChunk(kind, getattr(output, kind))
        except grpc.aio.AioRpcError as err:
            raise self._translate(err) from None
        finally:
            await self.close()
        if self.exit_code is None:
            raise errors.ApiError("the exec ended without the command's exit code")

    async def collect(self) -> tuple[bytes, bytes, int]:
        """Runs the exec to its end: (stdout, stderr, exit code)."""
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        async for stream, data in self:
            out[stream].append(data)
        assert self.exit_code is not None
        return b"".join(out["stdout"]), b"".join(out["stderr"]), self.exit_code

    async def send_stdin(self, data: bytes) -> None:
        """Sends ``data`` to the command's stdin (dropped once the exec has ended).

        Raises:
            ValueError: the exec was started without stdin.
        """
        if not self._start.stdin:
            raise ValueError("the exec was started without stdin")
        # In pieces the master takes (it refuses messages over 4 MiB).
        for offset in range(0, len(data), MAX_STDIN_MESSAGE_BYTES):
            await self._send(services_pb2.ExecInput(stdin=data[offset : offset + MAX_STDIN_MESSAGE_BYTES]))

    async def close_stdin(self) -> None:
        """End of input: the command reads end of file (without a TTY; with one, send the
        terminal's EOF character, Ctrl-D, as data)."""
        await self._send(services_pb2.ExecInput(close_stdin=True))

    async def resize(self, width: int, height: int) -> None:
        """Resizes the command's terminal (ignored without a TTY)."""
        await self._send(services_pb2.ExecInput(resize=services_pb2.TerminalSize(width=width, height=height)))

    async def _send(self, message: services_pb2.ExecInput) -> None:
        self._begin()
        if not self._finished:
            await self._queue.put(message)

    async def _pump_stdin(self, source: AsyncIterable[bytes]) -> None:
        try:
            async for data in source:
                await self.send_stdin(data)
        except Exception as err:  # the caller's source failed: its input ends there
            log.warning("exec stdin source failed, closing stdin error=%r", err)
        await self.close_stdin()

    async def _pump_resizes(self, source: AsyncIterable[tuple[int, int]]) -> None:
        async for width, height in source:
            await self.resize(width, height)

    async def close(self) -> None:
        """Ends the session (idempotent): stops the pumps and cancels the call if it still runs."""
        if self._finished:
            return
        self._finished = True
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        while not self._queue.empty():  # senders blocked on a full queue go on (and drop)
            self._queue.get_nowait()
        self._queue.put_nowait(_END)
        if self._call is not None:
            self._call.cancel()
