"""The EndpointSlice controller (Kubernetes' ``pkg/controller/endpointslice``): keeps, for each
Service with a selector, ``discovery.k8s.io/v1`` EndpointSlices listing the pods behind it.

A sync of one Service, level-triggered from the informers' caches:

1. the endpoints: every pod of the Service's namespace whose labels match its selector, that has
   a ``status.podIP`` and is not terminal (Succeeded/Failed). Conditions, as Kubernetes sets them:
   ``ready`` = the pod's Ready condition is True and it is not terminating (always true with
   ``publishNotReadyAddresses``), ``serving`` = Ready whatever the termination,
   ``terminating`` = deletionTimestamp set; ``nodeName`` and ``targetRef`` (the Pod);
2. the ports, per pod: a Service port's targetPort by number is that number; by name it is the
   port of that name (and protocol) among the pod's containers, so pods may differ; a pod without
   the named port is left out of that port. Pods with the same resolved ports share slices;
3. the slices: at most 100 endpoints each; endpoints stay in the slice that holds them, new ones
   fill the free room first, then new slices (named ``<svc>-<5 random chars>``) are made; slices
   left empty are deleted, except one placeholder with no endpoints for a Service with none (as
   Kubernetes keeps). Each carries the labels ``kubernetes.io/service-name`` and
   ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`` (plus the
   Service's labels, and ``service.kubernetes.io/headless`` for a headless one) and an
   ownerReference to the Service (controller: true). Only slices that change are written.

Services without a selector are left to their users: the controller touches no slice without its
managed-by label. Choices where Kubernetes leaves room: when a Service is deleted, or its selector
removed, the controller deletes the slices it manages for it at once (the garbage collector would
also delete them by their ownerReference).

Every write is through the EndpointSlice registry. The informer may be a step behind the
controller's own writes: each sync remembers the resourceVersions it wrote (and the names it
deleted), and the next sync of that Service waits until the cache has caught up (kube's
endpointSliceTracker), so no slice is ever created twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import NotFound
from pymaster.api.pods import READY, TERMINAL_PHASES
from pymaster.api.service_validation import MAX_ENDPOINTS, NONE
from pymaster.api.workloads import controller_reference, generate_name
from pymaster.controllers.informer import InformerFactory, by_namespace, split_key
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_INDEX = "service"
CATCH_UP_SECONDS = 0.05  # how soon a sync looks again when the cache is behind its own writes

PortKey = tuple[tuple[str, str, int, str], ...]  # (name, protocol, port, appProtocol) per port


def managed_service_key(endpoint_slice: Message) -> list[str]:
    """Index value: "namespace/service" of a slice this controller manages."""
    labels = endpoint_slice.metadata.labels
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or SERVICE_NAME_LABEL not in labels:
        return []
    return [f"{endpoint_slice.metadata.namespace}/{labels[SERVICE_NAME_LABEL]}"]


def selects(service: objects_pb2.Service, labels) -> bool:
    """Whether a Service's (non-empty) selector matches ``labels``."""
    selector = service.spec.selector
    return bool(selector) and all(key in labels and labels[key] == value for key, value in selector.items())


def pod_is_ready(pod: objects_pb2.Pod) -> bool:
    condition = find_condition(pod.status.conditions, READY)
    return condition is not None and condition.status == "True"


def resolve_ports(service: objects_pb2.Service, pod: objects_pb2.Pod) -> PortKey:
    """The Service's ports as this pod serves them (a named targetPort: the container port of
    that name and protocol; left out when the pod has none)."""
    resolved = []
    for port in service.spec.ports:
        protocol = port.protocol or "TCP"
        target = port.target_port
        if target.WhichOneof("value") == "str_value":
            number = next(
                (p.container_port for c in pod.spec.containers for p in c.ports
                 if p.name == target.str_value and (p.protocol or "TCP") == protocol),
                0,
            )
            if not number:
                continue
        else:
            number = target.int_value or port.port
        app_protocol = port.app_protocol if port.HasField("app_protocol") else ""
        resolved.append((port.name, protocol, number, app_protocol))
    return tuple(resolved)


def endpoint_for(service: objects_pb2.Service, pod: objects_pb2.Pod) -> objects_pb2.Endpoint:
    """A pod's endpoint, with Kubernetes' conditions."""
    ready = pod_is_ready(pod)
    terminating = pod.metadata.HasField("deletion_timestamp")
    publish = service.spec.publish_not_ready_addresses
    endpoint = objects_pb2.Endpoint(
        addresses=[pod.status.pod_ip],
        conditions=objects_pb2.EndpointConditions(
            ready=publish or (ready and not terminating), serving=publish or ready, terminating=terminating,
        ),
        target_ref=objects_pb2.ObjectReference(
            kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid,
        ),
    )
    if pod.spec.node_name:
        endpoint.node_name = pod.spec.node_name
    return endpoint


