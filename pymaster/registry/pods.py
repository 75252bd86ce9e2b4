"""The pod registry (kube-apiserver's ``pkg/registry/core/pod``): every rule for writing a pod, used
by the servicers, the scheduler and, later, the controllers that create pods, so a pod made by a
controller gets the same defaulting, validation and admission as a user's.

- create: limits, defaulting (with the default tolerations and the priority of the
  priorityClassName), validation, admission, then what the server owns (uid, timestamps,
  generation 1, phase Pending, the QoS class, SchedulingGated for a gated pod);
- update (and apply): only labels, annotations and container images may change (kubectl's rule);
  admission runs again only when the spec changes, so a pod admitted under an older policy can
  still be relabelled (Kubernetes' Pod Security admission exempts such updates too);
- delete: graceful, like Kubernetes (``plan_delete``);
- the scheduler's writes (bind, PodScheduled=False) and the agent's (status, confirmation that
  a pod marked for deletion stopped) check their preconditions inside the store's write, so a pod
  re-created or re-bound meanwhile is never touched.

The pure rules (``prepare_create``, ``prepare_update``, ``plan_delete`` ...) are module functions,
table-tested on their own; ``PodRegistry`` applies them to the store.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy, check_pod
from pymaster.api.conditions import set_condition, timestamp
from pymaster.api.default_tolerations import add_default_tolerations
from pymaster.api.defaults import default_pod
from pymaster.api.errors import Conflict, FailedPrecondition, Forbidden, NotFound, ValidationError
from pymaster.api.kinds import NODES, PODS
from pymaster.api.limits import check_grace_period, check_object_size, check_pod_limits, check_pod_status
from pymaster.api.pods import (
    DEFAULT_GRACE_PERIOD_SECONDS,
    MASTER_POD_CONDITIONS,
    PENDING,
    POD_SCHEDULED,
    is_pending_schedule,
    qos_class,
)
from pymaster.api.priority import resolve_priority
from pymaster.api.validation import validate_pod, validate_pod_update
from pymaster.registry.base import UserObjectRegistry, merge_user_update, namespace_or_default
from pymaster.store.base import Store

log = logging.getLogger(__name__)

UNSCHEDULABLE = "Unschedulable"
# PodScheduled=False while spec.schedulingGates is not empty (Kubernetes' wording).
SCHEDULING_GATED = "SchedulingGated"
SCHEDULING_GATED_MESSAGE = "Scheduling is blocked due to non-empty scheduling gates"


# ---- pure rules ----


def admit(pod: objects_pb2.Pod, policy: AdmissionPolicy) -> None:
    """Refuses what ``policy`` does not allow.

    Raises:
        Forbidden: PERMISSION_DENIED naming every refused field and the flag that allows it.
    """
    violations = check_pod(pod, policy)
    if violations:
        raise Forbidden("; ".join(str(v) for v in violations))


def add_tolerations(pod: objects_pb2.Pod, policy: AdmissionPolicy) -> None:
    """The DefaultTolerationSeconds admission with the master's flags (in place)."""
    add_default_tolerations(pod, policy.not_ready_toleration_seconds, policy.unreachable_toleration_seconds)


def prepare_create(
    pod: objects_pb2.Pod, policy: AdmissionPolicy, uid: str, now: float | None = None
) -> None:
    """Makes a user's pod the one to store, in place: limits, defaults, validation, admission,
    then what the server owns: uid, creationTimestamp, generation 1, no deletion marks, a fresh
    status in phase Pending with its QoS class (immutable from then on, as in Kubernetes) and,
    for a pod with scheduling gates, PodScheduled=False (SchedulingGated).

    Raises:
        ValidationError, Forbidden: naming the field.
    """
    check_pod_limits(pod)
    default_pod(pod)
    add_tolerations(pod, policy)
    validate_pod(pod)
    resolve_priority(pod)
    admit(pod, policy)
    meta = pod.metadata
    meta.uid = uid
    meta.creation_timestamp.CopyFrom(timestamp(now))
    meta.generation = 1
    meta.resource_version = ""
    meta.ClearField("deletion_timestamp")
    meta.ClearField("deletion_grace_period_seconds")
    pod.status.Clear()
    pod.status.phase = PENDING
    pod.status.qos_class = qos_class(pod)
    if pod.spec.scheduling_gates and not pod.spec.node_name:
        # As kube-apiserver does at creation: a gated pod says why it waits from the start.
        set_condition(pod.status.conditions, POD_SCHEDULED, "False", SCHEDULING_GATED,
                      SCHEDULING_GATED_MESSAGE, now=now)


