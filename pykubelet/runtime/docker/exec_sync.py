"""``exec`` of the Docker runtime (CRI's ExecSync): run a command in a running container and
collect its exit code and its stdout and stderr, separately, within a timeout.

The command's output comes over a hijacked engine connection in Docker's multiplexed framing
(``exec_io``: an 8-byte header, then the data), read by a thread of its own through
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
import threading
from collections.abc import Sequence

from pykubelet.runtime.base import ContainerRuntimeError, ExecResult
from pykubelet.runtime.docker.engine import DOCKER_ERRORS, Engine, translate
from pykubelet.runtime.docker.exec_io import (
    STDERR_ID,
    STDOUT_ID,
    SYSTEM_ERROR_ID,
    Connection,
    exec_creator,
    exit_code,
)
from pykubelet.runtime.docker.streams import Pump, Streams

log = logging.getLogger(__name__)

OUTPUT_CAP = 1 << 20  # bytes kept of each of stdout and stderr


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
    output: dict[int, list[bytes]] = {STDOUT_ID: [], STDERR_ID: []}

    def result(code: int, timed_out: bool = False) -> ExecResult:
        return ExecResult(code, b"".join(output[STDOUT_ID]), b"".join(output[STDERR_ID]), timed_out)

    try:
        async with asyncio.timeout(timeout):
            exec_id = await engine.run("create_exec", exec_creator(container_id, command, stdin is not None))
            body = functools.partial(_read_output, engine, exec_id, stdin)
            frames = streams.open(f"docker-exec-{container_id[:12]}", body, maxsize=64)
            async with contextlib.aclosing(frames):
                async for stream_type, data in frames:
                    output[stream_type].append(data)
            return result(await exit_code(engine, exec_id))
    except TimeoutError:
        log.info("exec timed out, the command is left running container=%s command=%r timeout=%s",
                 container_id[:12], list(command), timeout)
        return result(-1, timed_out=True)


def _read_output(engine: Engine, exec_id: str, stdin: bytes | None, pump: Pump) -> None:
    """The reader thread: starts the exec, feeds its stdin, puts (stream, bytes) frames."""
    connection = Connection(engine.call("start_exec", lambda api: api.exec_start(exec_id, socket=True)))
    if not pump.attach(connection):
        return
    if stdin is not None:
        writer = connection.send_all_and_close_write
        name = f"docker-exec-stdin-{exec_id[:12]}"
        threading.Thread(target=writer, args=(stdin,), name=name, daemon=True).start()
    kept = {STDOUT_ID: 0, STDERR_ID: 0}
    try:
        while (frame := connection.read_frame()) is not None:
            stream_type, data = frame
            if stream_type == SYSTEM_ERROR_ID:  # the engine's own error, in the stream
                raise ContainerRuntimeError(f"exec failed: {data.decode(errors='replace')}")
            room = OUTPUT_CAP - kept.get(stream_type, OUTPUT_CAP)  # stdin echo or unknown: dropped
            if room > 0 and data:
                kept[stream_type] += min(room, len(data))
                if not pump.put((stream_type, data[:room])):
                    return
    except (*DOCKER_ERRORS, OSError) as err:  # the engine went away mid-stream
        raise translate(err, ContainerRuntimeError) from err
