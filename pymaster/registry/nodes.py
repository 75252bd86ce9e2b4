"""The node registry: every write of a node, by its agent (register, lease, status report), by the
admin (update, delete) and by the node lifecycle controller (Ready=Unknown).

The master owns node conditions: an agent proves it is alive by registering, renewing its lease
and reporting status; it never writes Ready itself. Deleting a node also releases its identity
binding, which revokes every certificate of the node (its agent must join again with the token).

What a node may say about itself (Kubernetes' NodeRestriction): its ``--node-labels`` and
annotations only when it registers for the first time, never under the reserved prefixes
``node-restriction.pykube.io/`` and ``node-restriction.kubernetes.io/`` (the admin's, to steer
pods with nodeSelectors a node cannot fake); afterwards only the well-known labels about itself
(``kubernetes.io/hostname``, ``kubernetes.io/os``, ``kubernetes.io/arch``). Every other label
is the admin's (``pyctl label``, Resources.Update), and a re-registering agent cannot change it.

Extended resources (``example.com/dongle``) in a node's capacity and allocatable come from two
hands, as in Kubernetes: the agent advertises its ``--extended-resource`` flags, and the admin may
set more with an update of the node's status (``pyctl patch node N --subresource status``). An
agent's report replaces cpu, memory, pods and the extended resources it names, and keeps the
others (the kubelet keeps extended resources it does not manage), so for a name the agent
advertises its value wins at the next report. An admin's update changes only extended resources
(cpu, memory, ephemeral-storage and pods stay the agent's; the rest of the status is the
master's): the extended resources of the update's status become the node's, so one left out is
removed; an allocatable the update leaves as it was follows the capacity (the kubelet's
allocatable = capacity), so patching (or removing) the capacity alone is enough. An update that
carries no status at all (neither capacity nor allocatable) leaves them alone.

Taints (``spec.taints``) are the admin's (an update, ``pyctl taint``) and the node lifecycle
controller's (``swap_taints``: not-ready, unreachable, unschedulable), never the agent's: a
registration's taints are dropped (Kubernetes' kubelet may register with taints; pykube's agent
has no such flag). The registry stamps ``timeAdded`` on NoExecute taints (``stamp_taints``):
the taint eviction controller counts tolerationSeconds from it.

The pure rules (``merge_registration``, ``apply_status_report``, ``merge_update``) are module
functions, table-tested on their own; ``NodeRegistry`` applies them to the store and the leases.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.api.errors import AlreadyExists, MethodNotAllowed, NotFound
from pymaster.api.kinds import IDENTITIES, NODES
from pymaster.api.limits import check_name, check_object_size, check_timestamps
from pymaster.api.network import next_pod_cidr
from pymaster.api.nodes import READY, mark_not_ready, mark_ready, mark_unknown
from pymaster.api.pods import is_extended_resource
from pymaster.api.resource_validation import check_node_extended_resources
from pymaster.api.taints import NO_EXECUTE, format_taint
from pymaster.api.validation import validate_node
from pymaster.registry.base import KindRegistry, conflict, merge_user_update
from pymaster.registry.leases import NodeLeases, check_renewal, next_renew_seconds
from pymaster.store.base import Store

log = logging.getLogger(__name__)

# Labels about the node itself that its agent keeps up to date on every registration.
SELF_LABELS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")
# Label prefixes only the admin may set.
RESTRICTED_PREFIXES = ("node-restriction.pykube.io/", "node-restriction.kubernetes.io/")


def node_may_set(key: str) -> bool:
    """Whether a node's agent may set the label or annotation ``key`` at all."""
    return not key.startswith(RESTRICTED_PREFIXES)


# ---- pure rules ----


def _extended(resources: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in resources.items() if is_extended_resource(name)}


