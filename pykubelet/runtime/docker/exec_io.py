"""What both execs of the Docker runtime share (``exec_sync``, the probes' exec with a timeout,
and ``exec_stream``, ``pyctl exec``'s interactive one): creating the exec, the hijacked engine
connection its output comes over and its stdin goes into, Docker's stream framing, and the exit
code read once the output has ended.

Framing: without a TTY the output is multiplexed, each frame an 8-byte header (stream id, 3 zero
bytes, big-endian length) then the data; with a TTY it is the terminal's raw bytes.

Stdin's end of file is a half-close of the connection's write side, which needs a unix socket or
plain TCP connection to the engine (not TLS): an exec with stdin over TLS is refused up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import docker
import docker.errors
import docker.utils.socket

from pykubelet.runtime.base import ContainerNotRunning, ContainerRuntimeError
from pykubelet.runtime.docker.engine import Engine, explanation
from pykubelet.runtime.docker.streams import close_stream

log = logging.getLogger(__name__)

HEADER = struct.Struct(">BxxxL")
STDIN_ID, STDOUT_ID, STDERR_ID, SYSTEM_ERROR_ID = 0, 1, 2, 3  # Docker's stdcopy stream ids
# The exit code may lag the end of the output by a moment; a command that closed its output and
# carries on is polled less and less often.
_EXIT_POLL_SECONDS = 0.01
_EXIT_POLL_MAX_SECONDS = 0.5


def exec_creator(
    container_id: str, command: Sequence[str], stdin: bool, tty: bool = False
) -> Callable[[docker.APIClient], str]:
    """The engine call (for ``Engine.run``) creating an exec of ``command``; returns its id.

    The call raises ContainerNotRunning for a container that is not running (or paused), and
    ContainerRuntimeError for stdin over a TLS connection (see the module docstring); a missing
    container becomes ContainerNotFound through the engine's translation.
    """

    def create(api: docker.APIClient) -> str:
        if stdin and api.base_url.startswith("https://"):
            raise ContainerRuntimeError(
                "exec with stdin needs a unix socket or plain TCP connection to the engine"
            )
        try:
            created = api.exec_create(container_id, list(command), stdin=stdin, tty=tty)
        except docker.errors.APIError as err:
            if err.status_code == 409:  # not running, or paused
                raise ContainerNotRunning(
                    f"cannot exec in container {container_id[:12]}: {explanation(err)}"
                ) from err
            raise
        return str(created["Id"])

    return create


async def exit_code(engine: Engine, exec_id: str) -> int:
    """The exit code of an exec whose output has ended (polled: it may lag a moment)."""
    delay = _EXIT_POLL_SECONDS
    while True:
        state = await engine.run("inspect_exec", lambda api: api.exec_inspect(exec_id))
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        await asyncio.sleep(delay)
        delay = min(delay * 2, _EXIT_POLL_MAX_SECONDS)


class Connection:
    """The hijacked connection of one exec: reads through the buffered reader that parsed the
    HTTP response's headers (it may already hold the first output), writes and shuts down on the
    socket beneath.

    Args:
        sock: what ``exec_start(..., socket=True)`` returned.
    """

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
            # read1: what is there (at most one read of the socket), for a TTY's raw bytes.
            self._read_some: Callable[[int], bytes] = getattr(buffered, "read1", buffered.read)
        else:  # a transport without that chain: read the socket as docker-py does
            self._read = self._read_some = functools.partial(docker.utils.socket.read, sock)

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

    def read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes, as soon as there are any; b"" at end of stream."""
        return self._read_some(size)

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next multiplexed frame (stream id, data); None at end of stream."""
        header = self.read_exactly(HEADER.size)
        if header is None:
            return None
        stream_id, length = HEADER.unpack(header)
        data = self.read_exactly(length)
        return None if data is None else (stream_id, data)

    def send_all(self, data: bytes) -> None:
        """Writes to the command's stdin (blocking). Raises OSError once the connection is gone."""
        self._raw.sendall(data)

    def close_write(self) -> None:
        """Half-closes the connection: the command reads end of file. Raises OSError."""
        self._raw.shutdown(socket.SHUT_WR)

    def send_all_and_close_write(self, data: bytes) -> None:
        """Writes the command's stdin, then its end of file (exec_sync's stdin writer thread)."""
        try:
            self.send_all(data)
            self.close_write()
        except OSError as err:  # the command ended, or the connection was closed, before it read all
            log.debug("exec stdin not fully written error=%s", err)

    def close(self) -> None:
        """Ends the connection; a read or write blocked in another thread returns."""
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)  # close() alone does not wake a blocked read
        close_stream(self._sock)
        if self._response is not None:
            close_stream(self._response)
