"""The Python client for pykube: typed async methods for every RPC of the master's Cluster and
NodeAgent services, over one grpc.aio channel.

Every other part uses it: pyctl for the Cluster service, the agent for the NodeAgent service.
gRPC errors come back as the typed exceptions of ``pymaster.api.errors`` (``NotFound``,
``ValidationError`` ...), so callers never inspect status codes themselves.

Example::

    async with Client("127.0.0.1:6443") as client:
        pod = await client.get_pod("web", namespace="default")
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from pymaster.api import errors, objects_pb2, services_pb2, services_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:6443"

# Which exception each status code becomes; anything else is a plain ApiError with that code.
_ERRORS_BY_CODE: dict[grpc.StatusCode, type[errors.ApiError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.OUT_OF_RANGE: errors.TooOld,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
}


def api_error(err: grpc.aio.AioRpcError) -> errors.ApiError:
    """Turns a gRPC error into the matching ``pymaster.api.errors`` exception."""
    code, message = err.code(), err.details() or err.code().name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, sep, detail = message.partition(": ")
        return errors.ValidationError(field, detail) if sep else errors.ValidationError("", message)
    cls = _ERRORS_BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    exc = errors.ApiError(message)
    exc.code = code
    return exc


def default_server() -> str:
    """The master's address: $PYKUBE_SERVER, else 127.0.0.1:6443."""
    return os.environ.get("PYKUBE_SERVER") or DEFAULT_SERVER


class Client:
    """An async client of the pykube master.

    Args:
        server: "HOST:PORT" of the master; defaults to $PYKUBE_SERVER or 127.0.0.1:6443.
        timeout: deadline in seconds for every unary call (streams have none).
    """

    def __init__(self, server: str | None = None, timeout: float = 10.0):
        self.server = server or default_server()
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(
            self.server,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self._cluster = services_pb2_grpc.ClusterStub(self._channel)
        self._agent = services_pb2_grpc.NodeAgentStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _unary(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as err:
            raise api_error(err) from None

    async def _stream(self, method: Any, request: Any) -> AsyncIterator[Any]:
        call = method(request)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as err:
            raise api_error(err) from None
        finally:
            call.cancel()

    # ---- pods ----

    async def create_pod(self, pod: objects_pb2.Pod) -> objects_pb2.Pod:
        return await self._unary(self._cluster.CreatePod, pod)

    async def apply_pod(self, pod: objects_pb2.Pod) -> services_pb2.ApplyPodResponse:
        """Creates the pod, or updates its labels/annotations/images; returns pod and action."""
        return await self._unary(self._cluster.ApplyPod, pod)

    async def update_pod(self, pod: objects_pb2.Pod) -> objects_pb2.Pod:
        return await self._unary(self._cluster.UpdatePod, pod)

    async def get_pod(self, name: str, namespace: str = "default") -> objects_pb2.Pod:
        request = services_pb2.GetRequest(namespace=namespace, name=name)
        return await self._unary(self._cluster.GetPod, request)

    async def list_pods(
        self, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> objects_pb2.PodList:
        """Lists pods; an empty namespace means all namespaces."""
        request = services_pb2.ListRequest(
            namespace=namespace, label_selector=label_selector, field_selector=field_selector
        )
        return await self._unary(self._cluster.ListPods, request)

    async def delete_pod(
        self,
        name: str,
        namespace: str = "default",
        grace_period_seconds: int | None = None,
        force: bool = False,
    ) -> objects_pb2.Pod:
        """Deletes gracefully; returns the pod as marked (or as removed, when removed at once)."""
        request = services_pb2.DeleteRequest(namespace=namespace, name=name, force=force)
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        return await self._unary(self._cluster.DeletePod, request)

    def watch_pods(
        self,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[services_pb2.PodEvent]:
        """Streams pod events; without resource_version, ADDED for the current pods first."""
        request = services_pb2.WatchRequest(
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
        )
        return self._stream(self._cluster.WatchPods, request)

    def pod_logs(
        self,
        name: str,
        namespace: str = "default",
        container: str = "",
        follow: bool = False,
        tail_lines: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """Streams a container's log bytes, proxied by the master from the pod's agent."""
        request = services_pb2.LogsRequest(
            namespace=namespace, name=name, container=container, follow=follow, timestamps=timestamps
        )
        if tail_lines is not None:
            request.tail_lines = tail_lines
        return self._log_bytes(request)

    async def _log_bytes(self, request: services_pb2.LogsRequest) -> AsyncIterator[bytes]:
        async for chunk in self._stream(self._cluster.PodLogs, request):
            yield chunk.data

    # ---- nodes ----

    async def get_node(self, name: str) -> objects_pb2.Node:
        return await self._unary(self._cluster.GetNode, services_pb2.GetRequest(name=name))

    async def list_nodes(self, label_selector: str = "", field_selector: str = "") -> objects_pb2.NodeList:
        request = services_pb2.ListRequest(label_selector=label_selector, field_selector=field_selector)
        return await self._unary(self._cluster.ListNodes, request)

    async def update_node(self, node: objects_pb2.Node) -> objects_pb2.Node:
        return await self._unary(self._cluster.UpdateNode, node)

    async def delete_node(self, name: str) -> objects_pb2.Node:
        return await self._unary(self._cluster.DeleteNode, services_pb2.DeleteRequest(name=name))

    def watch_nodes(
        self, label_selector: str = "", field_selector: str = "", resource_version: str = ""
    ) -> AsyncIterator[services_pb2.NodeEvent]:
        request = services_pb2.WatchRequest(
            label_selector=label_selector, field_selector=field_selector, resource_version=resource_version
        )
        return self._stream(self._cluster.WatchNodes, request)

    # ---- the agent's calls (NodeAgent service) ----

    async def register_node(self, node: objects_pb2.Node) -> services_pb2.RegisterNodeResponse:
        return await self._unary(self._agent.RegisterNode, node)

    async def renew_lease(self, node_name: str, requested_seconds: float) -> services_pb2.RenewLeaseResponse:
        """Renews the node's lease; raises NotFound when the master does not know the node."""
        request = services_pb2.RenewLeaseRequest(node_name=node_name, requested_seconds=requested_seconds)
        return await self._unary(self._agent.RenewLease, request)

    async def report_node_status(self, node_name: str, status: objects_pb2.NodeStatus) -> objects_pb2.Node:
        request = services_pb2.NodeStatusReport(node_name=node_name, status=status)
        return await self._unary(self._agent.ReportNodeStatus, request)

    def watch_bound_pods(self, node_name: str) -> AsyncIterator[services_pb2.BoundPodsEvent]:
        """Streams the pods bound to the node: a SNAPSHOT first, then UPSERT/REMOVED."""
        return self._stream(self._agent.WatchBoundPods, services_pb2.BoundPodsRequest(node_name=node_name))

    async def update_pod_status(
        self, namespace: str, name: str, uid: str, status: objects_pb2.PodStatus
    ) -> objects_pb2.Pod:
        request = services_pb2.PodStatusUpdate(namespace=namespace, name=name, uid=uid, status=status)
        return await self._unary(self._agent.UpdatePodStatus, request)

    async def confirm_pod_terminated(self, namespace: str, name: str, uid: str) -> None:
        """Tells the master every container of a pod marked for deletion is gone."""
        request = services_pb2.PodTerminated(namespace=namespace, name=name, uid=uid)
        await self._unary(self._agent.ConfirmPodTerminated, request)