def apply_status_report(
    node: objects_pb2.Node, status: objects_pb2.NodeStatus, now: float | None = None
) -> None:
    """Copies what an agent reports (capacity, allocatable, addresses, daemon endpoints, node info,
    usage) onto ``node`` in place, field by field where the report sets it, and marks the node
    Ready, or NotReady when the report says Ready=False (the agent cannot reach its runtime).
    Extended resources the report does not name are kept (the admin's). Other conditions the
    agent sends are ignored: they are the master's."""
    target = node.status
    kept = {name for name in _extended(target.capacity) if name not in status.capacity}
    kept_capacity = {name: target.capacity[name] for name in kept}
    kept_allocatable = {name: target.allocatable.get(name, target.capacity[name]) for name in kept}
    if status.capacity:
        target.ClearField("capacity")
        target.capacity.update(status.capacity)
        target.capacity.update(kept_capacity)
    if status.allocatable:
        target.ClearField("allocatable")
        target.allocatable.update(status.allocatable)
        target.allocatable.update(kept_allocatable)
    if status.addresses:
        del target.addresses[:]
        target.addresses.extend(status.addresses)
    for field in ("daemon_endpoints", "node_info", "usage"):
        if status.HasField(field):
            getattr(target, field).CopyFrom(getattr(status, field))
    reported = find_condition(status.conditions, READY)
    if reported is not None and reported.status == "False":
        mark_not_ready(node, reported.message, now)
    else:
        mark_ready(node, now)


def merge_registration(
    existing: objects_pb2.Node | None, reported: objects_pb2.Node, uid: str, now: float | None = None
) -> objects_pb2.Node:
    """The node to store when an agent registers ``reported``.

    A new node takes the agent's labels and annotations (but those under the reserved prefixes)
    and spec, its taints included (the kubelet's --register-with-taints; NoExecute ones stamped
    with the time). A known node keeps its uid, spec (an admin's cordon or taints survive agent
    restarts), labels and annotations; only the well-known labels about itself come from the
    agent. Either way the status comes from the report and the node is Ready.

    Args:
        uid: The uid for a new node.
    """
    node = objects_pb2.Node()
    if existing is None:
        node.metadata.name = reported.metadata.name
        node.metadata.uid = uid
        node.metadata.creation_timestamp.CopyFrom(timestamp(now))
        node.metadata.generation = 1
        node.spec.CopyFrom(reported.spec)
        stamp_taints((), node.spec.taints, now)
        # The pod CIDR is the master's (node IPAM).
        node.spec.ClearField("pod_cidr")
        node.spec.ClearField("pod_cidrs")
        meta = reported.metadata
        node.metadata.labels.update({k: v for k, v in meta.labels.items() if node_may_set(k)})
        node.metadata.annotations.update({k: v for k, v in meta.annotations.items() if node_may_set(k)})
    else:
        node.CopyFrom(existing)
        node.metadata.labels.update(
            {k: v for k, v in reported.metadata.labels.items() if k in SELF_LABELS}
        )
    node.api_version, node.kind = "v1", "Node"
    apply_status_report(node, reported.status, now)
    return node


def stamp_taints(
    current: Sequence[objects_pb2.Taint], taints: Iterable[objects_pb2.Taint], now: float | None = None
) -> None:
    """Sets the timeAdded of NoExecute ``taints`` in place (the clock of their evictions): a taint
    the node already had (same key, value and effect) keeps its time, a new one without a time
    gets ``now``; other effects carry no time (as the node lifecycle controller's)."""
    before = {(t.key, t.value, t.effect): t.time_added for t in current if t.HasField("time_added")}
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            taint.ClearField("time_added")
            continue
        kept = before.get((taint.key, taint.value, taint.effect))
        if kept is not None:
            taint.time_added.CopyFrom(kept)
        elif not taint.HasField("time_added"):
            taint.time_added.CopyFrom(timestamp(now))


def _keep_pod_cidrs(spec: objects_pb2.NodeSpec, current: objects_pb2.NodeSpec) -> None:
    """The pod CIDRs are the master's, set once (Kubernetes keeps them immutable)."""
    spec.pod_cidr = current.pod_cidr
    del spec.pod_cidrs[:]
    spec.pod_cidrs.extend(current.pod_cidrs)