def desired_endpoints(
    service: objects_pb2.Service, pods: Iterable[objects_pb2.Pod]
) -> dict[PortKey, dict[str, objects_pb2.Endpoint]]:
    """Per resolved port set, the endpoints (by pod name) the Service should list."""
    groups: dict[PortKey, dict[str, objects_pb2.Endpoint]] = {}
    for pod in pods:
        if not pod.status.pod_ip or pod.status.phase in TERMINAL_PHASES:
            continue
        if not selects(service, pod.metadata.labels):
            continue
        groups.setdefault(resolve_ports(service, pod), {})[pod.metadata.name] = endpoint_for(service, pod)
    return groups


def endpoint_ports(ports: PortKey) -> list[objects_pb2.EndpointPort]:
    result = []
    for name, protocol, number, app_protocol in ports:
        port = objects_pb2.EndpointPort(name=name, protocol=protocol, port=number)
        if app_protocol:
            port.app_protocol = app_protocol
        result.append(port)
    return result


def port_key(endpoint_slice: objects_pb2.EndpointSlice) -> PortKey:
    return tuple(
        (p.name, p.protocol, p.port, p.app_protocol if p.HasField("app_protocol") else "")
        for p in endpoint_slice.ports
    )


def slice_labels(service: objects_pb2.Service) -> dict[str, str]:
    """The labels of a Service's managed slices: its own, then the controller's."""
    labels = dict(service.metadata.labels)
    labels.update({SERVICE_NAME_LABEL: service.metadata.name, MANAGED_BY_LABEL: MANAGED_BY})
    if service.spec.cluster_ip == NONE:
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


@dataclass
class SlicePlan:
    """What one sync writes: slices to create (no name yet), to update, to delete (names)."""

    create: list[objects_pb2.EndpointSlice] = field(default_factory=list)
    update: list[objects_pb2.EndpointSlice] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def _target_name(endpoint: objects_pb2.Endpoint) -> str:
    return endpoint.target_ref.name


def plan_slices(
    service: objects_pb2.Service,
    pods: Iterable[objects_pb2.Pod],
    existing: Iterable[objects_pb2.EndpointSlice],
) -> SlicePlan:
    """The writes that make a Service's managed slices match its pods (see the module docstring).

    Args:
        existing: The managed slices of this Service's name (any uid).
    """
    plan = SlicePlan()
    labels = slice_labels(service)
    owner = controller_reference(service)
    groups = desired_endpoints(service, pods)
    current: dict[PortKey, list[objects_pb2.EndpointSlice]] = {}
    for endpoint_slice in sorted(existing, key=lambda s: s.metadata.name):
        refs = endpoint_slice.metadata.owner_references
        if any(ref.controller and ref.uid != service.metadata.uid for ref in refs):
            plan.delete.append(endpoint_slice.metadata.name)  # an older Service's of this name
        else:
            current.setdefault(port_key(endpoint_slice), []).append(endpoint_slice)
    if not groups:
        # No endpoints: one placeholder slice with no ports and no endpoints, as Kubernetes keeps.
        groups = {(): {}}
    for ports, wanted in groups.items():
        remaining = dict(wanted)
        filled: list[tuple[objects_pb2.EndpointSlice, list[objects_pb2.Endpoint]]] = []
        for endpoint_slice in current.pop(ports, []):
            names = [_target_name(e) for e in endpoint_slice.endpoints]
            kept = [remaining.pop(name) for name in names if name in remaining]
            filled.append((endpoint_slice, kept))
        for _, kept in filled:
            while remaining and len(kept) < MAX_ENDPOINTS:
                kept.append(remaining.pop(min(remaining)))
        new_chunks: list[list[objects_pb2.Endpoint]] = []
        for name in sorted(remaining):
            if not new_chunks or len(new_chunks[-1]) >= MAX_ENDPOINTS:
                new_chunks.append([])
            new_chunks[-1].append(remaining[name])
        keep_placeholder = not wanted and not any(kept for _, kept in filled)
        for i, (endpoint_slice, kept) in enumerate(filled):
            if not kept and not (keep_placeholder and i == 0):
                plan.delete.append(endpoint_slice.metadata.name)
                continue
            desired = _build(endpoint_slice, labels, owner, ports, kept)
            if desired != endpoint_slice:
                plan.update.append(desired)
        if keep_placeholder and not filled:
            new_chunks.append([])
        for chunk in new_chunks:
            plan.create.append(_build(None, labels, owner, ports, chunk, service.metadata))
    for leftover in current.values():
        plan.delete.extend(s.metadata.name for s in leftover)
    return plan


