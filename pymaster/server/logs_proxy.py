"""PodLogs' upstream: stream a container's log from the agent of the pod's node; and the channel
to an agent that Exec's upstream (``exec_proxy``) shares.

The master dials the agent's own gRPC API (Kubelet.ContainerLogs) at the node's InternalIP and
kubelet endpoint port, one channel per request (logs are rare next to watches), and relays the
chunks. If the caller goes away, the relay is cancelled and so is the upstream call.

The channel is mutual TLS: the master presents its client certificate (CN=system:pymaster,
O=system:masters, the only one the agent accepts) and checks the agent's certificate against the
cluster CA under the node's name (node certificates carry it as a DNS SAN), whatever address the
node reported: a node cannot point the master at another node's agent and be believed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from pymaster.api import services_pb2, services_pb2_grpc
from pymaster.api.errors import ApiError, Unavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
# Log chunks are small; anything bigger from an agent is refused rather than buffered.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

AgentCredentials = Callable[[], grpc.ChannelCredentials]


async def stream_container_logs(
    node_name: str,
    address: str,
    request: services_pb2.ContainerLogsRequest,
    credentials: grpc.ChannelCredentials,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> AsyncIterator[services_pb2.LogChunk]:
    """Yields the log chunks of one container from the agent at ``address``.

    Args:
        credentials: The master's mTLS channel credentials for agents; the agent's certificate
            must name ``node_name``.

    Raises:
        Unavailable: the agent cannot be reached, or the TLS handshake failed.
        ApiError: the agent's own error (e.g. NOT_FOUND for an unknown container), same code and
            message.
    """
    async with agent_channel(node_name, address, credentials) as channel:
        await connect_agent(channel, node_name, address, connect_timeout)
        call = services_pb2_grpc.KubeletStub(channel).ContainerLogs(request)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as err:
            raise upstream_error(node_name, address, err) from None
        finally:
            call.cancel()


def agent_channel(node_name: str, address: str, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    """A channel to the agent of ``node_name`` at ``address``: mutual TLS with the master's client
    certificate, the agent's certificate checked under the node's name."""
    options = [
        ("grpc.ssl_target_name_override", node_name),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.secure_channel(address, credentials, options=options)


async def connect_agent(channel: grpc.aio.Channel, node_name: str, address: str, timeout: float) -> None:
    """Waits until the channel is connected; fails fast on the first failed attempt (connection
    refused) instead of retrying, and after ``timeout`` for an address that does not answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            raise Unavailable(
                f"cannot reach the agent of node {node_name} at {address}: "
                "connection or TLS handshake failed"
            )
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), timeout=deadline - loop.time())
        except TimeoutError:
            raise Unavailable(
                f"cannot reach the agent of node {node_name} at {address}: no connection within {timeout:g}s"
            ) from None
        state = channel.get_state(try_to_connect=True)


def upstream_error(node_name: str, address: str, err: grpc.aio.AioRpcError) -> ApiError:
    """The agent's error as the master's: its code and message, UNAVAILABLE naming the agent."""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"cannot reach the agent of node {node_name} at {address}: {err.details()}")
    error = ApiError(err.details() or err.code().name)
    error.code = err.code()
    return error
