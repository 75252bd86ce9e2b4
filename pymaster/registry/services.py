"""The Service registry (kube-apiserver's ``pkg/registry/core/service``, with its ``ipallocator``
and ``portallocator``): users write Services; create, apply, update and delete (at once).

- create: defaults and validation (``pymaster.api.service_validation``), then a ClusterIP from
  ``--service-cluster-ip-range`` (a requested free one is honoured; a taken one is refused with
  ``provided IP is already allocated``; "None" makes a headless service with none) and, for
  NodePort services, a node port per port from ``--service-node-port-range`` (same rules,
  ``provided port is already allocated``);
- update (and apply): labels, annotations and spec from the request; what the request leaves
  unset keeps its allocation (clusterIP, and a port's nodePort matched by port and protocol), as
  ``kubectl apply`` would; clusterIP is immutable (``field is immutable``); NodePort -> ClusterIP
  frees the node ports, ClusterIP -> NodePort allocates them;
- delete frees the address and the ports.

The allocations live in memory, rebuilt from the stored Services on first use (the registry is
the only writer of Services, so memory and store agree). Dynamic ClusterIPs never take the
range's network or broadcast address, nor its first host, which is the ``kubernetes`` Service's
(``pymaster.controllers.master_service``); like Kubernetes, a dynamic address is picked at random
in the upper part of the range first, leaving the lower band to addresses users ask for.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import ResourceExhausted
from pymaster.api.kinds import SERVICES
from pymaster.api.network import NetworkConfig
from pymaster.api.service_validation import (
    NODE_PORT,
    NONE,
    default_service,
    invalid,
    validate_service,
    validate_service_update,
)
from pymaster.registry.base import UserObjectRegistry, merge_user_update, prepare_new_metadata
from pymaster.store.base import Store

log = logging.getLogger(__name__)


class RangeAllocator:
    """Which integers of [low, high] are taken; dynamic picks start at a random offset inside
    [dynamic_low, high] first, then fall back to the lower band."""

    def __init__(self, low: int, high: int, dynamic_low: int | None = None):
        self.low, self.high = low, high
        self.dynamic_low = low if dynamic_low is None else dynamic_low
        self.used: set[int] = set()

    @property
    def free(self) -> int:
        return self.high - self.low + 1 - len(self.used)

    def take(self, value: int) -> bool:
        """Marks ``value`` taken; False when it already was."""
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def take_any(self, exclude: Iterable[int] = ()) -> int | None:
        """A free value (now taken), or None when the range is full."""
        skip = set(exclude)
        for low, high in ((self.dynamic_low, self.high), (self.low, self.dynamic_low - 1)):
            if high < low:
                continue
            size = high - low + 1
            start = random.randrange(size)
            for step in range(size):
                value = low + (start + step) % size
                if value not in self.used and value not in skip:
                    self.used.add(value)
                    return value
        return None

    def release(self, value: int) -> None:
        self.used.discard(value)


class ServiceAllocators:
    """The ClusterIPs and NodePorts in use, per the cluster's address plan."""

    def __init__(self, network: NetworkConfig):
        self.network = ipaddress.ip_network(network.service_cidr)
        first, last = int(self.network.network_address) + 1, int(self.network.broadcast_address) - 1
        # Kubernetes' static band: min(max(16, size/16), 256) addresses at the bottom of the range.
        band = min(max(16, (last - first + 1) // 16), 256)
        self.ips = RangeAllocator(first, last, min(first + band, last))
        self.reserved_ip = first  # the `kubernetes` Service's
        low, high = network.node_ports
        self.ports = RangeAllocator(low, high, min(low + min(max(16, (high - low + 1) // 16), 128), high))

    def allocate_ip(self, requested: str) -> str:
        """``requested`` (taken now) or, when "", a free address.

        Raises:
            ValidationError: the requested address is taken; ResourceExhausted: the range is full.
        """
        if requested:
            if not self.ips.take(int(ipaddress.ip_address(requested))):
                raise invalid("spec.clusterIPs", requested,
                              f"failed to allocate IP {requested}: provided IP is already allocated")
            return requested
        value = self.ips.take_any(exclude=(self.reserved_ip,))
        if value is None:
            raise ResourceExhausted(f"failed to allocate a serviceIP: range is full ({self.network})")
        return str(ipaddress.ip_address(value))

    def release_ip(self, ip: str) -> None:
        if ip and ip != NONE:
            self.ips.release(int(ipaddress.ip_address(ip)))

    def allocate_port(self, path: str, requested: int) -> int:
        """``requested`` (taken now) or, when 0, a free node port.

        Raises:
            ValidationError: the requested port is taken; ResourceExhausted: the range is full.
        """
        if requested:
            if not self.ports.take(requested):
                raise invalid(path, requested, "provided port is already allocated")
            return requested
        value = self.ports.take_any()
        if value is None:
            raise ResourceExhausted(f"failed to allocate a nodePort: range is full ({self.ports.low}-"
                                    f"{self.ports.high})")
        return value


def node_ports(service: Message) -> set[int]:
    return {p.node_port for p in service.spec.ports if p.node_port}


def _keep_allocations(spec: objects_pb2.ServiceSpec, old: objects_pb2.ServiceSpec) -> None:
    """What a user's update leaves unset keeps the current allocation (clusterIP; a port's
    nodePort matched by port and protocol); what the type change makes meaningless goes (node
    ports and externalTrafficPolicy of a service that stops being NodePort, if unchanged)."""
    if not spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ip = old.cluster_ip
        spec.cluster_ips[:] = old.cluster_ips
    old_ports = {(p.port, p.protocol or "TCP"): p.node_port for p in old.ports}
    if spec.type == NODE_PORT and old.type == NODE_PORT:
        for port in spec.ports:
            if not port.node_port:
                port.node_port = old_ports.get((port.port, port.protocol or "TCP"), 0)
    elif spec.type != NODE_PORT and old.type == NODE_PORT:
        for port in spec.ports:
            if port.node_port and port.node_port == old_ports.get((port.port, port.protocol or "TCP")):
                port.node_port = 0
        if spec.external_traffic_policy == old.external_traffic_policy:
            spec.external_traffic_policy = ""


class ServiceRegistry(UserObjectRegistry):
    """Writes of Services and their allocations (see the module docstring).

    Args:
        store: The store.
        network: The cluster's address plan (service CIDR, node port range).
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(self, store: Store, network: NetworkConfig, clock: Callable[[], float] = time.time):
        super().__init__(store, SERVICES, clock)
        self.network = network
        self._allocators: ServiceAllocators | None = None
        self._taken: list[Callable[[], None]] = []  # undo of the allocations of the write in flight

    @property
    def allocators(self) -> ServiceAllocators:
        """The allocations, rebuilt from the stored Services on first use."""
        if self._allocators is None:
            allocators = ServiceAllocators(self.network)
            services, _ = self.store.list(SERVICES.resource)
            for service in services:
                if service.spec.cluster_ip and service.spec.cluster_ip != NONE:
                    allocators.ips.take(int(ipaddress.ip_address(service.spec.cluster_ip)))
                for port in node_ports(service):
                    allocators.ports.take(port)
            self._allocators = allocators
            log.info("service allocations rebuilt services=%d cluster_ips=%d node_ports=%d", len(services),
                     len(allocators.ips.used), len(allocators.ports.used))
        return self._allocators

    def _allocate(self, service: objects_pb2.Service, current: objects_pb2.Service | None) -> None:
        """Takes the new service's address and node ports that ``current`` does not hold, in
        place; each is recorded in ``self._taken`` to be undone if the write fails."""
        allocators, spec = self.allocators, service.spec
        if current is None and spec.cluster_ip != NONE:
            spec.cluster_ip = allocators.allocate_ip(spec.cluster_ip)
            self._taken.append(functools.partial(allocators.release_ip, spec.cluster_ip))
            spec.cluster_ips[:] = [spec.cluster_ip]
        held = node_ports(current) if current is not None else set()
        if spec.type == NODE_PORT:
            for i, port in enumerate(spec.ports):
                if port.node_port and port.node_port in held:
                    continue
                port.node_port = allocators.allocate_port(f"spec.ports[{i}].nodePort", port.node_port)
                self._taken.append(functools.partial(allocators.ports.release, port.node_port))

    def _undo(self) -> None:
        for release in reversed(self._taken):
            release()
        self._taken = []

    def prepare_create(self, obj: objects_pb2.Service, uid: str, now: float) -> None:
        default_service(obj)
        validate_service(obj, self.network)
        prepare_new_metadata(obj.metadata, uid, now)
        obj.ClearField("status")
        self._allocate(obj, None)

    def prepare_update(
        self, current: objects_pb2.Service, request: objects_pb2.Service
    ) -> objects_pb2.Service | None:
        desired = objects_pb2.Service()
        desired.CopyFrom(request)
        merged = merge_user_update(current, desired, _keep_allocations)
        default_service(merged)
        validate_service(merged, self.network)
        validate_service_update(current, merged)
        if merged.spec == current.spec:
            # Equal once defaulted: merge_user_update compared the spec before the defaults.
            merged.metadata.generation = current.metadata.generation
        if merged == current:
            return None
        self._allocate(merged, current)
        return merged

    async def create(self, request: Message) -> Message:
        self._taken = []
        try:
            return await super().create(request)
        except BaseException:
            self._undo()
            raise
        finally:
            self._taken = []

    async def _update(
        self, request: Message, *, check_rv: bool, last_applied: str | None = None
    ) -> tuple[Message, bool]:
        self._taken = []
        before = self._current_ports(request)
        try:
            obj, changed = await super()._update(request, check_rv=check_rv, last_applied=last_applied)
        except BaseException:
            self._undo()
            raise
        finally:
            self._taken = []
        for port in before - node_ports(obj):
            self.allocators.ports.release(port)
        return obj, changed

    def _current_ports(self, request: Message) -> set[int]:
        try:
            return node_ports(self.get(request.metadata.namespace, request.metadata.name))
        except Exception:  # noqa: BLE001 - the update itself reports NotFound or a bad key
            return set()

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> Message:
        deleted = await super().delete(namespace, name, grace_period, force)
        self.allocators.release_ip(deleted.spec.cluster_ip)
        for port in node_ports(deleted):
            self.allocators.ports.release(port)
        return deleted

