"""The agent's own gRPC API (the kubelet's port 10250): ``Kubelet.ContainerLogs``, which the
master calls to proxy ``pyctl logs``, and the standard gRPC health service.

The node's InternalIP and the port this server actually bound are reported in node status
(``daemonEndpoints.kubeletEndpoint.port``), which is how the master finds it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerNotFound,
    ContainerRuntimeError,
    PodRuntime,
    Runtime,
)
from pymaster.api import services_pb2, services_pb2_grpc

log = logging.getLogger(__name__)


class ContainerLookupError(Exception):
    """The requested container cannot be served; ``code`` and the message go to the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def pick_container(pod: PodRuntime | None, pod_uid: str, name: str, node_name: str) -> ContainerInfo:
    """The newest container named ``name`` of the pod; with an empty name, the pod's only app
    container.

    Raises:
        ContainerLookupError: NOT_FOUND when the pod or container has no container on this node,
            INVALID_ARGUMENT when the name is empty and the pod has several containers.
    """
    if pod is None or not pod.containers:
        raise ContainerLookupError(
            grpc.StatusCode.NOT_FOUND, f"pod uid {pod_uid} has no containers on node {node_name}"
        )
    names = sorted({c.name for c in pod.containers if c.name != INFRA_CONTAINER_NAME})
    if not name:
        if len(names) != 1:
            raise ContainerLookupError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"container: a container name must be given for pod {pod.namespace}/{pod.name}, "
                f"choose one of: {', '.join(names)}",
            )
        name = names[0]
    container = pod.latest(name) if name != INFRA_CONTAINER_NAME else None
    if container is None:
        raise ContainerLookupError(
            grpc.StatusCode.NOT_FOUND,
            f"container {name} not found in pod {pod.namespace}/{pod.name} on node {node_name}"
            + (f"; it has: {', '.join(names)}" if names else ""),
        )
    return container


class KubeletService(services_pb2_grpc.KubeletServicer):
    """Serves container logs from the runtime.

    Args:
        runtime: the container runtime.
        node_name: this node; only its containers are served.
    """

    def __init__(self, runtime: Runtime, node_name: str):
        self._runtime = runtime
        self._node_name = node_name

    async def ContainerLogs(  # noqa: N802 (generated servicer's naming)
        self, request: services_pb2.ContainerLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.LogChunk]:
        try:
            pod = await self._runtime.get_pod(self._node_name, request.pod_uid)
            container = pick_container(pod, request.pod_uid, request.container, self._node_name)
        except ContainerLookupError as err:
            await context.abort(err.code, err.message)
        except ContainerRuntimeError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")
        tail = request.tail_lines if request.HasField("tail_lines") else None
        log.debug("serving logs uid=%s container=%s id=%s follow=%s", request.pod_uid, container.name,
                  container.id, request.follow)
        try:
            # aclosing: a caller that goes away closes the engine's stream at once, not at GC.
            async with contextlib.aclosing(
                self._runtime.logs(container.id, request.follow, tail, request.timestamps)
            ) as chunks:
                async for data in chunks:
                    yield services_pb2.LogChunk(data=data)
        except ContainerNotFound:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"container {container.name} of pod {container.pod_namespace}/{container.pod_name} "
                f"is gone from node {self._node_name}",
            )
        except ContainerRuntimeError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")


class AgentServer:
    """The grpc.aio server of the agent API.

    Args:
        address: "HOST:PORT" to listen on; port 0 picks a free one.
        runtime: the container runtime.
        node_name: this node.
    """

    def __init__(self, address: str, runtime: Runtime, node_name: str):
        self.address = address
        self._server = grpc.aio.server()
        services_pb2_grpc.add_KubeletServicer_to_server(KubeletService(runtime, node_name), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = 0

    async def start(self) -> int:
        """Binds and starts serving; returns the bound port.

        Raises:
            RuntimeError: the address could not be bound.
        """
        self.port = self._server.add_insecure_port(self.address)
        if not self.port:
            raise RuntimeError(f"cannot listen on {self.address}")
        await self._server.start()
        await self._health.set("pykube.v1.Kubelet", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """Stops serving; streams still open (followed logs) are cancelled after ``grace``."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