def merge_update(
    current: objects_pb2.Node, desired: objects_pb2.Node, now: float | None = None
) -> objects_pb2.Node:
    """The node to store for a user's update: labels, annotations and spec from ``desired`` (the
    taints' timeAdded per ``stamp_taints``), and its status' extended resources (see the module's
    docstring) unless it carries no capacity or allocatable; everything else (the rest of the
    status, uid, timestamps) from ``current``."""
    merged = merge_user_update(current, desired, _keep_pod_cidrs)
    stamp_taints(current.spec.taints, merged.spec.taints, now)
    wanted = desired.status
    if not wanted.capacity and not wanted.allocatable:
        return merged
    capacity = _extended(wanted.capacity)
    allocatable = _extended(wanted.allocatable)
    before = current.status
    for name, asked in list(allocatable.items()):
        # Left as it was while its capacity went away: it goes too (validation refuses the rest).
        if name not in capacity and asked == before.allocatable.get(name):
            del allocatable[name]
    for name, count in capacity.items():
        asked = allocatable.get(name)
        left_as_it_was = asked == before.allocatable.get(name) and count != before.capacity.get(name)
        if asked is None or left_as_it_was:
            allocatable[name] = count
    target = merged.status
    for resources, extended in ((target.capacity, capacity), (target.allocatable, allocatable)):
        for name in _extended(resources):
            del resources[name]
        resources.update(extended)
    return merged


# ---- the registry ----