def same_desired_state(a: objects_pb2.Pod, b: objects_pb2.Pod) -> bool:
    """True when two pods have the same labels, annotations and spec (what a user may change)."""
    return (
        a.metadata.labels == b.metadata.labels
        and a.metadata.annotations == b.metadata.annotations
        and a.spec == b.spec
    )


def keep_defaulted_fields(current: objects_pb2.Pod, desired: objects_pb2.Pod) -> None:
    """Fills what a manifest leaves unset from the stored pod, before defaulting (in place), the
    way kubectl apply keeps live values: a container's imagePullPolicy was defaulted from the
    image at creation and must not be re-derived from a new image (the field is immutable)."""
    live = [*current.spec.init_containers, *current.spec.containers]
    policies = {c.name: c.image_pull_policy for c in live}
    for container in [*desired.spec.init_containers, *desired.spec.containers]:
        if not container.image_pull_policy:
            container.image_pull_policy = policies.get(container.name, "")


def merge_update(current: objects_pb2.Pod, desired: objects_pb2.Pod) -> objects_pb2.Pod:
    """The pod to store when a user sends ``desired`` (defaulted) over the stored ``current``.

    Labels, annotations and spec come from ``desired``; everything the system set (uid,
    timestamps, status, generation, resourceVersion) stays. spec.nodeName stays the stored one when
    the manifest leaves it empty (the scheduler set it); a different one is left for
    validate_pod_update to reject. generation is bumped when the spec changes.
    """
    return merge_user_update(current, desired, _keep_node_name)


def _keep_node_name(spec: objects_pb2.PodSpec, current: objects_pb2.PodSpec) -> None:
    if not spec.node_name:
        spec.node_name = current.node_name


def prepare_update(
    current: objects_pb2.Pod, request: objects_pb2.Pod, policy: AdmissionPolicy
) -> objects_pb2.Pod | None:
    """The pod to store for a user's update (``request``) of ``current``, or None when it changes
    nothing a user may change.

    Raises:
        ValidationError: a field that may not change, or an invalid pod; Forbidden: admission.
    """
    desired = objects_pb2.Pod()
    desired.CopyFrom(request)
    keep_defaulted_fields(current, desired)
    default_pod(desired)
    # As at creation, so that re-applying the same manifest changes nothing.
    add_tolerations(desired, policy)
    resolve_priority(desired)
    merged = merge_update(current, desired)
    validate_pod_update(current, merged)
    if same_desired_state(current, merged):
        return None
    if merged.spec != current.spec:
        admit(merged, policy)
    check_object_size("pod", merged)
    return merged


def merge_agent_status(
    current: objects_pb2.PodStatus, reported: objects_pb2.PodStatus
) -> objects_pb2.PodStatus:
    """The status to store when an agent reports ``reported`` for a pod whose stored status is
    ``current``: the agent's status, except that master-owned conditions (PodScheduled) are kept
    from ``current`` and any the agent sent are ignored, and so is the QoS class, set at creation
    (an agent's only fills it in for a pod stored without one)."""
    merged = objects_pb2.PodStatus()
    merged.CopyFrom(reported)
    merged.qos_class = current.qos_class or reported.qos_class
    del merged.conditions[:]
    merged.conditions.extend(c for c in reported.conditions if c.type not in MASTER_POD_CONDITIONS)
    merged.conditions.extend(c for c in current.conditions if c.type in MASTER_POD_CONDITIONS)
    return merged


