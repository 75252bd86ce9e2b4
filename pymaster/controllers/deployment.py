"""The Deployment controller (Kubernetes' ``pkg/controller/deployment``): a Deployment owns one
ReplicaSet per pod template it has had; the ReplicaSet of the current template ("new", labelled
and named by the template's pod-template-hash) is scaled up and the others ("old") down, by the
RollingUpdate or the Recreate strategy, and the Deployment's status and conditions follow its
ReplicaSets' counts. The ReplicaSet controller makes the pods.

One sync (level-triggered, from the informers' caches):

1. claim ReplicaSets: adopt orphans whose labels match the selector, release owned ones that no
   longer match;
2. paused: only scaling (a spec.replicas change) and history clean-up, no rollout;
   Progressing Unknown DeploymentPaused / DeploymentResumed;
3. a scaling event (some ReplicaSet sized for another spec.replicas): the sizes are spread in
   proportion (``deployment_rolling.plan_scale``);
4. else the rollout: find or create the new ReplicaSet (an old one whose template equals the
   current one is reused and gets the next revision, so an undo returns to it), then one step of
   RollingUpdate or Recreate, then status, the progress deadline and revisionHistoryLimit.

A Deployment marked for deletion is left alone: the garbage collector handles its ReplicaSets.
The Deployment's own ``deployment.kubernetes.io/revision`` annotation is not written (an apply
replaces annotations wholesale here, so it would flap); the ReplicaSets carry the revisions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import AlreadyExists
from pymaster.api.label_selectors import label_selector_matches
from pymaster.api.workloads import RECREATE, controller_of, controller_reference
from pymaster.controllers.deployment_history import history_to_delete, new_replica_set
from pymaster.controllers.deployment_rolling import Plan, plan_new_rs, plan_old_scale_down, plan_scale
from pymaster.controllers.deployment_status import (
    FOUND_NEW_RS,
    NEW_RS_CREATED,
    PROGRESSING,
    calculate_status,
    new_condition,
    paused_condition,
    recheck_after,
    rollout_status,
    set_condition,
)
from pymaster.controllers.deployment_util import (
    DESIRED_REPLICAS_ANNOTATION,
    REVISION_ANNOTATION,
    Deployment,
    ReplicaSet,
    active,
    copy_deployment_annotations,
    deployment_complete,
    equal_ignore_hash,
    find_new_rs,
    int_annotation,
    max_revision,
    max_surge,
    revision,
    set_replicas_annotations,
)
from pymaster.controllers.informer import InformerFactory, by_controller_uid, object_key
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"
TERMINAL_PHASES = ("Succeeded", "Failed")


def _copy(obj):
    copy = type(obj)()
    copy.CopyFrom(obj)
    return copy


def _selector_empty(selector: objects_pb2.LabelSelector) -> bool:
    return not selector.match_labels and not selector.match_expressions


class DeploymentController(Controller):
    """Rolls Deployments out over their ReplicaSets (see the module docstring)."""

    name = "deployment"

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
        self._recorder = EventRecorder(registry.events, COMPONENT)
        self.deployments = self.informer("deployments")
        self.sets = self.informer("replicasets", {"controller": by_controller_uid})
        self.pods = self.informer("pods", {"controller": by_controller_uid})
        self.deployments.add_handler(lambda old, new: self.enqueue(new or old))
        self.sets.add_handler(self._on_replica_set)
        self.pods.add_handler(self._on_pod)

    async def start(self) -> None:
        self._recorder.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self._recorder.stop()

    # ---- event handlers (they only enqueue) ----

    def _owner(self, rs: ReplicaSet) -> Deployment | None:
        ref = controller_of(rs)
        if ref is None or ref.kind != "Deployment":
            return None
        deployment = self.deployments.get(rs.metadata.namespace, ref.name)
        return deployment if deployment is not None and deployment.metadata.uid == ref.uid else None

    def _on_replica_set(self, old: ReplicaSet | None, new: ReplicaSet | None) -> None:
        for rs in (old, new):
            if rs is not None and (owner := self._owner(rs)) is not None:
                self.enqueue(owner)
        if new is not None and controller_of(new) is None:
            # An orphan: whoever's selector matches may adopt it.
            for deployment in self.deployments.list(new.metadata.namespace):
                if (not _selector_empty(deployment.spec.selector)
                        and label_selector_matches(deployment.spec.selector, new.metadata.labels)):
                    self.enqueue(deployment)

    def _on_pod(self, old: objects_pb2.Pod | None, new: objects_pb2.Pod | None) -> None:
        # Only Recreate waits for pods (the old ones to be gone).
        if new is not None or old is None:
            return
        ref = controller_of(old)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.sets.get(old.metadata.namespace, ref.name)
        if rs is not None and rs.metadata.uid == ref.uid:
            deployment = self._owner(rs)
            if deployment is not None and deployment.spec.strategy.type == RECREATE:
                self.enqueue(deployment)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        cached = self.deployments.get_by_key(key)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        deployment = _copy(cached)
        if _selector_empty(deployment.spec.selector):
            return
        replica_sets = await self._claim(deployment)
        paused = paused_condition(deployment, self._clock())
        if paused is not None:
            await self._write_status(deployment, paused)
        if deployment.spec.paused or self._scaling_event(deployment, replica_sets):
            await self._sync_scale(deployment, replica_sets)
        elif deployment.spec.strategy.type == RECREATE:
            await self._rollout_recreate(deployment, replica_sets)
        else:
            await self._rollout_rolling(deployment, replica_sets)

    async def _claim(self, deployment: Deployment) -> list[ReplicaSet]:
        """The ReplicaSets this Deployment controls, after adopting matching orphans and releasing
        its own that stopped matching (kube's ControllerRefManager)."""
        meta = deployment.metadata
        owned: list[ReplicaSet] = []
        fresh_checked = False
        for rs in self.sets.list(meta.namespace):
            ref = controller_of(rs)
            matches = label_selector_matches(deployment.spec.selector, rs.metadata.labels)
            if ref is not None:
                if ref.uid != meta.uid:
                    continue
                if matches:
                    owned.append(rs)
                else:
                    await self._registry.replica_sets.update_owner_references(
                        rs.metadata.namespace, rs.metadata.name, rs.metadata.uid,
                        lambda refs: [r for r in refs if r.uid != meta.uid])
                    log.info("deployment released replicaset namespace=%s deployment=%s replicaset=%s",
                             meta.namespace, meta.name, rs.metadata.name)
                continue
            if not matches or rs.metadata.HasField("deletion_timestamp"):
                continue
            if not fresh_checked:
                # Adopt only for the Deployment as stored now (not deleted, not replaced).
                live = self._registry.deployments.get(meta.namespace, meta.name)
                if live.metadata.uid != meta.uid or live.metadata.HasField("deletion_timestamp"):
                    return owned
                fresh_checked = True
            adopted = await self._registry.replica_sets.update_owner_references(
                rs.metadata.namespace, rs.metadata.name, rs.metadata.uid,
                lambda refs: None if any(r.controller for r in refs)
                else [*refs, controller_reference(deployment)])
            if controller_of(adopted) is not None and controller_of(adopted).uid == meta.uid:
                owned.append(adopted)
                log.info("deployment adopted replicaset namespace=%s deployment=%s replicaset=%s",
                         meta.namespace, meta.name, rs.metadata.name)
        return owned

    def _scaling_event(self, deployment: Deployment, replica_sets: list[ReplicaSet]) -> bool:
        """Whether an active ReplicaSet was sized for another spec.replicas (kube's
        ``isScalingEvent``)."""
        for rs in active(replica_sets):
            desired = int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
            if desired is not None and desired != deployment.spec.replicas:
                return True
        return False

    async def _sync_scale(self, deployment: Deployment, replica_sets: list[ReplicaSet]) -> None:
        new_rs, old_rss = await self._new_and_old(deployment, replica_sets, create=False)
        plan = plan_scale(deployment, new_rs, old_rss)
        new_rs, old_rss = await self._apply(deployment, plan, new_rs, old_rss)
        if deployment.spec.paused:
            await self._cleanup(deployment, old_rss)
        all_rss = old_rss + ([new_rs] if new_rs is not None else [])
        await self._write_status(deployment, calculate_status(deployment, all_rss, new_rs, self._clock()))

    async def _rollout_rolling(self, deployment: Deployment, replica_sets: list[ReplicaSet]) -> None:
        new_rs, old_rss = await self._new_and_old(deployment, replica_sets, create=True)
        assert new_rs is not None
        plan = plan_new_rs(deployment, new_rs, old_rss)
        if not plan:
            plan = plan_old_scale_down(deployment, new_rs, old_rss)
        if plan:
            new_rs, old_rss = await self._apply(deployment, plan, new_rs, old_rss)
        elif deployment_complete(deployment, deployment.status):
            await self._cleanup(deployment, old_rss)
        await self._sync_rollout_status(deployment, old_rss + [new_rs], new_rs)

    async def _rollout_recreate(self, deployment: Deployment, replica_sets: list[ReplicaSet]) -> None:
        new_rs, old_rss = await self._new_and_old(deployment, replica_sets, create=False)
        running_old = active(old_rss)
        if running_old or self._old_pods_running(old_rss):
            if running_old:
                plan = {rs.metadata.name: 0 for rs in running_old}
                new_rs, old_rss = await self._apply(deployment, plan, new_rs, old_rss)
            everything = old_rss + ([new_rs] if new_rs is not None else [])
            await self._sync_rollout_status(deployment, everything, new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self._new_and_old(deployment, replica_sets, create=True)
        assert new_rs is not None
        new_rs, old_rss = await self._apply(deployment, {new_rs.metadata.name: deployment.spec.replicas},
                                            new_rs, old_rss)
        if deployment_complete(deployment, deployment.status):
            await self._cleanup(deployment, old_rss)
        await self._sync_rollout_status(deployment, old_rss + [new_rs], new_rs)

    def _old_pods_running(self, old_rss: list[ReplicaSet]) -> bool:
        """Whether any pod of an old ReplicaSet still exists and is not finished (terminating pods
        count: Recreate starts the new pods only once the old ones are gone)."""
        if any(rs.status.replicas > 0 for rs in old_rss):
            return True
        return any(pod.status.phase not in TERMINAL_PHASES
                   for rs in old_rss for pod in self.pods.by_index("controller", rs.metadata.uid))

    # ---- the new ReplicaSet ----

    async def _new_and_old(
        self, deployment: Deployment, replica_sets: list[ReplicaSet], create: bool
    ) -> tuple[ReplicaSet | None, list[ReplicaSet]]:
        """The new ReplicaSet (its revision brought up to date; created when ``create``) and the
        old ones (kube's ``getAllReplicaSetsAndSyncRevision``)."""
        new_rs = find_new_rs(deployment, replica_sets)
        old_rss = [rs for rs in replica_sets if new_rs is None or rs.metadata.uid != new_rs.metadata.uid]
        next_revision = max_revision(old_rss) + 1
        if new_rs is not None:
            return await self._sync_new_rs(deployment, new_rs, next_revision), old_rss
        if not create:
            return None, old_rss
        return await self._create_new_rs(deployment, old_rss, next_revision), old_rss

    async def _sync_new_rs(
        self, deployment: Deployment, new_rs: ReplicaSet, next_revision: int
    ) -> ReplicaSet:
        rs = _copy(new_rs)
        changed = copy_deployment_annotations(deployment, rs)
        if revision(rs) < next_revision:
            rs.metadata.annotations[REVISION_ANNOTATION] = str(next_revision)
            changed = True
        if rs.spec.min_ready_seconds != deployment.spec.min_ready_seconds:
            rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
            changed = True
        if changed:
            rs = await self._registry.replica_sets.update(rs)
        if find_condition(deployment.status.conditions, PROGRESSING) is None:
            status = _copy(deployment.status)
            set_condition(status, new_condition(PROGRESSING, "True", FOUND_NEW_RS,
                                                f'Found new replica set "{rs.metadata.name}"', self._clock()))
            await self._write_status(deployment, status)
        return rs

    async def _create_new_rs(
        self, deployment: Deployment, old_rss: list[ReplicaSet], next_revision: int
    ) -> ReplicaSet:
        meta = deployment.metadata
        status = deployment.status
        collision = status.collision_count if status.HasField("collision_count") else None
        rs = new_replica_set(deployment, old_rss, next_revision, collision)
        try:
            created = await self._registry.replica_sets.create(rs)
        except AlreadyExists:
            existing = self._registry.replica_sets.get(meta.namespace, rs.metadata.name)
            ref = controller_of(existing)
            if (ref is not None and ref.uid == meta.uid
                    and equal_ignore_hash(existing.spec.template, deployment.spec.template)):
                return existing  # ours, made by an earlier sync the cache has not seen yet
            # A hash collision with someone else's ReplicaSet: the next hash, on the retry.
            await self._registry.deployments.update_status(
                meta.namespace, meta.name, meta.uid, _bump_collision_count)
            raise
        if created.spec.replicas > 0:
            self._event(deployment, f"Scaled up replica set {created.metadata.name} from 0 to "
                                    f"{created.spec.replicas}")
        status = _copy(deployment.status)
        message = f'Created new replica set "{created.metadata.name}"'
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_CREATED, message, self._clock()))
        await self._write_status(deployment, status)
        return created

    # ---- writes ----

    async def _apply(
        self, deployment: Deployment, plan: Plan, new_rs: ReplicaSet | None, old_rss: list[ReplicaSet]
    ) -> tuple[ReplicaSet | None, list[ReplicaSet]]:
        """Scales the ReplicaSets a plan names; returns the new and old ReplicaSets as written."""

        async def scaled(rs: ReplicaSet) -> ReplicaSet:
            if rs.metadata.name not in plan:
                return rs
            return await self._scale(deployment, rs, plan[rs.metadata.name])

        new_rs = await scaled(new_rs) if new_rs is not None else None
        return new_rs, [await scaled(rs) for rs in old_rss]

    async def _scale(self, deployment: Deployment, rs: ReplicaSet, replicas: int) -> ReplicaSet:
        """Sets spec.replicas and the replica annotations (checked against the cached
        resourceVersion, so a stale cache costs a retry, never a double step)."""
        copy = _copy(rs)
        copy.spec.replicas = replicas
        annotated = set_replicas_annotations(copy, deployment.spec.replicas,
                                             deployment.spec.replicas + max_surge(deployment))
        if replicas == rs.spec.replicas and not annotated:
            return rs
        updated = await self._registry.replica_sets.update(copy)
        if replicas != rs.spec.replicas:
            direction = "up" if replicas > rs.spec.replicas else "down"
            self._event(deployment, f"Scaled {direction} replica set {rs.metadata.name} from "
                                    f"{rs.spec.replicas} to {replicas}")
        return updated

    async def _cleanup(self, deployment: Deployment, old_rss: list[ReplicaSet]) -> None:
        """Deletes the oldest old ReplicaSets beyond revisionHistoryLimit that run nothing."""
        for rs in history_to_delete(deployment, old_rss):
            if self.pods.by_index("controller", rs.metadata.uid):
                continue
            await self._registry.replica_sets.delete(rs.metadata.namespace, rs.metadata.name)
            log.info("deployment history trimmed namespace=%s deployment=%s replicaset=%s",
                     deployment.metadata.namespace, deployment.metadata.name, rs.metadata.name)

    async def _sync_rollout_status(
        self, deployment: Deployment, all_rss: list[ReplicaSet], new_rs: ReplicaSet | None
    ) -> None:
        now = self._clock()
        status = rollout_status(deployment, all_rss, new_rs, now)
        if status == deployment.status:
            # Nothing changed: look again when the progress deadline would pass.
            after = recheck_after(deployment, status, now)
            if after is not None:
                self.run_after(object_key(deployment), after)
            return
        await self._write_status(deployment, status)

    async def _write_status(self, deployment: Deployment, status: objects_pb2.DeploymentStatus) -> None:
        """Writes the status (when it differs) and keeps the working copy in step."""

        def change(obj: Deployment) -> bool:
            if obj.status == status:
                return False
            obj.status.CopyFrom(status)
            return True

        meta = deployment.metadata
        if deployment.status != status:
            await self._registry.deployments.update_status(meta.namespace, meta.name, meta.uid, change)
            deployment.status.CopyFrom(status)

    def _event(self, deployment: Deployment, message: str) -> None:
        self._recorder.record(reference(deployment), "Normal", "ScalingReplicaSet", message)


def _bump_collision_count(obj: Deployment) -> bool:
    current = obj.status.collision_count if obj.status.HasField("collision_count") else 0
    obj.status.collision_count = current + 1
    return True