class NodeRegistry(KindRegistry):
    """Writes of nodes and their leases.

    Args:
        store: The store.
        leases: The in-memory lease table.
        clock: Epoch seconds (tests pass a fake).
        rng: Jitters the lease periods handed out.
        cluster_cidr: Each node gets a /24 of it as spec.podCIDR at registration (node IPAM;
            None: no pod CIDRs).
    """

    def __init__(
        self,
        store: Store,
        leases: NodeLeases,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        cluster_cidr: str | None = None,
    ):
        super().__init__(store, NODES)
        self.leases = leases
        self._cluster_cidr = cluster_cidr
        self._cidrs_in_use: set[str] | None = None  # built at the first allocation
        self._next_cidr = 0  # where the next allocation starts looking (after the last one taken)
        self._clock = clock
        self._rng = rng or random.Random()
        # Called with the name of every deleted node (the bound-pods hub ends its streams).
        self.on_deleted: list[Callable[[str], None]] = []
        # Called with a node's name at every renewal this master takes (the lease relay).
        self.on_renewed: list[Callable[[str], None]] = []
        self._background: set[asyncio.Task] = set()  # Ready marks of lane renewals after expiry

    # ---- agents ----

    async def register(self, request: objects_pb2.Node) -> objects_pb2.Node:
        """Creates or refreshes a node from its agent's registration and starts its lease."""
        name = request.metadata.name
        check_object_size("node", request)
        validate_node(request)
        check_node_extended_resources(request.status)
        check_timestamps("status", request.status)
        now = self._clock()
        new_uid = str(uuid.uuid4())
        cidr = self._reserve_pod_cidr(name)

        def registered(current: objects_pb2.Node | None) -> objects_pb2.Node:
            node = merge_registration(current, request, new_uid, now)
            if cidr and not node.spec.pod_cidr:
                node.spec.pod_cidr = cidr
                node.spec.pod_cidrs.append(cidr)
            return node

        try:
            try:
                node = await self._store.create(NODES.resource, registered(None))
            except AlreadyExists:
                node = await self._store.mutate(NODES.resource, "", name, registered)
        except BaseException:
            self._release_pod_cidr(cidr)
            raise
        if node.spec.pod_cidr != cidr:  # it had one already
            self._release_pod_cidr(cidr)
        self.leases.renew(name)
        self._tell_renewed(name)
        log.info("node registered node=%s uid=%s new=%s pod_cidr=%s", name, node.metadata.uid,
                 node.metadata.uid == new_uid, node.spec.pod_cidr or "none")
        return node

    def _reserve_pod_cidr(self, name: str) -> str:
        """The next free /24 of the cluster CIDR for a node that has none yet (kube's range
        allocator), reserved at once so no concurrent registration takes it; "" when the node
        has one, or none is configured, or the range is full (logged, Kubernetes'
        CIDRNotAvailable: the node registers without one)."""
        if not self._cluster_cidr:
            return ""
        try:
            if self._store.get(NODES.resource, "", name).spec.pod_cidr:
                return ""
        except NotFound:
            pass
        if self._cidrs_in_use is None:
            nodes, _ = self._store.list(NODES.resource)
            self._cidrs_in_use = {n.spec.pod_cidr for n in nodes if n.spec.pod_cidr}
        found = next_pod_cidr(self._cluster_cidr, self._cidrs_in_use, self._next_cidr)
        if found is None:
            log.warning("no pod CIDR left in %s for node=%s (CIDRNotAvailable)", self._cluster_cidr, name)
            return ""
        cidr, position = found
        self._cidrs_in_use.add(cidr)
        self._next_cidr = position + 1
        return cidr

    def _release_pod_cidr(self, cidr: str) -> None:
        if cidr and self._cidrs_in_use is not None:
            self._cidrs_in_use.discard(cidr)

    async def renew_lease(self, name: str, requested_seconds: float) -> float:
        """Renews a node's lease (Ready again if it had expired); returns the period until the
        next renewal the agent should keep.

        Raises:
            NotFound: the node is not registered (the agent registers again).
        """
        try:
            period = self._check_renewal(name, requested_seconds)
        except NotFound:
            self.leases.remove(name)
            raise
        await self._renewed(name)
        return period

    def _check_renewal(self, name: str, requested_seconds: float) -> float:
        """The checks of a renewal, without taking it; returns the period until the agent's next
        renewal.

        Raises:
            ValidationError: a bad name or period.
            NotFound: the node is not registered.
        """
        check_renewal(name, requested_seconds)
        if not self._exists(NODES.resource, "", name):
            raise NotFound(f"node {name} is not registered; register again")
        return next_renew_seconds(requested_seconds, self.leases.grace_period, self._rng.random())

    def take_renewals(self, names: Iterable[str]) -> None:
        """Renewals the lease lane answered (``pymaster.server.lease_lane``), taken on the event
        loop: a node deleted meanwhile is skipped; an expired lease makes its node Ready again."""
        for name in names:
            if not self._exists(NODES.resource, "", name):
                self.leases.remove(name)
                continue
            if self.leases.renew(name):
                task = asyncio.create_task(self._mark_ready(name), name=f"lease-ready-{name}")
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            self._tell_renewed(name)

    async def _renewed(self, name: str, *, from_peer: bool = False) -> None:
        """A renewal of ``name``'s lease: Ready again if it had expired; told to ``on_renewed``
        (the other masters) unless another master took it."""
        if self.leases.renew(name):
            await self._mark_ready(name)
        if not from_peer:
            self._tell_renewed(name)

    async def _mark_ready(self, name: str) -> None:
        now = self._clock()
        await self._store.mutate(NODES.resource, "", name, lambda n: n if mark_ready(n, now) else None)
        log.info("node lease renewed after expiry node=%s ready=True", name)

    def _tell_renewed(self, name: str) -> None:
        for listener in self.on_renewed:
            listener(name)

    async def peer_renewed(self, name: str) -> None:
        """Another master took a renewal of ``name``'s lease (``pymaster.registry.lease_relay``)."""
        if self._exists(NODES.resource, "", name):
            await self._renewed(name, from_peer=True)

    async def report_status(self, name: str, status: objects_pb2.NodeStatus) -> objects_pb2.Node:
        """Stores an agent's status report (counts as a lease renewal)."""
        check_name("nodeName", name)
        check_timestamps("status", status)
        now = self._clock()

        def report(node: objects_pb2.Node) -> objects_pb2.Node:
            apply_status_report(node, status, now)
            validate_node(node)
            check_node_extended_resources(node.status)
            check_object_size("node", node)
            return node

        node = await self._store.mutate(NODES.resource, "", name, report)
        # The report set Ready as the agent sees it; the lease only counts as renewed.
        self.leases.renew(name)
        self._tell_renewed(name)
        return node

    # ---- the admin ----

    async def update(self, request: objects_pb2.Node) -> objects_pb2.Node:
        """Updates labels, annotations, spec (cordon) and the extended resources of the status
        (see ``merge_update``); metadata.resourceVersion, when set, must be the stored one (else
        Conflict)."""
        name, rv = request.metadata.name, request.metadata.resource_version
        now = self._clock()
        check_object_size("node", request)
        check_name("metadata.name", name)

        def update(current: objects_pb2.Node) -> objects_pb2.Node | None:
            if rv and current.metadata.resource_version != rv:
                raise conflict(NODES, name)
            merged = merge_update(current, request, now)
            validate_node(merged)
            check_node_extended_resources(merged.status)
            check_object_size("node", merged)
            return None if merged == current else merged

        node = await self._store.mutate(NODES.resource, "", name, update)
        log.info("node updated node=%s unschedulable=%s taints=%s extended_resources=%s", name,
                 node.spec.unschedulable, ",".join(format_taint(t) for t in node.spec.taints) or "none",
                 ",".join(f"{k}={v}" for k, v in sorted(_extended(node.status.capacity).items())) or "none")
        return node

    async def create(self, request: objects_pb2.Node) -> objects_pb2.Node:
        raise MethodNotAllowed("nodes are created by their agent's registration (pykubelet)")

    async def apply(self, request: objects_pb2.Node, *, record: bool = True) -> tuple[objects_pb2.Node, str]:
        raise MethodNotAllowed(
            "nodes are created by their agent's registration; change a node's labels or spec with an update"
        )

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> objects_pb2.Node:
        """Deletes a node and releases its identity (revoking its certificates) and lease.

        Raises:
            NotFound: neither a node nor an identity of that name.
        """
        check_name("name", name)
        # The identity first: from here on no certificate of the node is accepted.
        try:
            await self._store.delete(IDENTITIES.resource, "", name)
            released = True
        except NotFound:
            released = False
        self.leases.remove(name)
        for listener in self.on_deleted:
            listener(name)
        try:
            node = await self._store.delete(NODES.resource, "", name)
        except NotFound:
            if not released:
                raise
            # It joined but never registered: releasing the name is the whole deletion.
            log.info("node identity released node=%s registered=False", name)
            node = objects_pb2.Node(api_version="v1", kind="Node")
            node.metadata.name = name
            return node
        self._release_pod_cidr(node.spec.pod_cidr)
        log.info("node deleted node=%s identity_released=%s", name, released)
        return node

    # ---- the node lifecycle controller ----

    async def mark_unknown(self, name: str) -> bool:
        """Ready=Unknown for a node whose lease expired, unless it was renewed meanwhile; a node
        gone from the store loses its lease. Returns whether the node was marked."""
        now = self._clock()
        marked = False

        def mark(node: objects_pb2.Node) -> objects_pb2.Node | None:
            nonlocal marked
            # Renewed while this write waited for the store lock: the agent is alive after all.
            if not self.leases.is_expired(name) or not mark_unknown(node, now):
                return None
            marked = True
            return node

        try:
            await self._store.mutate(NODES.resource, "", name, mark)
        except NotFound:
            self.leases.remove(name)
        return marked

    async def swap_taints(
        self,
        name: str,
        add: Sequence[objects_pb2.Taint],
        remove: Sequence[objects_pb2.Taint],
        when: Callable[[objects_pb2.Node], bool] = lambda node: True,
    ) -> bool:
        """Adds and removes taints of a node in one write (Kubernetes' SwapNodeControllerTaint),
        only if ``when`` holds for the stored node at write time. A taint is removed by key and
        effect; one is added unless the node has its key and effect already; a NoExecute taint
        added gets timeAdded now. Returns whether the node changed (False if it is gone)."""
        now = self._clock()
        changed = False

        def swap(node: objects_pb2.Node) -> objects_pb2.Node | None:
            nonlocal changed
            if not when(node):
                return None
            gone = {(t.key, t.effect) for t in remove}
            kept = [t for t in node.spec.taints if (t.key, t.effect) not in gone]
            present = {(t.key, t.effect) for t in kept}
            new = [t for t in add if (t.key, t.effect) not in present]
            if len(kept) == len(node.spec.taints) and not new:
                return None
            taints = [*kept, *(objects_pb2.Taint(key=t.key, value=t.value, effect=t.effect) for t in new)]
            stamp_taints(node.spec.taints, taints, now)
            del node.spec.taints[:]
            node.spec.taints.extend(taints)
            changed = True
            return node

        try:
            await self._store.mutate(NODES.resource, "", name, swap)
        except NotFound:
            return False
        if changed:
            log.info("node taints changed node=%s added=%s removed=%s", name,
                     ",".join(format_taint(t) for t in add) or "none",
                     ",".join(format_taint(t) for t in remove) or "none")
        return changed
