"""The Cluster service: what pyctl and the Python client call (pods, nodes, logs).

Servicer methods stay thin: request-shape checks here, every rule about objects in the registry
(``pymaster.registry``); errors are raised as ApiError and turned into statuses by the
interceptor, which has also authenticated and authorized the caller. Watches get one store
watcher per client stream, filtered by the registry.

DeleteNode also ends the node's bound-pods streams: its certificates stop working at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import NotFound, Unavailable
from pymaster.api.limits import check_name, check_namespace, check_selectors, check_tail_lines
from pymaster.api.nodes import kubelet_address
from pymaster.registry import Registry
from pymaster.registry.pods import log_container
from pymaster.registry.watch import ObjectFilter
from pymaster.server.bound_pods import BoundPodsHub
from pymaster.server.logs_proxy import AgentCredentials, stream_container_logs

_EVENT_TYPES = {
    "ADDED": services_pb2.ADDED,
    "MODIFIED": services_pb2.MODIFIED,
    "DELETED": services_pb2.DELETED,
}

_KeyRequest = services_pb2.GetRequest | services_pb2.DeleteRequest | services_pb2.LogsRequest
_FilterRequest = services_pb2.ListRequest | services_pb2.WatchRequest


def _check_key(request: _KeyRequest) -> None:
    check_namespace("namespace", request.namespace)
    check_name("name", request.name)


def _filter(kind: str, request: _FilterRequest) -> ObjectFilter:
    """The request's selection; bad selectors fail before any response is sent."""
    check_namespace("namespace", request.namespace)
    check_selectors(request.label_selector, request.field_selector)
    return ObjectFilter(kind, request.namespace, request.label_selector, request.field_selector)


class ClusterServicer(services_pb2_grpc.ClusterServicer):
    """pykube.v1.Cluster over the registry.

    Args:
        registry: Every kind's registry.
        hub: Ends a deleted node's bound-pods streams.
        agent_credentials: Returns the channel credentials for calling an agent (logs).
    """

    def __init__(self, registry: Registry, hub: BoundPodsHub, agent_credentials: AgentCredentials):
        self._pods = registry.pods
        self._nodes = registry.nodes
        self._hub = hub
        self._agent_credentials = agent_credentials

    # ---- pods ----

    async def CreatePod(self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext) -> objects_pb2.Pod:
        return await self._pods.create(request)

    async def ApplyPod(
        self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext
    ) -> services_pb2.ApplyPodResponse:
        pod, action = await self._pods.apply(request)
        return services_pb2.ApplyPodResponse(pod=pod, action=action)

    async def UpdatePod(self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext) -> objects_pb2.Pod:
        return await self._pods.update(request)

    async def GetPod(
        self, request: services_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Pod:
        _check_key(request)
        return self._pods.get(request.namespace, request.name)

    async def ListPods(
        self, request: services_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.PodList:
        pods, rv = self._pods.list(_filter("pods", request))
        return objects_pb2.PodList(items=pods, resource_version=str(rv))

    async def DeletePod(
        self, request: services_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Pod:
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        return await self._pods.delete(request.namespace, request.name, grace, request.force)

    async def WatchPods(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.PodEvent]:
        async for event_type, pod in self._pods.watch(_filter("pods", request), request.resource_version):
            yield services_pb2.PodEvent(type=_EVENT_TYPES[event_type], object=pod)

    async def PodLogs(
        self, request: services_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.LogChunk]:
        _check_key(request)
        if request.HasField("tail_lines"):
            check_tail_lines("tailLines", request.tail_lines)
        pod = self._pods.get(request.namespace, request.name)
        container = log_container(pod, request.container)
        node_name = pod.spec.node_name
        try:
            node = self._nodes.get("", node_name)
        except NotFound:
            raise Unavailable(f"node {node_name} of pod {request.name} is not registered") from None
        address = kubelet_address(node)
        if address is None:
            raise Unavailable(f"node {node_name} has not reported its agent's address and port")
        upstream = services_pb2.ContainerLogsRequest(
            pod_uid=pod.metadata.uid,
            container=container,
            follow=request.follow,
            timestamps=request.timestamps,
        )
        if request.HasField("tail_lines"):
            upstream.tail_lines = request.tail_lines
        credentials = self._agent_credentials()
        async for chunk in stream_container_logs(node_name, address, upstream, credentials):
            yield chunk

    # ---- nodes ----

    async def GetNode(
        self, request: services_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        check_name("name", request.name)
        return self._nodes.get("", request.name)

    async def ListNodes(
        self, request: services_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.NodeList:
        nodes, rv = self._nodes.list(_filter("nodes", request))
        return objects_pb2.NodeList(items=nodes, resource_version=str(rv))

    async def UpdateNode(
        self, request: objects_pb2.Node, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        return await self._nodes.update(request)

    async def DeleteNode(
        self, request: services_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        node = await self._nodes.delete(request.name)
        self._hub.disconnect(request.name)
        return node

    async def WatchNodes(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.NodeEvent]:
        async for event_type, node in self._nodes.watch(_filter("nodes", request), request.resource_version):
            yield services_pb2.NodeEvent(type=_EVENT_TYPES[event_type], object=node)
