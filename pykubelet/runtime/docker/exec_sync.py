"""``exec`` of the Docker runtime (CRI's ExecSync): run a command in a running container and
collect its exit code and its stdout and stderr, separately, within a timeout.

The command's output comes over a hijacked engine connection in Docker's multiplexed framing
(an 8-byte header: stream, 3 zero bytes, big-endian length), read by a thread of its own through
the stream pump, so a command that takes long holds no worker of the engine's pool. Each stream
is kept up to ``OUTPUT_CAP`` bytes; the rest is read and dropped, so a chatty command neither
exhausts memory nor blocks on a full pipe.

The timeout covers the whole call. When it expires the connection is closed and the result says
``timed_out``; the process itself is left running, since the Docker API cannot kill an exec'd
process (the kubelet's exec probes behave the same with dockershim). With ``stdin`` the data is
written, then the connection's write side is closed so the command reads end of file; that
half-close needs a unix socket or plain TCP connection to the engine (not TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import docker
import docker.errors
import docker.utils.socket

from pykubelet.runtime.base import ContainerRuntimeError, ExecResult
from pykubelet.runtime.docker.engine import DOCKER_ERRORS, Engine, explanation, translate
from pykubelet.runtime.docker.streams import Pump, Streams, close_stream

log = logging.getLogger(__name__)

OUTPUT_CAP = 1 << 20  # bytes kept of each of stdout and stderr
_HEADER = struct.Struct(">BxxxL")
_STDOUT, _STDERR, _SYSTEM_ERROR = 1, 2, 3  # Docker's stdcopy stream ids
_EXIT_POLL_SECONDS = 0.01  # the exit code may lag the end of the output by a moment


async def exec_sync(
    engine: Engine,
    streams: Streams,
    container_id: str,
    command: Sequence[str],
    timeout: float,
    stdin: bytes | None,
) -> ExecResult:
    """Runs ``command`` in the running container ``container_id`` (see the module docstring).

    Raises:
        ContainerNotFound: no such container.
        ContainerRuntimeError: the container is not running (or paused), or Docker refused.
        RuntimeUnavailable: the engine did not answer.
    """
    output: dict[int, list[bytes]] = {_STDOUT: [], _STDERR: []}

    def result(exit_code: int, timed_out: bool = False) -> ExecResult:
        return ExecResult(exit_code, b"".join(output[_STDOUT]), b"".join(output[_STDERR]), timed_out)

    try:
        async with asyncio.timeout(timeout):
            exec_id = await engine.run("create_exec", _creator(container_id, command, stdin))
            body = functools.partial(_read_output, engine, exec_id, stdin)
            frames = streams.open(f"docker-exec-{container_id[:12]}", body, maxsize=64)
            async with contextlib.aclosing(frames):
                async for stream_type, data in frames:
                    output[stream_type].append(data)
            return result(await _exit_code(engine, exec_id))
    except TimeoutError:
        log.info("exec timed out, the command is left running container=%s command=%r timeout=%s",
                 container_id[:12], list(command), timeout)
        return result(-1, timed_out=True)


def _creator(
    container_id: str, command: Sequence[str], stdin: bytes | None
) -> Callable[[docker.APIClient], str]:
    def create(api: docker.APIClient) -> str:
        if stdin is not None and api.base_url.startswith("https://"):
            raise ContainerRuntimeError(
                "exec with stdin needs a unix socket or plain TCP connection to the engine"
            )
        try:
            created = api.exec_create(container_id, list(command), stdin=stdin is not None)
        except docker.errors.APIError as err:
            if err.status_code == 409:  # not running, or paused
                raise ContainerRuntimeError(
                    f"cannot exec in container {container_id[:12]}: {explanation(err)}"
                ) from err
            raise
        return str(created["Id"])

    return create


def _read_output(engine: Engine, exec_id: str, stdin: bytes | None, pump: Pump) -> None:
    """The reader thread: starts the exec, feeds its stdin, puts (stream, bytes) frames."""
    connection = _Connection(engine.call("start_exec", lambda api: api.exec_start(exec_id, socket=True)))
    if not pump.attach(connection):
        return
    if stdin is not None:
        writer = connection.send_all_and_close_write
        name = f"docker-exec-stdin-{exec_id[:12]}"
        threading.Thread(target=writer, args=(stdin,), name=name, daemon=True).start()
    kept = {_STDOUT: 0, _STDERR: 0}
    try:
        while (header := connection.read_exactly(_HEADER.size)) is not None:
            stream_type, length = _HEADER.unpack(header)
            data = connection.read_exactly(length)
            if data is None:
                return
            if stream_type == _SYSTEM_ERROR:  # the engine's own error, in the stream
                raise ContainerRuntimeError(f"exec failed: {data.decode(errors='replace')}")
            room = OUTPUT_CAP - kept.get(stream_type, OUTPUT_CAP)  # stdin echo or unknown: dropped
            if room > 0 and data:
                kept[stream_type] += min(room, len(data))
                if not pump.put((stream_type, data[:room])):
                    return
    except (*DOCKER_ERRORS, OSError) as err:  # the engine went away mid-stream
        raise translate(err, ContainerRuntimeError) from err


async def _exit_code(engine: Engine, exec_id: str) -> int:
    while True:
        state = await engine.run("inspect_exec", lambda api: api.exec_inspect(exec_id))
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        await asyncio.sleep(_EXIT_POLL_SECONDS)


class _Connection:
    """The hijacked connection of one exec: reads through the buffered reader that parsed the
    HTTP response's headers (it may already hold the first output), writes and shuts down on the
    socket beneath."""

    def __init__(self, sock: Any):
        self._sock = sock
        self._response = getattr(sock, "_response", None)  # docker-py keeps it there
        self._raw: socket.socket = getattr(sock, "_sock", sock)  # a SocketIO's socket
        self._raw.settimeout(None)  # a quiet command is fine: the caller's timeout closes us
        # urllib3's response -> http.client's response -> its buffered reader of the socket. The
        # urllib3 response itself reads nothing: a 101 response has no body for http.client.
        buffered = getattr(getattr(getattr(self._response, "raw", None), "_fp", None), "fp", None)
        if buffered is not None:
            self._read: Callable[[int], bytes] = buffered.read
        else:  # a transport without that chain: read the socket as docker-py does
            self._read = functools.partial(docker.utils.socket.read, sock)

    def read_exactly(self, size: int) -> bytes | None:
        """``size`` bytes; None at end of stream (also in the middle of a frame)."""
        chunks, missing = [], size
        while missing > 0:
            chunk = self._read(missing)
            if not chunk:
                return None
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def send_all_and_close_write(self, data: bytes) -> None:
        """Writes the command's stdin, then its end of file (the stdin writer thread)."""
        try:
            self._raw.sendall(data)
            self._raw.shutdown(socket.SHUT_WR)
        except OSError as err:  # the command ended, or the connection was closed, before it read all
            log.debug("exec stdin not fully written error=%s", err)

    def close(self) -> None:
        """Ends the connection; a read blocked in another thread returns."""
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked read
        close_stream(self._sock)
        if self._response is not None:
            close_stream(self._response)
