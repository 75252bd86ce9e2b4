"""``exec_stream`` of the Docker runtime (CRI's Exec, ``pyctl exec``): a command run in a
running container interactively, its output streamed as it comes, its stdin and terminal size
fed while it runs.

- The exec is created with stdout and stderr attached (stdin when asked, a TTY when asked) and
  started on a hijacked engine connection (``exec_io.Connection``), in the engine's pool: errors
  (a missing container, one not running) come from ``exec_stream`` itself, before any output.
- A reader thread of its own (the stream pump, ``streams.py``) reads the output: Docker's
  multiplexed frames without a TTY (stdout and stderr kept apart), the terminal's raw bytes with
  one (a single stream, STDOUT).
- A writer thread of its own writes stdin, one chunk at a time handed over by the event loop:
  a command that does not read its input blocks that thread and, through the awaiting caller,
  gRPC's flow control back to the user; never the event loop or the engine's pool. End of input
  is a half-close of the connection's write side (so ``cat`` ends); not with a TTY, where Docker
  would take a half-close as a detach and end the output of a command still running: there the
  terminal's EOF character (Ctrl-D) is the end of input, sent as data by the user's terminal.
- Resizes are ``exec_resize`` calls. The initial size is set right after the start (API 1.41
  has no console size at creation), retried briefly as the docker CLI does while the process is
  not started yet; a command that reads its size at once may still see the default.
- Once the output ends the exit code comes from ``exec_inspect``.

Closing the session (the caller went away) closes the connection, which wakes both threads; the
command itself is left running, since the Docker API cannot kill an exec'd process (as with the
kubelet's dockershim). Commands reading stdin end on their own: without a TTY they read end of
file once the connection is gone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pykubelet.runtime.base import STDERR, STDOUT, ContainerRuntimeError, TerminalSize
from pykubelet.runtime.docker.engine import DOCKER_ERRORS, Engine, translate
from pykubelet.runtime.docker.exec_io import (
    STDERR_ID,
    STDOUT_ID,
    SYSTEM_ERROR_ID,
    Connection,
    exec_creator,
    exit_code,
)
from pykubelet.runtime.docker.streams import Pump, Streams, close_stream

log = logging.getLogger(__name__)

READ_SIZE = 32 * 1024  # bytes per read of a TTY's output
_OUTPUT_QUEUE = 64  # chunks read ahead of the consumer
_INITIAL_RESIZE_ATTEMPTS = 5
_INITIAL_RESIZE_DELAY = 0.01  # seconds, times the attempt number
_STREAM_IDS = {STDOUT_ID: STDOUT, STDERR_ID: STDERR}


async def exec_stream(
    engine: Engine,
    streams: Streams,
    container_id: str,
    command: Sequence[str],
    stdin: bool,
    tty: bool,
    size: TerminalSize | None,
    on_close: Callable[[DockerExecSession], None] | None = None,
) -> DockerExecSession:
    """Creates and starts the exec (see the module docstring); returns its session, to close.

    Args:
        on_close: called with the session when it closes (the runtime's bookkeeping).

    Raises:
        ContainerNotFound: no such container.
        ContainerNotRunning: the container is not running (or paused).
        ContainerRuntimeError: Docker refused (stdin over a TLS connection to the engine, too).
        RuntimeUnavailable: the engine did not answer.
    """
    exec_id = await engine.run("create_exec", exec_creator(container_id, command, stdin, tty))
    start = asyncio.ensure_future(
        engine.run("start_exec", lambda api: api.exec_start(exec_id, socket=True, tty=tty))
    )
    try:
        sock = await asyncio.shield(start)
    except asyncio.CancelledError:
        # The start goes on in the pool: close its connection when it comes, or nobody will.
        start.add_done_callback(_close_started)
        raise
    session = DockerExecSession(engine, streams, exec_id, Connection(sock), stdin, tty, on_close)
    log.debug("exec started container=%s exec=%s stdin=%s tty=%s",
              container_id[:12], exec_id[:12], stdin, tty)
    if tty and size is not None:
        try:
            await session.initial_resize(size)
        except BaseException:  # cancelled meanwhile: nobody else will close it
            session.close_now()
            raise
    return session


def _close_started(start: asyncio.Future[Any]) -> None:
    if not start.cancelled() and start.exception() is None:
        close_stream(Connection(start.result()))


class DockerExecSession:
    """One running exec: the ExecSession of the Runtime protocol on Docker.

    Args:
        engine: the engine (resize and inspect calls).
        streams: the runtime's pumps (its close ends the reader).
        exec_id: Docker's exec id.
        connection: the started exec's hijacked connection.
        stdin: started with stdin attached (a writer thread is started).
        tty: started with a TTY.
        on_close: called with the session when it closes.
    """

    def __init__(
        self,
        engine: Engine,
        streams: Streams,
        exec_id: str,
        connection: Connection,
        stdin: bool,
        tty: bool,
        on_close: Callable[[DockerExecSession], None] | None = None,
    ):
        self.exec_id = exec_id
        self.tty = tty
        self._engine = engine
        self._streams = streams
        self._connection = connection
        self._on_close = on_close
        self._closed = threading.Event()  # read by the reader thread: errors after close are no errors
        self._output_taken = False
        self._writer = _StdinWriter(connection, f"docker-exec-stdin-{exec_id[:12]}") if stdin else None

    async def __aenter__(self) -> DockerExecSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """The command's output, ``(STDOUT | STDERR, bytes)``, until it ends; call once.

        Raises:
            ContainerRuntimeError: the engine failed mid-stream, or reported an error in it.
        """
        if self._output_taken:
            raise RuntimeError("the output of an exec session can be read once")
        self._output_taken = True
        body = functools.partial(_read_output, self._connection, self.tty, self._closed)
        return self._streams.open(f"docker-exec-stream-{self.exec_id[:12]}", body, maxsize=_OUTPUT_QUEUE)

    async def write_stdin(self, data: bytes) -> None:
        """Writes ``data`` to the command's stdin; returns once it is written. Data for a command
        that has ended (or a closed session) is dropped.

        Raises:
            ContainerRuntimeError: the exec was started without stdin.
        """
        if self._writer is None:
            raise ContainerRuntimeError("the exec was started without stdin")
        if data and not self._closed.is_set():
            await self._writer.submit(data)

    async def close_stdin(self) -> None:
        """End of input: half-closes the connection, so the command reads end of file. Ignored
        with a TTY (see the module docstring) or without stdin."""
        if self._writer is not None and not self.tty and not self._closed.is_set():
            await self._writer.submit(_StdinWriter.EOF)

    async def resize(self, size: TerminalSize) -> None:
        """Resizes the command's terminal (ignored without a TTY). A refused resize (the command
        has just ended) is logged, not raised: the size is advisory."""
        if not self.tty or self._closed.is_set():
            return
        try:
            await self._resize(size)
        except ContainerRuntimeError as err:
            log.debug("exec resize refused exec=%s error=%s", self.exec_id[:12], err)

    async def initial_resize(self, size: TerminalSize) -> None:
        """Sets the terminal's first size, retrying briefly while the process is not started."""
        for attempt in range(1, _INITIAL_RESIZE_ATTEMPTS + 1):
            try:
                await self._resize(size)
                return
            except ContainerRuntimeError as err:
                if attempt == _INITIAL_RESIZE_ATTEMPTS:
                    log.info("exec initial resize failed exec=%s error=%s", self.exec_id[:12], err)
                    return
                await asyncio.sleep(_INITIAL_RESIZE_DELAY * attempt)

    async def _resize(self, size: TerminalSize) -> None:
        await self._engine.run(
            "resize_exec",
            lambda api: api.exec_resize(self.exec_id, height=size.height, width=size.width),
        )

    async def exit_code(self) -> int:
        """The command's exit code, once ``output()`` has ended."""
        return await exit_code(self._engine, self.exec_id)

    async def close(self) -> None:
        """Ends the stream (idempotent): closes the connection, which wakes the reader and the
        writer threads; the output ends."""
        self.close_now()

    def close_now(self) -> None:
        """``close`` for synchronous callers (the runtime's own close)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._writer is not None:
            self._writer.stop()
        self._connection.close()
        if self._on_close is not None:
            self._on_close(self)


def _read_output(connection: Connection, tty: bool, closed: threading.Event, pump: Pump) -> None:
    """The reader thread: puts (STDOUT | STDERR, bytes) chunks until the output ends."""
    if closed.is_set() or not pump.attach(connection):
        return
    try:
        if tty:
            while data := connection.read_some(READ_SIZE):
                if not pump.put((STDOUT, data)):
                    return
            return
        while (frame := connection.read_frame()) is not None:
            stream_id, data = frame
            if stream_id == SYSTEM_ERROR_ID:  # the engine's own error, in the stream
                raise ContainerRuntimeError(f"exec failed: {data.decode(errors='replace')}")
            stream = _STREAM_IDS.get(stream_id)  # stdin echo or unknown: dropped
            if stream is not None and data and not pump.put((stream, data)):
                return
    except (*DOCKER_ERRORS, OSError, ValueError) as err:  # ValueError: read of a closed file
        if closed.is_set():
            return  # closed by the session: the end, not an error
        raise translate(err, ContainerRuntimeError) from err


class _StdinWriter:
    """The stdin writer thread of one exec. Writes one item at a time, handed over by the event
    loop, which awaits its completion: a command that does not read blocks this thread only."""

    EOF = object()  # half-close the connection
    _STOP = object()  # end the thread

    def __init__(self, connection: Connection, name: str):
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[tuple[object, asyncio.Future[None] | None]] = queue.SimpleQueue()
        self._broken = False  # a write failed: the command has ended, later input is dropped
        threading.Thread(target=self._run, name=name, daemon=True).start()

    async def submit(self, item: bytes | object) -> None:
        """Writes ``item`` (bytes, or EOF); returns once done. Failures are logged and the rest
        of the input dropped: the command has ended or the session was closed."""
        if self._broken:
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((item, future))
        await future

    def stop(self) -> None:
        """Ends the thread after the items already handed over (which fail fast once the
        connection is closed)."""
        self._queue.put((self._STOP, None))

    def _run(self) -> None:
        while True:
            item, future = self._queue.get()
            if item is self._STOP or future is None:
                return
            error: OSError | None = None
            try:
                if item is self.EOF:
                    self._connection.close_write()
                else:
                    assert isinstance(item, bytes)
                    self._connection.send_all(item)
            except OSError as err:
                error = err
            try:
                self._loop.call_soon_threadsafe(self._done, future, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _done(self, future: asyncio.Future[None], error: OSError | None) -> None:
        if error is not None and not self._broken:
            self._broken = True
            log.debug("exec stdin not written, the rest is dropped error=%s", error)
        if not future.done():
            future.set_result(None)