@dataclass(frozen=True)
class DeletePlan:
    """What a pod deletion does.

    Attributes:
        immediate: Remove the pod from the store now.
        grace_seconds: Otherwise, the grace period to record (deletionGracePeriodSeconds).
        deadline: Otherwise, the deletionTimestamp to record (epoch seconds); None when the pod is
            already marked with an earlier or equal deadline: nothing to write.
    """

    immediate: bool
    grace_seconds: int = 0
    deadline: int | None = None


def plan_delete(
    pod: objects_pb2.Pod, *, node_exists: bool, grace_period: int | None, force: bool, now: float
) -> DeletePlan:
    """Decides how to delete a pod, like Kubernetes' graceful deletion.

    A pod that no agent runs (unbound, or its node object is gone) is removed at once, and so is
    one deleted with force and grace 0. Otherwise it is marked: deletionTimestamp = now + grace,
    where grace is the request's or else the pod's terminationGracePeriodSeconds, and a grace of
    0 without force counts as 1 (the agent still gets to stop the containers). A later delete may
    shorten the deadline, never lengthen it.

    Args:
        grace_period: The request's grace period; None to use the pod's. With force and None,
            0 (kubectl's --force).

    Raises:
        ValidationError: a negative grace period.
    """
    if grace_period is not None and grace_period < 0:
        raise ValidationError("gracePeriodSeconds", "must be greater than or equal to 0")
    if force and grace_period is None:
        grace_period = 0
    if not pod.spec.node_name or not node_exists or (force and grace_period == 0):
        return DeletePlan(immediate=True)
    if grace_period is None:
        spec = pod.spec
        has_grace = spec.HasField("termination_grace_period_seconds")
        grace_period = spec.termination_grace_period_seconds if has_grace else DEFAULT_GRACE_PERIOD_SECONDS
    grace = max(grace_period, 1)
    deadline = int(now) + grace
    meta = pod.metadata
    if meta.HasField("deletion_timestamp") and meta.deletion_timestamp.seconds <= deadline:
        return DeletePlan(immediate=False, grace_seconds=meta.deletion_grace_period_seconds, deadline=None)
    return DeletePlan(immediate=False, grace_seconds=grace, deadline=deadline)


def apply_delete_plan(pod: objects_pb2.Pod, plan: DeletePlan) -> bool:
    """Marks ``pod`` in place per a non-immediate plan. Returns True if it changed."""
    if plan.immediate or plan.deadline is None:
        return False
    pod.metadata.deletion_timestamp.CopyFrom(Timestamp(seconds=plan.deadline))
    pod.metadata.deletion_grace_period_seconds = plan.grace_seconds
    return True


def log_container(pod: objects_pb2.Pod, container: str) -> str:
    """The container whose logs a request means.

    Raises:
        FailedPrecondition: the pod is not bound to a node yet.
        ValidationError: on ``container``: none named and several exist, or an unknown name.
    """
    name = pod.metadata.name
    if not pod.spec.node_name:
        raise FailedPrecondition(f"pod {name} is not scheduled yet")
    names = [c.name for c in pod.spec.containers]
    if not container:
        if len(names) == 1:
            return names[0]
        raise ValidationError(
            "container",
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
        )
    if container not in names:
        raise ValidationError(
            "container",
            f"container {container} is not valid for pod {name}, choose one of: [{' '.join(names)}]",
        )
    return container


def check_bound_to(pod: objects_pb2.Pod, node: str | None, verb: str) -> None:
    """Refuses a node acting on a pod not bound to it (``node`` None: not a node, no check).

    Raises:
        Forbidden: naming the node, the pod and where it is bound.
    """
    if node is not None and pod.spec.node_name != node:
        meta, bound = pod.metadata, pod.spec.node_name
        raise Forbidden(
            f'node "{node}" may not {verb} pod {meta.namespace}/{meta.name} bound to node "{bound}"'
        )


