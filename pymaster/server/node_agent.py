"""The NodeAgent service: what every pykubelet calls.

- RegisterNode creates or refreshes the node object and starts its lease;
- RenewLease only touches the in-memory lease table (no store write), except when the node
  comes back from Ready=Unknown; it hands out the next period (swarmkit-style heartbeat);
- ReportNodeStatus writes the agent's resources and usage (and counts as a renewal);
- WatchBoundPods streams the pods bound to the node from the BoundPodsHub;
- UpdatePodStatus / ConfirmPodTerminated write what the agent observed of its pods;
- RecordEvents stores events about the node and its pods (folded, rate-limited per node);
- RenewCertificate signs a new certificate for the calling node's own identity and key.

The interceptor has authenticated the caller and checked the role table (a node only acts on
itself and its pods); the registry's pod writes check the binding again inside the store's write,
so a pod re-bound between the check and the write is never touched by the old node.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import FailedPrecondition
from pymaster.api.limits import check_name
from pymaster.registry import Registry
from pymaster.server.authz import current_identity
from pymaster.server.bootstrap import NodeCertificates, parse_csr
from pymaster.server.bound_pods import BoundPodsHub

log = logging.getLogger(__name__)


def _calling_node() -> str | None:
    """The node making this call, or None for the admin and the master (no binding check)."""
    identity = current_identity()
    return identity.name if identity is not None and identity.kind == "node" else None


class NodeAgentServicer(services_pb2_grpc.NodeAgentServicer):
    """pykube.v1.NodeAgent over the registry and the bound-pods hub."""

    def __init__(self, registry: Registry, hub: BoundPodsHub, certificates: NodeCertificates,
                 lease_port: int = 0):
        self._pods = registry.pods
        self._nodes = registry.nodes
        self._events = registry.events
        self._hub = hub
        self._certificates = certificates
        self._network = registry.network.to_proto()
        self._lease_port = lease_port  # the lease lane's, told with every renewal taken here

    async def RegisterNode(
        self, request: objects_pb2.Node, context: grpc.aio.ServicerContext
    ) -> services_pb2.RegisterNodeResponse:
        node = await self._nodes.register(request)
        return services_pb2.RegisterNodeResponse(node=node, network=self._network)

    async def RenewLease(
        self, request: services_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> services_pb2.RenewLeaseResponse:
        period = await self._nodes.renew_lease(request.node_name, request.requested_seconds)
        return services_pb2.RenewLeaseResponse(next_renew_seconds=period, lease_port=self._lease_port)

    async def ReportNodeStatus(
        self, request: services_pb2.NodeStatusReport, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        return await self._nodes.report_status(request.node_name, request.status)

    async def WatchBoundPods(
        self, request: services_pb2.BoundPodsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.BoundPodsEvent]:
        check_name("nodeName", request.node_name)
        subscription = await self._hub.subscribe(request.node_name)
        log.info("agent watching bound pods node=%s", request.node_name)
        try:
            async for event in subscription:
                yield event
        finally:
            subscription.close()
            log.info("agent stopped watching bound pods node=%s", request.node_name)

    async def UpdatePodStatus(
        self, request: services_pb2.PodStatusUpdate, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Pod:
        return await self._pods.update_status(
            request.namespace, request.name, request.uid, request.status, _calling_node()
        )

    async def ConfirmPodTerminated(
        self, request: services_pb2.PodTerminated, context: grpc.aio.ServicerContext
    ) -> services_pb2.Empty:
        await self._pods.confirm_terminated(request.namespace, request.name, request.uid, _calling_node())
        return services_pb2.Empty()

    async def RecordEvents(
        self, request: services_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> services_pb2.RecordEventsResponse:
        accepted = await self._events.record(request.events, _calling_node())
        return services_pb2.RecordEventsResponse(accepted=accepted)

    async def RenewCertificate(
        self, request: services_pb2.CertificateSigningRequest, context: grpc.aio.ServicerContext
    ) -> services_pb2.CertificateResponse:
        identity = current_identity()
        if identity is None or identity.kind != "node":
            raise FailedPrecondition(
                f"RenewCertificate renews node certificates; the caller is {identity or 'unknown'}"
            )
        csr = parse_csr("csrPem", request.csr_pem)
        self._certificates.check_bound(identity.name, csr.public_key_sha256)
        cert_pem = self._certificates.sign(identity.name, request.csr_pem, csr)
        log.info("node certificate renewed node=%s", identity.name)
        return services_pb2.CertificateResponse(certificate_pem=cert_pem, ca_pem=self._certificates.ca_pem)
