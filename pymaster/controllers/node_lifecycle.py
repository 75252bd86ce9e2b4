"""Node lifecycle (Kubernetes' ``pkg/controller/nodelifecycle``): marks a node Ready=Unknown when
its agent stops renewing its lease (the leases live in memory: ``pymaster.registry.leases``), and
keeps the taints that say so on the node.

At start every stored node counts as renewed (a full grace period to find the restarted master);
Unknown -> True happens when the agent is heard again (the node registry does that). The lease
task sleeps until the earliest lease deadline (a heap of deadlines; renewals only move deadlines
later, so they never need to wake it) instead of polling every node on a timer.

Taints from conditions, kept level-triggered from a watch of the nodes:

- NoSchedule (Kubernetes' TaintNodesByCondition, at once): ``node.kubernetes.io/not-ready``
  while Ready=False, ``node.kubernetes.io/unreachable`` while Ready=Unknown,
  ``node.kubernetes.io/unschedulable`` while cordoned (spec.unschedulable);
- NoExecute (taint-based eviction; the taint manager, ``taint_eviction``, then deletes the pods
  that do not tolerate it long enough): ``not-ready`` for Ready=False, ``unreachable`` for
  Ready=Unknown, with timeAdded. Putting one on a node is rate limited per zone
  (``eviction_rate``: no mass eviction when many nodes fail at once, none at all when every node
  seems down, which means the master is the one cut off); swapping one for the other and taking
  them off a node that is Ready again happen at once.

Ready=False is what a node that reports itself not ready gets; pykube's agent reports no
conditions of its own yet (the master sets Ready), so today the ``unreachable`` taints are the
ones seen.

Metrics (Kubernetes' names, label ``zone``): ``node_collector_evictions_total`` (nodes tainted
NoExecute), ``node_collector_zone_health`` (percent of Ready nodes), ``node_collector_zone_size``,
``node_collector_unhealthy_nodes_in_zone``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from pymaster.api import objects_pb2
from pymaster.api.kinds import NODES
from pymaster.api.nodes import ready_status
from pymaster.api.taints import NO_EXECUTE, NO_SCHEDULE, NOT_READY, UNREACHABLE, UNSCHEDULABLE
from pymaster.controllers.eviction_rate import (
    FULL_DISRUPTION,
    INITIAL,
    EvictionPolicy,
    TokenBucket,
    zone_key,
    zone_rate,
    zone_state,
)
from pymaster.controllers.waiting import wait_event
from pymaster.registry import Registry
from pymaster.store.base import DELETED, WatchEvent
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

# The taints this controller owns (key, effect); an admin's other taints are never touched.
MANAGED_NO_SCHEDULE = frozenset(
    {(NOT_READY, NO_SCHEDULE), (UNREACHABLE, NO_SCHEDULE), (UNSCHEDULABLE, NO_SCHEDULE)}
)
MANAGED_NO_EXECUTE = frozenset({(NOT_READY, NO_EXECUTE), (UNREACHABLE, NO_EXECUTE)})


def no_schedule_taints(ready: str, unschedulable: bool) -> frozenset[tuple[str, str]]:
    """The NoSchedule taints (key, effect) a node with this Ready status and cordon should have."""
    wanted = set()
    if ready == "False":
        wanted.add((NOT_READY, NO_SCHEDULE))
    elif ready == "Unknown":
        wanted.add((UNREACHABLE, NO_SCHEDULE))
    if unschedulable:
        wanted.add((UNSCHEDULABLE, NO_SCHEDULE))
    return frozenset(wanted)


def no_execute_taint(ready: str) -> tuple[str, str] | None:
    """The NoExecute taint (key, effect) a node with this Ready status should have, or None."""
    if ready == "False":
        return NOT_READY, NO_EXECUTE
    if ready == "Unknown":
        return UNREACHABLE, NO_EXECUTE
    return None


@dataclass(frozen=True)
class NodeView:
    """What the controller needs of a node: Ready status, cordon, zone, managed taints present."""

    ready: str
    unschedulable: bool
    zone: str
    taints: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, node: objects_pb2.Node) -> NodeView:
        managed = MANAGED_NO_SCHEDULE | MANAGED_NO_EXECUTE
        present = frozenset((t.key, t.effect) for t in node.spec.taints if (t.key, t.effect) in managed)
        return cls(ready_status(node), node.spec.unschedulable, zone_key(node), present)


def _taint(key_effect: tuple[str, str]) -> objects_pb2.Taint:
    return objects_pb2.Taint(key=key_effect[0], effect=key_effect[1])


class NodeLifecycleController:
    """Marks nodes with expired leases Ready=Unknown and keeps their condition taints.

    Args:
        registry: The registry (nodes written through it).
        policy: The eviction rates (``eviction_rate.EvictionPolicy``).
        metrics_registry: Where the node_collector_* metrics go.
        clock: Monotonic seconds for the rate limiters (tests pass a fake).
    """

    def __init__(
        self,
        registry: Registry,
        policy: EvictionPolicy | None = None,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store = registry.store
        self._nodes = registry.nodes
        self._leases = registry.leases
        self.policy = policy or EvictionPolicy()
        self._clock = clock
        self._views: dict[str, NodeView] = {}
        self._dirty: set[str] = set()
        self._zones_changed = False
        self.zone_states: dict[str, str] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._queues: dict[str, dict[str, None]] = {}  # zone -> nodes waiting for a NoExecute taint
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        metrics = metrics_registry or CollectorRegistry()
        self.evictions = Counter("node_collector_evictions_total", "Nodes tainted NoExecute for their "
                                 "condition (not-ready, unreachable), by zone.", ["zone"], registry=metrics)
        self._zone_health = Gauge("node_collector_zone_health", "Percent of the zone's nodes that are Ready.",
                                  ["zone"], registry=metrics)
        self._zone_size = Gauge("node_collector_zone_size", "Nodes in the zone.", ["zone"], registry=metrics)
        self._unhealthy = Gauge("node_collector_unhealthy_nodes_in_zone", "Nodes of the zone not Ready.",
                                ["zone"], registry=metrics)

    def start(self) -> None:
        """Seeds the leases from the stored nodes (renewed now) and starts the controller tasks."""
        nodes, _ = self._store.list(NODES.resource)
        names = [node.metadata.name for node in nodes]
        unknown = [node.metadata.name for node in nodes if ready_status(node) not in ("True", "")]
        self._leases.seed(names, unknown)
        rv = self._relist()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._expire_leases(), name="node-lifecycle"),
            loop.create_task(self._watch(rv), name="node-lifecycle-watch"),
            loop.create_task(self._taint_loop(), name="node-lifecycle-taints"),
        ]
        log.info("node lifecycle controller started nodes=%d grace_period=%s eviction_rate=%s "
                 "secondary_eviction_rate=%s unhealthy_zone_threshold=%s large_cluster_size_threshold=%d",
                 len(names), self._leases.grace_period, self.policy.rate, self.policy.secondary_rate,
                 self.policy.unhealthy_zone_threshold, self.policy.large_cluster_size_threshold)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ---- leases ----

    async def _expire_leases(self) -> None:
        while True:
            for name in self._leases.pop_expired():
                try:
                    if await self._nodes.mark_unknown(name):
                        log.warning("node lease expired node=%s grace_period=%s ready=Unknown", name,
                                    self._leases.grace_period)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cannot mark node unknown node=%s", name)
            self._leases.changed.clear()
            delay = self._leases.seconds_to_next_deadline()
            if delay is None or delay > 0:
                await wait_event(self._leases.changed, delay)

    # ---- following the nodes ----

    def _relist(self) -> int:
        nodes, rv = self._store.list(NODES.resource)
        names = {node.metadata.name for node in nodes}
        for name in [n for n in self._views if n not in names]:
            self._on_node(name, None)
        for node in nodes:
            self._on_node(node.metadata.name, node)
        return rv

    async def _watch(self, rv: int) -> None:
        def apply(change: WatchEvent) -> None:
            self._on_node(change.object.metadata.name, None if change.type == DELETED else change.object)

        await follow(self._store, NODES.resource, rv, apply, self._relist)

    def _on_node(self, name: str, node: objects_pb2.Node | None) -> None:
        before = self._views.get(name)
        if node is None:
            if before is not None:
                del self._views[name]
                self._queues.get(before.zone, {}).pop(name, None)
                self._zones_changed = True
                self._wake.set()
            return
        view = NodeView.of(node)
        if view == before:
            return  # a status report: nothing this controller looks at changed
        self._views[name] = view
        if before is None or (before.ready, before.zone) != (view.ready, view.zone):
            self._zones_changed = True
            if before is not None and before.zone != view.zone:
                self._queues.get(before.zone, {}).pop(name, None)
        self._dirty.add(name)
        self._wake.set()

    # ---- tainting ----

    async def _taint_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node lifecycle pass failed")
            await wait_event(self._wake, self._next_token())

    async def reconcile(self) -> None:
        """One pass: zone states, the taints of the nodes that changed, then the rate-limited
        NoExecute taints."""
        if self._zones_changed:
            self._zones_changed = False
            await self._handle_disruption()
        dirty, self._dirty = self._dirty, set()
        for name in dirty:
            view = self._views.get(name)
            if view is not None:
                await self._reconcile_node(name, view)
        await self._drain_queues()

    async def _reconcile_node(self, name: str, view: NodeView) -> None:
        wanted = no_schedule_taints(view.ready, view.unschedulable)
        present = view.taints & MANAGED_NO_SCHEDULE
        if wanted != present:
            await self._nodes.swap_taints(
                name, [_taint(t) for t in wanted - present], [_taint(t) for t in present - wanted],
                when=lambda n: (ready_status(n), n.spec.unschedulable) == (view.ready, view.unschedulable),
            )
        wanted_ne = no_execute_taint(view.ready)
        present_ne = view.taints & MANAGED_NO_EXECUTE
        if wanted_ne is None:
            self._queues.get(view.zone, {}).pop(name, None)
            if present_ne:
                # Ready again: the node is reachable, its pods stay (Kubernetes' markNodeAsReachable).
                await self._nodes.swap_taints(name, [], [_taint(t) for t in present_ne],
                                              when=lambda n: ready_status(n) == view.ready)
        elif present_ne and wanted_ne not in present_ne:
            # not-ready <-> unreachable: a swap, not a new eviction, so not rate limited.
            await self._nodes.swap_taints(name, [_taint(wanted_ne)], [_taint(t) for t in present_ne],
                                          when=lambda n: ready_status(n) == view.ready)
        elif not present_ne:
            self._queues.setdefault(view.zone, {})[name] = None

    async def _drain_queues(self) -> None:
        for zone, queue in self._queues.items():
            bucket = self._bucket(zone)
            while queue:
                name = next(iter(queue))
                view = self._views.get(name)
                wanted = no_execute_taint(view.ready) if view is not None else None
                if view is None or wanted is None or view.taints & MANAGED_NO_EXECUTE:
                    del queue[name]
                    continue
                if not bucket.try_take():
                    break
                del queue[name]
                opposite = [_taint(t) for t in MANAGED_NO_EXECUTE if t != wanted]
                if await self._nodes.swap_taints(name, [_taint(wanted)], opposite,
                                                 when=lambda n, ready=view.ready: ready_status(n) == ready):
                    self.evictions.labels(zone).inc()
                    log.warning("node tainted for eviction node=%s taint=%s:%s zone=%r", name, *wanted, zone)

    def _bucket(self, zone: str) -> TokenBucket:
        bucket = self._buckets.get(zone)
        if bucket is None:
            bucket = self._buckets[zone] = TokenBucket(self.policy.rate, clock=self._clock)
        return bucket

    def _next_token(self) -> float | None:
        waits = [self._bucket(zone).seconds_to_token() for zone, queue in self._queues.items() if queue]
        return min((w for w in waits if w is not None), default=None)

    # ---- zones ----

    async def _handle_disruption(self) -> None:
        """Kubernetes' handleDisruption: zone states and the rates that follow from them."""
        statuses: dict[str, list[str]] = {}
        for view in self._views.values():
            statuses.setdefault(view.zone, []).append(view.ready)
        new_states = {}
        for zone, ready in statuses.items():
            unhealthy, new_states[zone] = zone_state(ready, self.policy.unhealthy_zone_threshold)
            self._zone_size.labels(zone).set(len(ready))
            self._unhealthy.labels(zone).set(unhealthy)
            self._zone_health.labels(zone).set(100 * (len(ready) - unhealthy) / len(ready))
            self.zone_states.setdefault(zone, INITIAL)
        for zone in [z for z in self.zone_states if z not in statuses]:
            del self.zone_states[zone]
            self._queues.pop(zone, None)
            self._buckets.pop(zone, None)
            for gauge in (self._zone_size, self._unhealthy, self._zone_health):
                gauge.remove(zone)
        all_are = all(state == FULL_DISRUPTION for state in new_states.values())
        all_were = all(state == FULL_DISRUPTION for state in self.zone_states.values())
        if all_are and all_were:
            return
        if all_are:
            log.warning("all nodes are not Ready: entering master disruption mode, no eviction")
            for zone in self.zone_states:
                self._bucket(zone).set_rate(0.0)
                self.zone_states[zone] = FULL_DISRUPTION
            for name, view in list(self._views.items()):
                if view.taints & MANAGED_NO_EXECUTE:
                    await self._nodes.swap_taints(name, [], [_taint(t) for t in MANAGED_NO_EXECUTE])
            return
        if all_were:
            log.warning("some nodes are Ready: exiting master disruption mode")
        for zone, state in new_states.items():
            if all_were or self.zone_states[zone] != state:
                self._bucket(zone).set_rate(zone_rate(state, len(statuses[zone]), self.policy))
                log.info("zone state zone=%r state=%s nodes=%d", zone, state, len(statuses[zone]))
                self.zone_states[zone] = state