# ---- the registry ----


class PodRegistry(UserObjectRegistry):
    """Writes of pods, by users, the scheduler and agents.

    Args:
        store: The store.
        admission: What pods may do beyond the safe default (default: nothing more).
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(
        self, store: Store, admission: AdmissionPolicy | None = None, clock: Callable[[], float] = time.time
    ):
        super().__init__(store, PODS, clock)
        self.admission = admission or AdmissionPolicy()

    # ---- users ----

    async def create(self, request: objects_pb2.Pod) -> objects_pb2.Pod:
        """Creates a pod from a user's (or a controller's) manifest."""
        pod = objects_pb2.Pod()
        pod.CopyFrom(request)
        prepare_create(pod, self.admission, str(uuid.uuid4()), self._clock())
        created = await self._store.create(PODS.resource, pod)
        log.info("pod created pod=%s/%s uid=%s", created.metadata.namespace, created.metadata.name,
                 created.metadata.uid)
        return created

    def prepare_update(self, current: objects_pb2.Pod, request: objects_pb2.Pod) -> objects_pb2.Pod | None:
        return prepare_update(current, request, self.admission)

    async def apply(
        self, request: objects_pb2.Pod, *, record: bool = True
    ) -> tuple[objects_pb2.Pod, str]:
        """Creates the pod, or updates what may change; returns it and kubectl's action word
        ("created", "configured" or "unchanged")."""
        check_pod_limits(request)
        return await super().apply(request, record=record)

    async def update(self, request: objects_pb2.Pod) -> objects_pb2.Pod:
        """Updates labels, annotations or images; metadata.resourceVersion, when set, must be the
        stored one (else Conflict)."""
        check_pod_limits(request)
        return await super().update(request)

    async def delete(
        self, namespace: str, name: str, grace_period: int | None = None, force: bool = False
    ) -> objects_pb2.Pod:
        """Deletes gracefully (see ``plan_delete``); returns the pod as marked, or as removed."""
        self.check_key(namespace, name)
        if grace_period is not None:
            check_grace_period("gracePeriodSeconds", grace_period)
        namespace = namespace_or_default(namespace)
        pod = self.get(namespace, name)
        node_exists = bool(pod.spec.node_name) and self._exists(NODES.resource, "", pod.spec.node_name)
        plan = plan_delete(pod, node_exists=node_exists, grace_period=grace_period, force=force,
                           now=self._clock())
        if plan.immediate:
            deleted = await self._store.delete(PODS.resource, namespace, name, uid=pod.metadata.uid)
            log.info("pod deleted pod=%s/%s", namespace, name)
            return deleted

        def mark(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if current.metadata.uid != pod.metadata.uid:
                raise NotFound(f'pods "{name}" not found')
            return current if apply_delete_plan(current, plan) else None

        marked = await self._store.mutate(PODS.resource, namespace, name, mark)
        log.info("pod marked for deletion pod=%s/%s grace_period=%d", namespace, name,
                 marked.metadata.deletion_grace_period_seconds)
        return marked

    # ---- the scheduler ----

    async def bind(self, pod: objects_pb2.Pod, node_name: str) -> objects_pb2.Pod:
        """Binds a pending pod to a node (spec.nodeName, PodScheduled=True), only if it is still
        the same pod and still unbound; returns the stored pod either way."""
        uid, now = pod.metadata.uid, self._clock()

        def bind(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if current.metadata.uid != uid or not is_pending_schedule(current):
                return None
            current.spec.node_name = node_name
            set_condition(current.status.conditions, POD_SCHEDULED, "True", now=now)
            return current

        return await self._store.mutate(PODS.resource, pod.metadata.namespace, pod.metadata.name, bind)

    async def bind_many(
        self, binds: Sequence[tuple[objects_pb2.Pod, str]]
    ) -> list[objects_pb2.Pod | Exception]:
        """``bind`` for several pods in one store transaction (one fsync); per bind the stored pod
        (bound, or as it is when it changed meanwhile) or the error (NotFound: deleted)."""
        now = self._clock()

        def binder(uid: str, node_name: str) -> Callable[[objects_pb2.Pod], objects_pb2.Pod | None]:
            def bind(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
                if current.metadata.uid != uid or not is_pending_schedule(current):
                    return None
                current.spec.node_name = node_name
                set_condition(current.status.conditions, POD_SCHEDULED, "True", now=now)
                return current

            return bind

        items = [(pod.metadata.namespace, pod.metadata.name, binder(pod.metadata.uid, node))
                 for pod, node in binds]
        return await self._store.mutate_many(PODS.resource, items)  # type: ignore[return-value]

    async def mark_gated(self, pod: objects_pb2.Pod) -> objects_pb2.Pod:
        """PodScheduled=False, reason SchedulingGated, for a pending pod with scheduling gates
        (written only when it changes); returns the stored pod."""
        uid, now = pod.metadata.uid, self._clock()

        def mark(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if current.metadata.uid != uid or not is_pending_schedule(current):
                return None
            if not current.spec.scheduling_gates:
                return None
            changed = set_condition(current.status.conditions, POD_SCHEDULED, "False", SCHEDULING_GATED,
                                    SCHEDULING_GATED_MESSAGE, now=now)
            return current if changed else None

        return await self._store.mutate(PODS.resource, pod.metadata.namespace, pod.metadata.name, mark)

    async def mark_unschedulable(self, pod: objects_pb2.Pod, message: str) -> objects_pb2.Pod:
        """PodScheduled=False, reason Unschedulable, with the scheduler's explanation (written only
        when it changes and the pod is still the same pending pod); returns the stored pod."""
        uid, now = pod.metadata.uid, self._clock()

        def mark(current: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if current.metadata.uid != uid or not is_pending_schedule(current):
                return None
            changed = set_condition(current.status.conditions, POD_SCHEDULED, "False", UNSCHEDULABLE,
                                    message, now=now)
            return current if changed else None

        return await self._store.mutate(PODS.resource, pod.metadata.namespace, pod.metadata.name, mark)

    # ---- agents ----

    async def update_status(
        self, namespace: str, name: str, uid: str, status: objects_pb2.PodStatus, node: str | None = None
    ) -> objects_pb2.Pod:
        """Stores what an agent observed of a pod (conditions the master owns are kept).

        Args:
            uid: The pod the agent means; another pod of that name is NotFound.
            node: The calling node (None for the admin): it may only update pods bound to it.
        """
        self.check_key(namespace, name)
        check_pod_status(status)

        def update(pod: objects_pb2.Pod) -> objects_pb2.Pod | None:
            if uid and pod.metadata.uid != uid:
                raise NotFound(f'pods "{name}" with uid {uid} not found')
            check_bound_to(pod, node, "update")
            merged = merge_agent_status(pod.status, status)
            if merged == pod.status:
                return None
            pod.status.CopyFrom(merged)
            check_object_size("pod", pod)
            return pod

        return await self._store.mutate(PODS.resource, namespace_or_default(namespace), name, update)

    async def confirm_terminated(self, namespace: str, name: str, uid: str, node: str | None = None) -> bool:
        """An agent stopped every container of a pod marked for deletion: removes it. Anything
        else (gone, another uid, not marked) is a no-op. Returns whether it removed the pod."""
        self.check_key(namespace, name)
        namespace = namespace_or_default(namespace)
        try:
            pod = self.get(namespace, name)
        except NotFound:
            return False
        if pod.metadata.uid != uid or not pod.metadata.HasField("deletion_timestamp"):
            return False
        # No await since the get: the pod is still the one checked (the uid pins it for the delete).
        check_bound_to(pod, node, "delete")
        try:
            await self._store.delete(PODS.resource, namespace, name, uid=uid)
        except (NotFound, Conflict):
            return False
        log.info("pod terminated and removed pod=%s/%s uid=%s", namespace, name, uid)
        return True

