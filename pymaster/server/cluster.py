"""The Cluster service: what pyctl and the Python client call that is not an object verb (those
are the Resources service's): a container's logs and exec (``pyctl exec``), proxied from the
agent of the pod's node (``logs_proxy``, ``exec_proxy``). Exec is admin only: the role table
gives nodes no Cluster method.

Servicer methods stay thin: request-shape checks here, every rule about objects in the registry
(``pymaster.registry``); errors are raised as ApiError and turned into statuses by the
interceptor, which has also authenticated and authorized the caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import NotFound, Unavailable
from pymaster.api.limits import check_name, check_namespace, check_tail_lines
from pymaster.api.nodes import kubelet_address
from pymaster.registry import Registry
from pymaster.registry.pods import log_container
from pymaster.server import authz
from pymaster.server.exec_proxy import exec_container, proxy_exec, read_start, upstream_start
from pymaster.server.logs_proxy import AgentCredentials, stream_container_logs

log = logging.getLogger(__name__)


class ClusterServicer(services_pb2_grpc.ClusterServicer):
    """pykube.v1.Cluster over the registry.

    Args:
        registry: Every kind's registry.
        agent_credentials: Returns the channel credentials for calling an agent (logs, exec).
    """

    def __init__(self, registry: Registry, agent_credentials: AgentCredentials):
        self._pods = registry.pods
        self._nodes = registry.nodes
        self._agent_credentials = agent_credentials

    async def PodLogs(
        self, request: services_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.LogChunk]:
        check_namespace("namespace", request.namespace)
        check_name("name", request.name)
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

    async def Exec(
        self, request_iterator: AsyncIterator[services_pb2.ExecInput], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.ExecOutput]:
        requests = aiter(request_iterator)
        start = await read_start(requests)
        pod = self._pods.get(start.namespace, start.name)
        container = exec_container(pod, start.container)
        node_name, address = self._agent_of(pod)
        # Exec is the one call that acts inside a container: keep who ran what, where.
        log.info(
            "exec pod=%s/%s container=%s node=%s identity=%s command=%r stdin=%s tty=%s",
            pod.metadata.namespace, pod.metadata.name, container, node_name, authz.current_identity(),
            list(start.command), start.stdin, start.tty,
        )
        upstream = upstream_start(pod, container, start)
        async for output in proxy_exec(node_name, address, upstream, requests, self._agent_credentials()):
            yield output

    def _agent_of(self, pod: objects_pb2.Pod) -> tuple[str, str]:
        """The node of a bound pod and its agent's address.

        Raises:
            Unavailable: the node is not registered, or has not reported its agent's address.
        """
        node_name = pod.spec.node_name
        try:
            node = self._nodes.get("", node_name)
        except NotFound:
            raise Unavailable(f"node {node_name} of pod {pod.metadata.name} is not registered") from None
        address = kubelet_address(node)
        if address is None:
            raise Unavailable(f"node {node_name} has not reported its agent's address and port")
        return node_name, address