def _build(
    base: objects_pb2.EndpointSlice | None,
    labels: dict[str, str],
    owner: objects_pb2.OwnerReference,
    ports: PortKey,
    endpoints: list[objects_pb2.Endpoint],
    service_meta: objects_pb2.ObjectMeta | None = None,
) -> objects_pb2.EndpointSlice:
    endpoint_slice = objects_pb2.EndpointSlice()
    if base is not None:
        endpoint_slice.CopyFrom(base)
    else:
        endpoint_slice.api_version, endpoint_slice.kind = "discovery.k8s.io/v1", "EndpointSlice"
        endpoint_slice.metadata.namespace = service_meta.namespace
        endpoint_slice.metadata.name = generate_name(f"{service_meta.name}-")
    endpoint_slice.address_type = "IPv4"
    endpoint_slice.metadata.ClearField("labels")
    endpoint_slice.metadata.labels.update(labels)
    del endpoint_slice.metadata.owner_references[:]
    endpoint_slice.metadata.owner_references.append(owner)
    endpoint_slice.ClearField("ports")
    endpoint_slice.ports.extend(endpoint_ports(ports))
    endpoint_slice.ClearField("endpoints")
    endpoint_slice.endpoints.extend(sorted(endpoints, key=_target_name))
    return endpoint_slice


class EndpointSliceController(Controller):
    """Keeps the EndpointSlices of every Service with a selector (see the module docstring).

    Args:
        registry: The registry the slices are written through.
        informers: The shared informers (services, pods, endpointslices).
        metrics: The work queue's metrics.
        clock: Unused; the controller manager passes it to every controller.
    """

    name = "endpointslice"
    workers = 5  # kube's --concurrent-service-endpoint-syncs

    def __init__(
        self,
        registry: Registry,
        informers: InformerFactory,
        metrics: WorkQueueMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(informers=informers, metrics=metrics)
        self._registry = registry
        # Per Service key: slice name -> the resourceVersion this controller wrote (None: deleted).
        self._written: dict[str, dict[str, int | None]] = {}
        self.services = self.informer("services", {"namespace": by_namespace})
        self.pods = self.informer("pods", {"namespace": by_namespace})
        self.slices = self.informer("endpointslices", {SERVICE_INDEX: managed_service_key})
        self.services.add_handler(lambda old, new: self.enqueue(new if new is not None else old))
        self.pods.add_handler(self._pod_changed)
        self.slices.add_handler(self._slice_changed)

    def _pod_changed(self, old: Message | None, new: Message | None) -> None:
        namespace = (new if new is not None else old).metadata.namespace
        for service in self.services.by_index("namespace", namespace):
            if any(pod is not None and selects(service, pod.metadata.labels) for pod in (old, new)):
                self.enqueue(service)

    def _slice_changed(self, old: Message | None, new: Message | None) -> None:
        for endpoint_slice in (old, new):
            if endpoint_slice is not None:
                for key in managed_service_key(endpoint_slice):
                    self.enqueue(key)

    def _caught_up(self, key: str) -> bool:
        """Whether the slice cache shows every write of this Service's last sync."""
        written = self._written.get(key)
        if not written:
            return True
        namespace = split_key(key)[0]
        for name, rv in written.items():
            cached = self.slices.get(namespace, name)
            if rv is None and cached is not None:
                return False
            if rv is not None and (cached is None or int(cached.metadata.resource_version) < rv):
                return False
        del self._written[key]
        return True

    async def sync(self, key: str) -> None:
        if not self._caught_up(key):
            self.run_after(key, CATCH_UP_SECONDS)
            return
        namespace, name = split_key(key)
        service = self.services.get(namespace, name)
        existing = self.slices.by_index(SERVICE_INDEX, key)
        if service is None or not service.spec.selector:
            plan = SlicePlan(delete=[s.metadata.name for s in existing])
        else:
            plan = plan_slices(service, self.pods.by_index("namespace", namespace), existing)
        if plan.create or plan.update or plan.delete:
            await self._write(key, namespace, plan)

    async def _write(self, key: str, namespace: str, plan: SlicePlan) -> None:
        registry = self._registry.endpoint_slices
        written = self._written.setdefault(key, {})
        for name in plan.delete:
            try:
                await registry.delete(namespace, name)
            except NotFound:
                pass  # the garbage collector (or a user) was first
            written[name] = None
        for endpoint_slice in plan.update:
            stored = await registry.update(endpoint_slice)  # checked against its resourceVersion
            written[stored.metadata.name] = int(stored.metadata.resource_version)
        for endpoint_slice in plan.create:
            stored = await registry.create(endpoint_slice)
            written[stored.metadata.name] = int(stored.metadata.resource_version)
        log.info("endpointslices synced service=%s created=%d updated=%d deleted=%d", key, len(plan.create),
                 len(plan.update), len(plan.delete))

