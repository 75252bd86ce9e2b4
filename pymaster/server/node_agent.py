"""The NodeAgent service: what every pykubelet calls.

- RegisterNode creates or refreshes the node object and starts its lease;
- RenewLease only touches the in-memory lease table (no store write), except when the node
  comes back from Ready=Unknown; it hands out the next period (swarmkit-style heartbeat);
- ReportNodeStatus writes the agent's resources and usage (and counts as a renewal);
- WatchBoundPods streams the pods bound to the node from the BoundPodsHub;
- UpdatePodStatus / ConfirmPodTerminated write what the agent observed of its pods;
- RenewCertificate signs a new certificate for the calling node's own identity and key.

The interceptor has authenticated the caller and checked the role table (a node only acts on
itself and its pods); the pod writes check the binding again inside the store's write, so a pod
re-bound between the check and the write is never touched by the old node.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    Forbidden,
    NotFound,
)
from pymaster.api.validation import validate_node
from pymaster.controllers.node_lifecycle import NodeLeases
from pymaster.server.authz import current_identity
from pymaster.server.bootstrap import NodeCertificates, parse_csr
from pymaster.server.bound_pods import BoundPodsHub
from pymaster.server.limits import (
    check_finite,
    check_name,
    check_namespace,
    check_object_size,
    check_pod_status,
    check_timestamps,
)
from pymaster.server.node_helpers import (
    apply_status_report,
    mark_ready,
    merge_registration,
    next_renew_seconds,
)
from pymaster.server.pod_helpers import merge_agent_status
from pymaster.store.base import Store

log = logging.getLogger(__name__)


def _check_pod_node(pod: objects_pb2.Pod, verb: str) -> None:
    """Refuses a node caller acting on a pod not bound to it (the role table checked before the
    write; this holds under the write lock)."""
    identity = current_identity()
    if identity is not None and identity.kind == "node" and pod.spec.node_name != identity.name:
        meta = pod.metadata
        raise Forbidden(
            f'node "{identity.name}" may not {verb} pod {meta.namespace}/{meta.name} '
            f'bound to node "{pod.spec.node_name}"'
        )


class NodeAgentServicer(services_pb2_grpc.NodeAgentServicer):
    """pykube.v1.NodeAgent over a Store, the lease table and the bound-pods hub."""

    def __init__(
        self,
        store: Store,
        leases: NodeLeases,
        hub: BoundPodsHub,
        certificates: NodeCertificates,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self._store = store
        self._leases = leases
        self._hub = hub
        self._certificates = certificates
        self._clock = clock
        self._rng = rng or random.Random()

    async def RegisterNode(
        self, request: objects_pb2.Node, context: grpc.aio.ServicerContext
    ) -> services_pb2.RegisterNodeResponse:
        name = request.metadata.name
        check_object_size("node", request)
        validate_node(request)
        check_timestamps("status", request.status)
        now = self._clock()
        new_uid = str(uuid.uuid4())
        try:
            node = await self._store.create("nodes", merge_registration(None, request, new_uid, now))
        except AlreadyExists:
            node = await self._store.mutate(
                "nodes", "", name, lambda current: merge_registration(current, request, new_uid, now)
            )
        self._leases.renew(name)
        log.info(
            "node registered node=%s uid=%s new=%s", name, node.metadata.uid, node.metadata.uid == new_uid
        )
        # 0 = keep the agent's configured periods; RenewLease replies carry the master's choice.
        return services_pb2.RegisterNodeResponse(node=node, lease_period_seconds=0, status_period_seconds=0)

    async def RenewLease(
        self, request: services_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> services_pb2.RenewLeaseResponse:
        name = request.node_name
        check_name("nodeName", name)
        check_finite("requestedSeconds", request.requested_seconds)
        try:
            self._store.get("nodes", "", name)
        except NotFound:
            self._leases.remove(name)
            raise NotFound(f"node {name} is not registered; register again") from None
        if self._leases.renew(name):
            await self._set_ready(name)
        period = next_renew_seconds(request.requested_seconds, self._leases.grace_period, self._rng.random())
        return services_pb2.RenewLeaseResponse(next_renew_seconds=period)

    async def _set_ready(self, name: str) -> None:
        now = self._clock()

        def ready(node: objects_pb2.Node) -> objects_pb2.Node | None:
            return node if mark_ready(node, now) else None

        await self._store.mutate("nodes", "", name, ready)
        log.info("node lease renewed after expiry node=%s ready=True", name)

    async def ReportNodeStatus(
        self, request: services_pb2.NodeStatusReport, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        name, now = request.node_name, self._clock()
        check_name("nodeName", name)
        check_timestamps("status", request.status)

        def report(node: objects_pb2.Node) -> objects_pb2.Node:
            apply_status_report(node, request.status, now)
            validate_node(node)
            check_object_size("node", node)
            return node

        node = await self._store.mutate("nodes", "", name, report)
        self._leases.renew(name)
        return node

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
        check_namespace("namespace", request.namespace)
        check_name("name", request.name)
        check_pod_status(request.status)

        def update(pod: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if request.uid and pod.metadata.uid != request.uid:
                raise NotFound(f'pods "{request.name}" with uid {request.uid} not found')
            _check_pod_node(pod, "update")
            status = merge_agent_status(pod.status, request.status)
            if status == pod.status:
                return None
            pod.status.CopyFrom(status)
            check_object_size("pod", pod)
            return pod

        return await self._store.mutate("pods", request.namespace or "default", request.name, update)

    async def ConfirmPodTerminated(
        self, request: services_pb2.PodTerminated, context: grpc.aio.ServicerContext
    ) -> services_pb2.Empty:
        check_namespace("namespace", request.namespace)
        check_name("name", request.name)
        namespace = request.namespace or "default"
        try:
            pod = self._store.get("pods", namespace, request.name)
        except NotFound:
            return services_pb2.Empty()
        if pod.metadata.uid != request.uid or not pod.metadata.HasField("deletion_timestamp"):
            return services_pb2.Empty()
        # No await since the get: the pod is still the one checked (the uid pins it for the delete).
        _check_pod_node(pod, "delete")
        try:
            await self._store.delete("pods", namespace, request.name, uid=request.uid)
        except (NotFound, Conflict):
            return services_pb2.Empty()
        log.info("pod terminated and removed pod=%s/%s uid=%s", namespace, request.name, request.uid)
        return services_pb2.Empty()

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
