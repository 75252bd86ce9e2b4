"""Exec's upstream: run a command in a pod's container through the agent of the pod's node
(``pyctl exec``), relaying both directions of the stream.

The servicer (``cluster.ClusterServicer.Exec``) reads the caller's first message, the start
(``read_start``), checks it and resolves the pod (``exec_container``: bound, running, the
container named or the only one); ``proxy_exec`` then dials the agent over the same mutual-TLS
channel as logs (``logs_proxy.agent_channel``: the master's client certificate, the agent's
checked under the node's name), sends the start with the pod's uid, and relays:

- caller -> agent: stdin, resizes and end of input, in order, from a task of its own; a second
  start is refused (INVALID_ARGUMENT) and never reaches the agent, which only ever gets the start
  the master made; the end of the caller's stream is passed on as the end of the agent's;
- agent -> caller: stdout, stderr, then the exit code, as they come.

Either side going away ends both: a caller that cancels cancels the upstream call (the agent
closes the exec's stream), an agent error ends the caller's call with the agent's code and
message (UNAVAILABLE when the agent cannot be reached), as for logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import FailedPrecondition, ValidationError
from pymaster.api.limits import check_name, check_namespace
from pymaster.api.pods import RUNNING, TERMINAL_PHASES
from pymaster.registry.pods import log_container
from pymaster.server.logs_proxy import CONNECT_TIMEOUT_SECONDS, agent_channel, connect_agent, upstream_error

log = logging.getLogger(__name__)

# A caller that opens an exec and never says what to run holds a stream for nothing.
START_TIMEOUT_SECONDS = 30.0
MAX_COMMAND_ARGS = 4096
MAX_COMMAND_BYTES = 256 * 1024


async def read_start(
    requests: AsyncIterator[services_pb2.ExecInput], timeout: float = START_TIMEOUT_SECONDS
) -> services_pb2.ExecStart:
    """The caller's first message, which must be a well-formed start.

    Raises:
        ValidationError: no start first (or none within ``timeout`` seconds), a bad pod
            namespace or name, no command, or too big a command.
    """
    try:
        async with asyncio.timeout(timeout):
            first = await anext(requests, None)
    except TimeoutError:
        message = f"an exec must begin with its start (none within {timeout:g}s)"
        raise ValidationError("start", message) from None
    if first is None or first.WhichOneof("input") != "start":
        raise ValidationError("start", "an exec must begin with its start")
    start = first.start
    check_namespace("namespace", start.namespace)
    check_name("name", start.name)
    if not start.command:
        raise ValidationError("command", "required")
    if len(start.command) > MAX_COMMAND_ARGS or sum(len(arg) for arg in start.command) > MAX_COMMAND_BYTES:
        raise ValidationError(
            "command", f"at most {MAX_COMMAND_ARGS} arguments of {MAX_COMMAND_BYTES} bytes in all"
        )
    return start


def exec_container(pod: objects_pb2.Pod, container: str) -> str:
    """The container an exec in ``pod`` means: chosen like logs' (named, or the only one), in a
    pod that is bound and running (kubectl's rule for completed pods).

    Raises:
        FailedPrecondition: the pod is not scheduled, not running yet, or completed.
        ValidationError: on ``container``: none named and several exist, or an unknown name.
    """
    name = log_container(pod, container)
    phase = pod.status.phase or "Pending"
    if phase in TERMINAL_PHASES:
        raise FailedPrecondition(f"cannot exec into a container in a completed pod; current phase is {phase}")
    if phase != RUNNING:
        raise FailedPrecondition(f"pod {pod.metadata.name} is not running; current phase is {phase}")
    return name


def upstream_start(
    pod: objects_pb2.Pod, container: str, start: services_pb2.ExecStart
) -> services_pb2.ExecStart:
    """The start the agent gets: the pod by uid (not by name: a pod re-created under the same name
    meanwhile is another pod), the chosen container, the caller's command and options."""
    upstream = services_pb2.ExecStart(
        pod_uid=pod.metadata.uid, container=container, command=start.command, stdin=start.stdin, tty=start.tty
    )
    if start.HasField("size"):
        upstream.size.CopyFrom(start.size)
    return upstream


async def proxy_exec(
    node_name: str,
    address: str,
    start: services_pb2.ExecStart,
    requests: AsyncIterator[services_pb2.ExecInput],
    credentials: grpc.ChannelCredentials,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> AsyncIterator[services_pb2.ExecOutput]:
    """Runs the exec ``start`` on the agent at ``address``, relaying the caller's ``requests``
    (what follows its start) up and yielding the agent's replies.

    Args:
        credentials: The master's mTLS channel credentials for agents; the agent's certificate
            must name ``node_name``.

    Raises:
        ValidationError: the caller sent a second start.
        Unavailable: the agent cannot be reached, or the TLS handshake failed.
        ApiError: the agent's own error (e.g. FAILED_PRECONDITION for a container that is not
            running), same code and message.
    """
    async with agent_channel(node_name, address, credentials) as channel:
        await connect_agent(channel, node_name, address, connect_timeout)
        call = services_pb2_grpc.KubeletStub(channel).Exec()
        relay = _InputRelay(requests, call)
        relaying: asyncio.Task[None] | None = None
        try:
            await call.write(services_pb2.ExecInput(start=start))
            relaying = asyncio.create_task(relay.run())
            try:
                async for output in call:
                    yield output
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if relay.error is None or (task is not None and task.cancelling()):
                    raise
            if relay.error is not None:  # the relay cancelled the upstream call
                raise relay.error
        except grpc.aio.AioRpcError as err:
            raise upstream_error(node_name, address, err) from None
        finally:
            call.cancel()
            if relaying is not None:
                relaying.cancel()
                await asyncio.gather(relaying, return_exceptions=True)


class _InputRelay:
    """Writes what the caller sends after its start to the agent's call, in order; a second start
    (or a message that did not decode) is kept in ``error`` and cancels the call (the agent never
    sees it)."""

    def __init__(self, requests: AsyncIterator[services_pb2.ExecInput], call: grpc.aio.StreamStreamCall):
        self.error: ValidationError | None = None
        self._requests = requests
        self._call = call

    async def run(self) -> None:
        try:
            async for message in self._requests:
                if message.WhichOneof("input") == "start":
                    raise ValidationError("start", "only the first message of an exec may start it")
                await self._call.write(message)
            await self._call.done_writing()
        except ValidationError as err:  # also a message that did not decode (the interceptor's)
            self.error = err
            self._call.cancel()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as err:
            # The upstream call ended (the command exited, the agent failed): its reader reports it.
            log.debug("exec input not relayed error=%s", type(err).__name__)

