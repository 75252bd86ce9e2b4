"""The ReplicaSet controller (Kubernetes' ``pkg/controller/replicaset``): keeps
``spec.replicas`` active pods matching each ReplicaSet's selector, and its status.

A sync of one ReplicaSet, level-triggered from the informers' caches:

1. claim: owned pods (controller reference to this uid) whose labels stopped matching are
   released; orphans of the namespace that match are adopted (never by a ReplicaSet being
   deleted, whose fresh copy is read from the store first, as kube's ``RecheckDeletionTimestamp``);
2. manage, only when the expectations of the last sync are met (so a pod created a moment ago
   and not yet in the cache is never created twice): missing pods are created through the pod
   registry (defaults, validation and admission, as a user's) in slow-start batches of 1, 2, 4 ...
   stopping at the first error; surplus pods are deleted gracefully, least valuable first
   (``replicaset_pods.deletion_order``);
3. status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (Ready for
   minReadySeconds; the sync comes back when the next pod becomes available), observedGeneration,
   and the ReplicaFailure condition while creates or deletes fail; written only on a change.

A failed create records a FailedCreate event and the sync raises, so the work queue retries with
its growing back-off (5 ms doubling up to 1000 s), never in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.api.workloads import controller_of, controller_reference, generate_name, pod_from_template
from pymaster.controllers.expectations import Expectations
from pymaster.controllers.informer import InformerFactory, by_controller_uid
from pymaster.controllers.replicaset_pods import (
    FAILED_CREATE,
    FAILED_DELETE,
    compute_status,
    deletion_order,
    is_active,
    next_available_in,
    selector_matches,
)
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"
BURST_REPLICAS = 500  # kube's burstReplicas: at most this many creates or deletes per sync
KIND, API_VERSION = "ReplicaSet", "apps/v1"


def orphans_by_namespace(pod: Message) -> list[str]:
    """Index value: the namespace of a pod no controller owns (the candidates for adoption)."""
    return [] if controller_of(pod) is not None else [pod.metadata.namespace]


def _owner_key(pod: Message) -> tuple[str, str] | None:
    """(ReplicaSet key, its uid) of the ReplicaSet controlling ``pod``, or None."""
    ref = controller_of(pod)
    if ref is None or ref.kind != KIND or ref.api_version != API_VERSION:
        return None
    return f"{pod.metadata.namespace}/{ref.name}", ref.uid


class ManageError(Exception):
    """Creates or deletes of one sync failed (the first error's reason and message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class ReplicaSetController(Controller):
    """Keeps every ReplicaSet's pods (see the module docstring).

    Args:
        registry: The registry pods and statuses are written through.
        informers: The shared informers (replicasets, pods).
        metrics: The work queue's metrics.
        clock: Epoch seconds (availability after minReadySeconds).
    """

    name = "replicaset"
    workers = 5  # kube's --concurrent-replicaset-syncs

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
        self.events = EventRecorder(registry.events, COMPONENT)
        self.sets = self.informer("replicasets")
        self.pods = self.informer("pods", {"controller": by_controller_uid,
                                           "rs-orphans": orphans_by_namespace})
        self.sets.add_handler(lambda old, new: self.enqueue(new if new is not None else old))
        self.pods.add_handler(self._pod_changed)

    async def start(self) -> None:
        self.events.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.events.stop()

    # ---- pod events -> keys ----

    def _pod_changed(self, old: Message | None, new: Message | None) -> None:
        if old is not None and new is not None and old.metadata.uid != new.metadata.uid:
            self._pod_changed(old, None)  # deleted and recreated under the same name
            self._pod_changed(None, new)
            return
        if new is None:
            self._pod_gone(old)
            return
        if old is None:
            if new.metadata.HasField("deletion_timestamp"):
                self._pod_gone(new)  # seen first already terminating (a relist)
                return
            owner = _owner_key(new)
            if owner is not None:
                if self._current_uid(owner[0]) == owner[1]:
                    self.expectations.creation_observed(owner[0])
                self.enqueue(owner[0])
            else:
                self._enqueue_matching(new)
            return
        old_owner, owner = _owner_key(old), _owner_key(new)
        if old_owner is not None and old_owner != owner:
            self.enqueue(old_owner[0])  # released (or taken by another): the old owner recounts
        if new.metadata.HasField("deletion_timestamp") and not old.metadata.HasField("deletion_timestamp"):
            self._pod_gone(new)  # graceful deletion started: it no longer counts
            return
        if owner is not None:
            self.enqueue(owner[0])
        elif controller_of(new) is None and (old_owner is not None
                                             or old.metadata.labels != new.metadata.labels):
            self._enqueue_matching(new)

    def _pod_gone(self, pod: Message) -> None:
        owner = _owner_key(pod)
        if owner is not None:
            self.expectations.deletion_observed(owner[0], pod.metadata.uid)
            self.enqueue(owner[0])

    def _current_uid(self, key: str) -> str | None:
        rs = self.sets.get_by_key(key)
        return None if rs is None else rs.metadata.uid

    def _enqueue_matching(self, pod: Message) -> None:
        """An orphan: every ReplicaSet of its namespace that would adopt it syncs."""
        for rs in self.sets.list(pod.metadata.namespace):
            if selector_matches(rs, pod):
                self.enqueue(rs)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        rs = self.sets.get_by_key(key)
        if rs is None:
            self.expectations.delete(key)
            return
        deleting = rs.metadata.HasField("deletion_timestamp")
        if deleting:
            self.expectations.delete(key)
        pods = await self._claim(rs, deleting)
        active = [pod for pod in pods if is_active(pod)]
        failure: ManageError | None = None
        if not deleting and self.expectations.satisfied(key):
            try:
                await self._manage(key, rs, active)
            except ManageError as err:
                failure = err
        await self._update_status(rs, active, failure)
        if failure is not None:
            raise failure

    async def _claim(self, rs: objects_pb2.ReplicaSet, deleting: bool) -> list[objects_pb2.Pod]:
        """The pods ``rs`` controls after releasing the owned pods that stopped matching and
        adopting the matching orphans (kube's ClaimPods)."""
        uid, namespace = rs.metadata.uid, rs.metadata.namespace
        claimed: list[objects_pb2.Pod] = []
        for pod in self.pods.by_index("controller", uid):
            if selector_matches(rs, pod):
                claimed.append(pod)
            elif not deleting and not pod.metadata.HasField("deletion_timestamp"):
                await self._set_controller(rs, pod, adopt=False)
        if deleting:
            return claimed
        orphans = [pod for pod in self.pods.by_index("rs-orphans", namespace)
                   if is_active(pod) and selector_matches(rs, pod)]
        if orphans and self._fresh_and_alive(rs):
            for pod in orphans:
                if await self._set_controller(rs, pod, adopt=True):
                    claimed.append(pod)
        return claimed

    def _fresh_and_alive(self, rs: objects_pb2.ReplicaSet) -> bool:
        """The stored ReplicaSet is still this one and not being deleted (checked before
        adopting: the cache may not show a deletion yet)."""
        try:
            current = self._registry.replica_sets.get(rs.metadata.namespace, rs.metadata.name)
        except NotFound:
            return False
        return current.metadata.uid == rs.metadata.uid and not current.metadata.HasField("deletion_timestamp")

    async def _set_controller(self, rs: objects_pb2.ReplicaSet, pod: objects_pb2.Pod, adopt: bool) -> bool:
        """Adopts (adds the controller reference) or releases (removes it) ``pod``; returns
        whether the pod ended as wanted."""
        uid = rs.metadata.uid

        def change(refs: list[objects_pb2.OwnerReference]) -> list[objects_pb2.OwnerReference] | None:
            if adopt:
                if any(ref.controller for ref in refs):
                    return None  # another controller was first
                return [*refs, controller_reference(rs)]
            return [ref for ref in refs if ref.uid != uid]

        try:
            updated = await self._registry.pods.update_owner_references(
                pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, change)
        except NotFound:
            return False
        owner = controller_of(updated)
        done = (owner is not None and owner.uid == uid) if adopt else (owner is None or owner.uid != uid)
        if done:
            log.info("replicaset %s pod namespace=%s pod=%s replicaset=%s",
                     "adopted" if adopt else "released", pod.metadata.namespace, pod.metadata.name,
                     rs.metadata.name)
        return done

    async def _manage(self, key: str, rs: objects_pb2.ReplicaSet, active: list[objects_pb2.Pod]) -> None:
        """Creates or deletes pods toward spec.replicas. Raises ManageError on a failure."""
        diff = len(active) - rs.spec.replicas
        if diff < 0:
            await self._create(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete(key, rs, deletion_order(active)[:min(diff, BURST_REPLICAS)])

    async def _create(self, key: str, rs: objects_pb2.ReplicaSet, count: int) -> None:
        """Creates ``count`` pods in slow-start batches (1, 2, 4 ...): a template the pod rules
        refuse fails once, not ``count`` times."""
        self.expectations.expect(key, adds=count)
        created, batch, first_error = 0, 1, None
        while created < count and first_error is None:
            size = min(batch, count - created)
            results = await asyncio.gather(*(self._create_one(rs) for _ in range(size)),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    self.expectations.lower(key, adds=1)
                    first_error = first_error or result
            created += size
            batch *= 2
        if first_error is not None:
            skipped = count - created
            if skipped:
                self.expectations.lower(key, adds=skipped)
            raise ManageError(FAILED_CREATE, str(first_error)) from first_error

    async def _create_one(self, rs: objects_pb2.ReplicaSet) -> None:
        pod = pod_from_template(rs.spec.template, rs, generate_name(f"{rs.metadata.name}-"))
        try:
            created = await self._registry.pods.create(pod)
        except Exception as err:
            self.events.record(reference(rs), "Warning", FAILED_CREATE, f"Error creating: {err}")
            raise
        self.events.record(reference(rs), "Normal", "SuccessfulCreate",
                           f"Created pod: {created.metadata.name}")

    async def _delete(self, key: str, rs: objects_pb2.ReplicaSet, victims: list[objects_pb2.Pod]) -> None:
        self.expectations.expect_deletions(key, [pod.metadata.uid for pod in victims])
        results = await asyncio.gather(*(self._delete_one(key, rs, pod) for pod in victims),
                                       return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise ManageError(FAILED_DELETE, str(errors[0])) from errors[0]

    async def _delete_one(self, key: str, rs: objects_pb2.ReplicaSet, pod: objects_pb2.Pod) -> None:
        name = pod.metadata.name
        try:
            await self._registry.pods.delete(pod.metadata.namespace, name)
        except NotFound:
            self.expectations.deletion_observed(key, pod.metadata.uid)  # gone already: nothing to wait for
            return
        except Exception as err:
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.events.record(reference(rs), "Warning", FAILED_DELETE, f"Error deleting: {err}")
            raise
        self.events.record(reference(rs), "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    async def _update_status(
        self, rs: objects_pb2.ReplicaSet, active: list[objects_pb2.Pod], failure: ManageError | None
    ) -> None:
        now = self._clock()
        problem = None if failure is None else (failure.reason, str(failure))
        wanted = compute_status(rs, rs.status, active, problem, now)
        if wanted != rs.status:

            def change(current: Message) -> bool:
                status = compute_status(rs, current.status, active, problem, now)
                if status == current.status:
                    return False
                current.status.CopyFrom(status)
                return True

            await self._registry.replica_sets.update_status(rs.metadata.namespace, rs.metadata.name,
                                                            rs.metadata.uid, change)
        if rs.spec.min_ready_seconds > 0:
            wait = next_available_in(active, rs.spec.min_ready_seconds, now)
            if wait is not None:
                self.run_after(rs, wait + 0.5)  # timestamps are whole seconds
