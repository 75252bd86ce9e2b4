"""The DaemonSet controller (Kubernetes' pkg/controller/daemon): one pod of each DaemonSet on
every node that should run it, placed by the scheduler.

A sync of a DaemonSet, level-triggered from the informers (daemonsets, nodes, pods):

- per node, ``node_should_run`` (``daemonset_placement``): a node that should run a pod and has
  none (terminating ones count: the replacement waits until the old pod is gone, as in kube)
  gets one, pinned by required node affinity ``metadata.name In [node]``; a failed pod is
  deleted (with a per-node back-off, 1 s doubling to 15 min, kube's ``failedPodsBackoff``, so a
  node that keeps rejecting the pod is not hammered); extra pods are deleted, the oldest kept; a
  node that must not run one (selector, affinity, an untolerated NoExecute taint) loses it; pods
  of deleted nodes are deleted;
- then, when nothing had to be created or deleted (expectations satisfied), the RollingUpdate
  strategy deletes old-revision pods (``controller-revision-hash`` label) so that at most
  ``maxUnavailable`` (rounded up over desiredNumberScheduled, at least 1) nodes are without an
  available pod at once, unavailable old pods first; the next sync creates their replacements.
  OnDelete replaces a pod only when a user deletes it;
- status (desired/current/updated scheduled, misscheduled, ready, available, unavailable,
  observedGeneration) is written when it changed.

Expectations per DaemonSet key keep a sync from creating twice before the informer saw the pods.
A node update wakes every DaemonSet only when what placement reads changed (labels, taints,
unschedulable, readiness), not on every status report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.pods import FAILED, SUCCEEDED
from pymaster.api.workloads import ROLLING_UPDATE, controller_of, scaled_value
from pymaster.controllers.daemonset_placement import (
    REVISION_HASH_LABEL,
    available_in,
    daemon_pod,
    daemon_spec,
    node_should_run,
    pod_ready,
    target_node,
    template_hash,
)
from pymaster.controllers.expectations import Expectations
from pymaster.controllers.informer import InformerFactory, by_controller_uid, by_node_name
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference

log = logging.getLogger(__name__)

COMPONENT = "daemonset-controller"
FAILED_POD_BACKOFF = 1.0
FAILED_POD_BACKOFF_MAX = 900.0

Placement = dict[str, tuple[bool, bool]]  # node name -> (should run, should continue running)


def _node_placement_view(node: objects_pb2.Node) -> tuple:
    ready = find_condition(node.status.conditions, "Ready")
    return (dict(node.metadata.labels), [t.SerializeToString() for t in node.spec.taints],
            node.spec.unschedulable, ready.status if ready is not None else "")


def _oldest_first(pod: objects_pb2.Pod) -> tuple:
    # kube's podByCreationTimestampAndPhase: scheduled pods before unscheduled, then the oldest.
    return (not pod.spec.node_name, pod.metadata.creation_timestamp.seconds, pod.metadata.name)


def _deleting(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(
        self,
        registry: Registry,
        informers: InformerFactory,
        metrics: WorkQueueMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(informers=informers, metrics=metrics)
        self._registry = registry
        self._clock = clock
        self.expectations = Expectations()
        self.recorder = EventRecorder(registry.events, COMPONENT)
        # (DaemonSet uid, node) -> (back-off delay, no deletion of a failed pod there until)
        self._failed_backoff: dict[tuple[str, str], tuple[float, float]] = {}
        self.sets = self.informer("daemonsets")
        self.nodes = self.informer("nodes")
        self.pods = self.informer("pods", {"controller": by_controller_uid, "node": by_node_name})
        self.sets.add_handler(lambda old, new: self.enqueue(new or old))
        self.nodes.add_handler(self._node_changed)
        self.pods.add_handler(self._pod_changed)

    async def start(self) -> None:
        self.recorder.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.stop()

    # ---- handlers: enqueue only ----

    def _enqueue_all(self) -> None:
        for ds in self.sets.list():
            self.enqueue(ds)

    def _node_changed(self, old: Message | None, new: Message | None) -> None:
        if old is None or new is None or _node_placement_view(old) != _node_placement_view(new):
            self._enqueue_all()

    def _pod_changed(self, old: Message | None, new: Message | None) -> None:
        pod = new or old
        ref = controller_of(pod)
        if ref is None or ref.kind != "DaemonSet":
            return
        key = f"{pod.metadata.namespace}/{ref.name}"
        if old is None:
            self.expectations.creation_observed(key)
        elif new is None:
            if not _deleting(old):
                self.expectations.deletion_observed(key, old.metadata.uid)
        elif _deleting(new) and not _deleting(old):
            self.expectations.deletion_observed(key, new.metadata.uid)
        self.enqueue(key)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        ds = self.sets.get_by_key(key)
        if ds is None:
            self.expectations.delete(key)
            return
        if _deleting(ds):
            return  # the garbage collector deals with its pods
        revision = template_hash(ds)
        nodes = self.nodes.list()
        spec = daemon_spec(ds)
        placement = {node.metadata.name: node_should_run(spec, node) for node in nodes}
        by_node: dict[str, list[objects_pb2.Pod]] = {}
        for pod in self.pods.by_index("controller", ds.metadata.uid):
            by_node.setdefault(target_node(pod), []).append(pod)
        if self.expectations.satisfied(key):
            creates, deletes = self._manage(ds, placement, by_node)
            if not creates and not deletes and ds.spec.update_strategy.type == ROLLING_UPDATE:
                deletes = self._rolling_update(ds, placement, by_node, revision)
            if creates or deletes:
                await self._sync_nodes(ds, key, creates, deletes, revision)
        await self._update_status(ds, placement, by_node, revision)

    def _manage(
        self, ds: objects_pb2.DaemonSet, placement: Placement, by_node: dict[str, list[objects_pb2.Pod]],
    ) -> tuple[list[str], list[objects_pb2.Pod]]:
        """(nodes to create a pod on, pods to delete), kube's ``podsShouldBeOnNode`` per node."""
        creates: list[str] = []
        deletes: list[objects_pb2.Pod] = []
        for name, (should_run, keep) in placement.items():
            pods = by_node.get(name, [])
            if should_run and not pods:
                creates.append(name)
            elif keep:
                running = []
                for pod in pods:
                    if _deleting(pod):
                        continue
                    if pod.status.phase == FAILED:
                        if self._failed_pod_may_go(ds, pod, name):
                            deletes.append(pod)
                    elif pod.status.phase == SUCCEEDED:
                        deletes.append(pod)
                    else:
                        running.append(pod)
                deletes.extend(sorted(running, key=_oldest_first)[1:])
            else:
                deletes.extend(pod for pod in pods if not _deleting(pod))
        for name, pods in by_node.items():
            if name not in placement:
                deletes.extend(pod for pod in pods if not _deleting(pod))
        return creates, deletes

    def _failed_pod_may_go(self, ds: objects_pb2.DaemonSet, pod: objects_pb2.Pod, node: str) -> bool:
        """Whether to delete a failed daemon pod now (kube's back-off against a node that keeps
        rejecting it); when not, the DaemonSet is synced again when the back-off ends."""
        now = self._clock()
        # Forget back-offs long over (kube's failedPodsBackoff.GC): gone DaemonSets and nodes.
        horizon = now - 2 * FAILED_POD_BACKOFF_MAX
        stale = [k for k, (_, until) in self._failed_backoff.items() if until < horizon]
        for k in stale:
            del self._failed_backoff[k]
        backoff_key = (ds.metadata.uid, node)
        delay, until = self._failed_backoff.get(backoff_key, (0.0, 0.0))
        if now < until:
            self.run_after(ds, until - now)
            return False
        delay = min(FAILED_POD_BACKOFF_MAX, delay * 2 if delay else FAILED_POD_BACKOFF)
        self._failed_backoff[backoff_key] = (delay, now + delay)
        self.recorder.record(reference(ds), "Warning", "FailedDaemonPod",
                             f"Found failed daemon pod {pod.metadata.namespace}/{pod.metadata.name} "
                             f"on node {node}, will try to kill it")
        return True

    def _rolling_update(
        self, ds: objects_pb2.DaemonSet, placement: Placement, by_node: dict[str, list[objects_pb2.Pod]],
        revision: str,
    ) -> list[objects_pb2.Pod]:
        """Old-revision pods to delete now, keeping at most maxUnavailable nodes without an
        available pod (kube's ``rollingUpdate`` without surge)."""
        now, min_ready = self._clock(), ds.spec.min_ready_seconds
        desired = [name for name, (should_run, _) in placement.items() if should_run]
        rolling = ds.spec.update_strategy.rolling_update
        # kube: maxSurge and maxUnavailable both 0 means 1.
        max_unavailable = max(scaled_value(rolling.max_unavailable, len(desired), True), 1)
        unavailable = 0
        replace_now: list[objects_pb2.Pod] = []
        candidates: list[objects_pb2.Pod] = []
        for name in desired:
            pods = by_node.get(name, [])
            live = [pod for pod in pods if not _deleting(pod)]
            if not pods:
                continue  # as kube: only nodes with pods take part (the manage step fills the others)
            if not live:
                unavailable += 1  # its pod is terminating; the replacement comes once it is gone
                continue
            new = [pod for pod in live if pod.metadata.labels.get(REVISION_HASH_LABEL) == revision]
            old = [pod for pod in live if pod.metadata.labels.get(REVISION_HASH_LABEL) != revision]
            if len(new) > 1 or len(old) > 1 or (new and old):
                unavailable += 1  # the manage step sorts such a node out first
            elif new:
                if available_in(new[0], min_ready, now) != 0.0:
                    unavailable += 1
            elif available_in(old[0], min_ready, now) != 0.0:
                replace_now.append(old[0])
            elif unavailable < max_unavailable:
                candidates.append(old[0])
        room = max(0, max_unavailable - unavailable)
        return replace_now + candidates[:room]

    async def _sync_nodes(
        self, ds: objects_pb2.DaemonSet, key: str, creates: list[str], deletes: list[objects_pb2.Pod],
        revision: str,
    ) -> None:
        self.expectations.expect(key, adds=len(creates), deletes=len(deletes))
        failure: Exception | None = None
        for node in creates:
            pod = daemon_pod(ds, node, revision)
            try:
                created = await self._registry.pods.create(pod)
            except Exception as err:
                self.expectations.lower(key, adds=1)
                self.recorder.record(reference(ds), "Warning", "FailedCreate", f"Error creating: {err}")
                failure = failure or err
                continue
            self.recorder.record(reference(ds), "Normal", "SuccessfulCreate",
                                 f"Created pod: {created.metadata.name}")
            log.info("daemonset created pod ds=%s pod=%s node=%s", key, created.metadata.name, node)
        for pod in deletes:
            try:
                await self._registry.pods.delete(pod.metadata.namespace, pod.metadata.name)
            except Exception as err:
                self.expectations.lower(key, deletes=1)
                self.recorder.record(reference(ds), "Warning", "FailedDelete", f"Error deleting: {err}")
                failure = failure or err
                continue
            self.recorder.record(reference(ds), "Normal", "SuccessfulDelete",
                                 f"Deleted pod: {pod.metadata.name}")
            log.info("daemonset deleted pod ds=%s pod=%s", key, pod.metadata.name)
        if failure is not None:
            raise failure

    async def _update_status(
        self, ds: objects_pb2.DaemonSet, placement: Placement, by_node: dict[str, list[objects_pb2.Pod]],
        revision: str,
    ) -> None:
        now, min_ready = self._clock(), ds.spec.min_ready_seconds
        status = objects_pb2.DaemonSetStatus(observed_generation=ds.metadata.generation)
        soonest: float | None = None
        for name, (should_run, _) in placement.items():
            live = (p for p in by_node.get(name, []) if not _deleting(p))
            pods = sorted(live, key=_oldest_first)
            if not should_run:
                status.number_misscheduled += bool(pods)
                continue
            status.desired_number_scheduled += 1
            if not pods:
                continue
            pod = pods[0]
            status.current_number_scheduled += 1
            if pod_ready(pod):
                status.number_ready += 1
                wait = available_in(pod, min_ready, now)
                if wait == 0.0:
                    status.number_available += 1
                elif wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
            if pod.metadata.labels.get(REVISION_HASH_LABEL) == revision:
                status.updated_number_scheduled += 1
        status.number_unavailable = status.desired_number_scheduled - status.number_available
        if soonest is not None:
            self.run_after(ds, soonest + 0.5)

        def change(current: objects_pb2.DaemonSet) -> bool:
            wanted = objects_pb2.DaemonSetStatus()
            wanted.CopyFrom(status)
            wanted.conditions.extend(current.status.conditions)
            if current.status.HasField("collision_count"):
                wanted.collision_count = current.status.collision_count
            if current.status == wanted:
                return False
            current.status.CopyFrom(wanted)
            return True

        await self._registry.daemon_sets.update_status(ds.metadata.namespace, ds.metadata.name,
                                                       ds.metadata.uid, change)
