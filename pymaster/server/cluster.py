"""The Cluster service: what pyctl and the Python client call (pods, nodes, logs).

Servicer methods stay thin: the rules live in pod_helpers/node_helpers,
pymaster.api.validation, the master's input limits (limits.py) and admission policy
(admission.py); errors are raised as ApiError and turned into statuses by the interceptor, which
has also authenticated and authorized the caller. Watches get one store watcher per client
stream, filtered here.

DeleteNode also removes the node's identity binding, which revokes every certificate of the node
(its agent must join again with the token), and ends the node's bound-pods streams.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import Conflict, NotFound, Unavailable, ValidationError
from pymaster.api.validation import default_pod, validate_node, validate_pod, validate_pod_update
from pymaster.controllers.node_lifecycle import NodeLeases
from pymaster.server.admission import AdmissionPolicy, admit_pod
from pymaster.server.authz import IDENTITIES
from pymaster.server.bound_pods import BoundPodsHub
from pymaster.server.limits import (
    check_grace_period,
    check_name,
    check_namespace,
    check_object_size,
    check_pod_limits,
    check_selectors,
    check_tail_lines,
)
from pymaster.server.logs_proxy import AgentCredentials, stream_container_logs
from pymaster.server.node_helpers import kubelet_address, merge_node_update
from pymaster.server.pod_helpers import (
    ObjectFilter,
    apply_delete_plan,
    keep_defaulted_fields,
    log_container,
    merge_pod_update,
    plan_pod_delete,
    prepare_new_pod,
    same_desired_state,
    watch_event_type,
)
from pymaster.store.base import Store

log = logging.getLogger(__name__)

_EVENT_TYPES = {
    "ADDED": services_pb2.ADDED,
    "MODIFIED": services_pb2.MODIFIED,
    "DELETED": services_pb2.DELETED,
}


def _namespace(namespace: str) -> str:
    return namespace or "default"


def _key(obj: objects_pb2.Pod | objects_pb2.Node) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


def _parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise ValidationError("resourceVersion", f"must be an integer, not {value!r}") from None
    if rv < 0:
        raise ValidationError("resourceVersion", "must not be negative")
    return rv


_KeyRequest = services_pb2.GetRequest | services_pb2.DeleteRequest | services_pb2.LogsRequest


def _check_key(request: _KeyRequest) -> None:
    check_namespace("namespace", request.namespace)
    check_name("name", request.name)


def _check_filter(request: services_pb2.ListRequest | services_pb2.WatchRequest) -> None:
    check_namespace("namespace", request.namespace)
    check_selectors(request.label_selector, request.field_selector)


class ClusterServicer(services_pb2_grpc.ClusterServicer):
    """pykube.v1.Cluster over a Store."""

    def __init__(
        self,
        store: Store,
        leases: NodeLeases,
        hub: BoundPodsHub,
        agent_credentials: AgentCredentials,
        admission: AdmissionPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """
        Args:
            hub: Ends a deleted node's bound-pods streams.
            agent_credentials: Returns the channel credentials for calling an agent (logs).
            admission: What pods may do beyond the safe default (default: nothing more).
        """
        self._store = store
        self._leases = leases
        self._hub = hub
        self._agent_credentials = agent_credentials
        self._admission = admission or AdmissionPolicy()
        self._clock = clock

    # ---- pods ----

    async def CreatePod(self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext) -> objects_pb2.Pod:
        check_pod_limits(request)
        pod = objects_pb2.Pod()
        pod.CopyFrom(request)
        default_pod(pod)
        validate_pod(pod)
        admit_pod(pod, self._admission)
        prepare_new_pod(pod, str(uuid.uuid4()), self._clock())
        created = await self._store.create("pods", pod)
        log.info(
            "pod created pod=%s/%s uid=%s",
            created.metadata.namespace,
            created.metadata.name,
            created.metadata.uid,
        )
        return created

    async def ApplyPod(
        self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext
    ) -> services_pb2.ApplyPodResponse:
        check_pod_limits(request)
        check_namespace("metadata.namespace", request.metadata.namespace)
        check_name("metadata.name", request.metadata.name)
        try:
            self._store.get("pods", _namespace(request.metadata.namespace), request.metadata.name)
        except NotFound:
            return services_pb2.ApplyPodResponse(pod=await self.CreatePod(request, context), action="created")
        pod, changed = await self._update_pod(request, check_rv=False)
        return services_pb2.ApplyPodResponse(pod=pod, action="configured" if changed else "unchanged")

    async def UpdatePod(self, request: objects_pb2.Pod, context: grpc.aio.ServicerContext) -> objects_pb2.Pod:
        check_pod_limits(request)
        check_namespace("metadata.namespace", request.metadata.namespace)
        check_name("metadata.name", request.metadata.name)
        pod, _ = await self._update_pod(request, check_rv=bool(request.metadata.resource_version))
        return pod

    async def _update_pod(self, request: objects_pb2.Pod, *, check_rv: bool) -> tuple[objects_pb2.Pod, bool]:
        """Writes a user's labels/annotations/spec over the stored pod (no write if the same).

        Admission runs again only when the spec changes, so a pod admitted under an older policy
        can still be relabelled (Kubernetes' Pod Security admission exempts such updates too).

        Returns:
            (the stored pod, whether it was written).
        """
        changed = False

        def update(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            nonlocal changed
            if check_rv and current.metadata.resource_version != request.metadata.resource_version:
                raise Conflict(
                    f'pods "{current.metadata.name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
            desired = objects_pb2.Pod()
            desired.CopyFrom(request)
            keep_defaulted_fields(current, desired)
            default_pod(desired)
            merged = merge_pod_update(current, desired)
            validate_pod_update(current, merged)
            if same_desired_state(current, merged):
                return None
            if merged.spec != current.spec:
                admit_pod(merged, self._admission)
            check_object_size("pod", merged)
            changed = True
            return merged

        namespace, name = _namespace(request.metadata.namespace), request.metadata.name
        pod = await self._store.mutate("pods", namespace, name, update)
        if changed:
            log.info("pod updated pod=%s/%s", namespace, name)
        return pod, changed

    async def GetPod(
        self, request: services_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Pod:
        _check_key(request)
        return self._store.get("pods", _namespace(request.namespace), request.name)

    async def ListPods(
        self, request: services_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.PodList:
        _check_filter(request)
        selection = ObjectFilter.of("pods", request)
        pods, rv = self._store.list("pods", request.namespace or None)
        return objects_pb2.PodList(items=[p for p in pods if selection.matches(p)], resource_version=str(rv))

    async def DeletePod(
        self, request: services_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Pod:
        _check_key(request)
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        if grace is not None:
            check_grace_period("gracePeriodSeconds", grace)
        namespace = _namespace(request.namespace)
        pod = self._store.get("pods", namespace, request.name)
        node_exists = bool(pod.spec.node_name) and self._node_exists(pod.spec.node_name)
        plan = plan_pod_delete(
            pod, node_exists=node_exists, grace_period=grace, force=request.force, now=self._clock()
        )
        if plan.immediate:
            deleted = await self._store.delete("pods", namespace, request.name, uid=pod.metadata.uid)
            log.info("pod deleted pod=%s/%s", namespace, request.name)
            return deleted

        def mark(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if current.metadata.uid != pod.metadata.uid:
                raise NotFound(f'pods "{request.name}" not found')
            return current if apply_delete_plan(current, plan) else None

        marked = await self._store.mutate("pods", namespace, request.name, mark)
        log.info(
            "pod marked for deletion pod=%s/%s grace_period=%d",
            namespace,
            request.name,
            marked.metadata.deletion_grace_period_seconds,
        )
        return marked

    def _node_exists(self, name: str) -> bool:
        try:
            self._store.get("nodes", "", name)
        except NotFound:
            return False
        return True

    async def WatchPods(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.PodEvent]:
        async for event_type, pod in self._watch("pods", request):
            yield services_pb2.PodEvent(type=event_type, object=pod)

    async def PodLogs(
        self, request: services_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.LogChunk]:
        _check_key(request)
        if request.HasField("tail_lines"):
            check_tail_lines("tailLines", request.tail_lines)
        pod = self._store.get("pods", _namespace(request.namespace), request.name)
        container = log_container(pod, request.container)
        node_name = pod.spec.node_name
        try:
            node = self._store.get("nodes", "", node_name)
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
        return self._store.get("nodes", "", request.name)

    async def ListNodes(
        self, request: services_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.NodeList:
        _check_filter(request)
        selection = ObjectFilter.of("nodes", request)
        nodes, rv = self._store.list("nodes")
        return objects_pb2.NodeList(
            items=[n for n in nodes if selection.matches(n)], resource_version=str(rv)
        )

    async def UpdateNode(
        self, request: objects_pb2.Node, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        name, rv = request.metadata.name, request.metadata.resource_version

        def update(current: objects_pb2.Node) -> objects_pb2.Node | None:
            if rv and current.metadata.resource_version != rv:
                raise Conflict(
                    f'nodes "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
            merged = merge_node_update(current, request)
            validate_node(merged)
            check_object_size("node", merged)
            return None if merged == current else merged

        check_object_size("node", request)
        check_name("metadata.name", name)
        node = await self._store.mutate("nodes", "", name, update)
        log.info("node updated node=%s unschedulable=%s", name, node.spec.unschedulable)
        return node

    async def DeleteNode(
        self, request: services_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.Node:
        name = request.name
        check_name("name", name)
        # The identity first: from here on no certificate of the node is accepted.
        try:
            await self._store.delete(IDENTITIES, "", name)
            released = True
        except NotFound:
            released = False
        self._hub.disconnect(name)
        self._leases.remove(name)
        try:
            node = await self._store.delete("nodes", "", name)
        except NotFound:
            if not released:
                raise
            # It joined but never registered: releasing the name is the whole deletion.
            log.info("node identity released node=%s registered=False", name)
            node = objects_pb2.Node(api_version="v1", kind="Node")
            node.metadata.name = name
            return node
        log.info("node deleted node=%s identity_released=%s", name, released)
        return node

    async def WatchNodes(
        self, request: services_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.NodeEvent]:
        async for event_type, node in self._watch("nodes", request):
            yield services_pb2.NodeEvent(type=event_type, object=node)

    # ---- watch ----

    async def _watch(
        self, kind: str, request: services_pb2.WatchRequest
    ) -> AsyncIterator[tuple[int, objects_pb2.Pod | objects_pb2.Node]]:
        """(event type, object) pairs of one client's watch: the current state first when no
        resourceVersion is given, then every change, filtered by namespace and selectors.

        Raises TooOld (OUT_OF_RANGE) if the resourceVersion is older than the event log, or if this
        watcher falls behind: the client lists again.
        """
        _check_filter(request)
        selection = ObjectFilter.of(kind, request)
        namespace = selection.namespace or None
        if request.resource_version:
            initial: list[objects_pb2.Pod | objects_pb2.Node] = []
            watch = self._store.watch(kind, _parse_rv(request.resource_version))
            # What the client holds is unknown; assume what matches now (only matters for selectors).
            held = self._store.list(kind, namespace)[0] if selection.has_selectors else []
        else:
            initial, rv = self._store.list(kind, namespace)
            watch = self._store.watch(kind, rv)
            held = initial
        try:
            for obj in initial:
                if selection.matches(obj):
                    yield services_pb2.ADDED, obj
            # The keys the client holds, tracked only when selectors can make objects enter or leave.
            sent = {_key(o) for o in held if selection.matches(o)} if selection.has_selectors else set()
            async for event in watch:
                obj = event.object
                if namespace is not None and obj.metadata.namespace != namespace:
                    continue
                if not selection.has_selectors:
                    yield _EVENT_TYPES[event.type], obj
                    continue
                key = _key(obj)
                out = watch_event_type(event.type, selection.matches(obj), key in sent)
                if out is None:
                    continue
                if out == "DELETED":
                    sent.discard(key)
                else:
                    sent.add(key)
                yield _EVENT_TYPES[out], obj
        finally:
            watch.close()
