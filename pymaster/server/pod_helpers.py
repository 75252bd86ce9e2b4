"""Pure helpers behind the pod RPCs and the scheduler: timestamps, conditions, the status merge of
agent reports, create/update preparation, the graceful-delete decision, container choice for logs
and list/watch filtering.

Nothing here touches the store or gRPC, so every rule is table-tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.errors import FailedPrecondition, ValidationError
from pymaster.api.selectors import FieldSelector, LabelSelector
from pymaster.api.validation import DEFAULT_GRACE_PERIOD_SECONDS

PENDING = "Pending"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
POD_SCHEDULED = "PodScheduled"
# Conditions the master writes; every other pod condition (Initialized, ContainersReady, Ready)
# belongs to the agent that runs the pod.
MASTER_POD_CONDITIONS = frozenset({POD_SCHEDULED})

_C = TypeVar("_C", objects_pb2.PodCondition, objects_pb2.NodeCondition)


def timestamp(seconds: float | None = None) -> Timestamp:
    """A Timestamp of ``seconds`` since the epoch (default: now), in whole seconds like
    Kubernetes' metav1.Time."""
    return Timestamp(seconds=int(time.time() if seconds is None else seconds))


def pod_key(pod: objects_pb2.Pod) -> str:
    """ "namespace/name", the key logs and caches use for a pod."""
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def is_terminal(pod: objects_pb2.Pod) -> bool:
    """True once the pod's phase is Succeeded or Failed: it no longer holds node resources."""
    return pod.status.phase in TERMINAL_PHASES


def is_pending_schedule(pod: objects_pb2.Pod) -> bool:
    """True when the scheduler should place the pod: unbound and not being deleted."""
    return not pod.spec.node_name and not pod.metadata.HasField("deletion_timestamp")


def find_condition(conditions: Iterable[_C], type_: str) -> _C | None:
    """The condition of ``type_`` in a repeated condition field (pod or node), or None."""
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


def set_pod_condition(
    pod: objects_pb2.Pod,
    type_: str,
    status: str,
    reason: str = "",
    message: str = "",
    now: float | None = None,
) -> bool:
    """Sets a condition in place; lastTransitionTime moves only when the status changes.

    Returns:
        True if anything changed.
    """
    condition = find_condition(pod.status.conditions, type_)
    if condition is None:
        condition = pod.status.conditions.add(type=type_)
    elif (condition.status, condition.reason, condition.message) == (status, reason, message):
        return False
    if condition.status != status:
        condition.last_transition_time.CopyFrom(timestamp(now))
    condition.status, condition.reason, condition.message = status, reason, message
    return True


def merge_agent_status(
    current: objects_pb2.PodStatus, reported: objects_pb2.PodStatus
) -> objects_pb2.PodStatus:
    """The status to store when an agent reports ``reported`` for a pod whose stored status is
    ``current``: the agent's status, except that master-owned conditions (PodScheduled) are kept
    from ``current`` and any the agent sent are ignored."""
    merged = objects_pb2.PodStatus()
    merged.CopyFrom(reported)
    del merged.conditions[:]
    merged.conditions.extend(c for c in reported.conditions if c.type not in MASTER_POD_CONDITIONS)
    merged.conditions.extend(c for c in current.conditions if c.type in MASTER_POD_CONDITIONS)
    return merged


def prepare_new_pod(pod: objects_pb2.Pod, uid: str, now: float | None = None) -> None:
    """Sets what the server owns on a pod being created (in place): uid, creationTimestamp,
    generation 1, no deletion marks, and a fresh status in phase Pending."""
    meta = pod.metadata
    meta.uid = uid
    meta.creation_timestamp.CopyFrom(timestamp(now))
    meta.generation = 1
    meta.resource_version = ""
    meta.ClearField("deletion_timestamp")
    meta.ClearField("deletion_grace_period_seconds")
    pod.status.Clear()
    pod.status.phase = PENDING


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
    policies = {c.name: c.image_pull_policy for c in current.spec.containers}
    for container in desired.spec.containers:
        if not container.image_pull_policy:
            container.image_pull_policy = policies.get(container.name, "")


def merge_pod_update(current: objects_pb2.Pod, desired: objects_pb2.Pod) -> objects_pb2.Pod:
    """The pod to store when a user sends ``desired`` (defaulted) over the stored ``current``.

    Labels, annotations and spec come from ``desired``; everything the system set (uid,
    timestamps, status, generation, resourceVersion) stays. spec.nodeName stays the stored one when
    the manifest leaves it empty (the scheduler set it); a different one is left for
    validate_pod_update to reject. generation is bumped when the spec changes.
    """
    merged = objects_pb2.Pod()
    merged.CopyFrom(current)
    merged.metadata.ClearField("labels")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.ClearField("annotations")
    merged.metadata.annotations.update(desired.metadata.annotations)
    merged.spec.CopyFrom(desired.spec)
    if not merged.spec.node_name:
        merged.spec.node_name = current.spec.node_name
    if merged.spec != current.spec:
        merged.metadata.generation = current.metadata.generation + 1
    return merged


@dataclass(frozen=True)
class DeletePlan:
    """What a DeletePod does.

    Attributes:
        immediate: Remove the pod from the store now.
        grace_seconds: Otherwise, the grace period to record (deletionGracePeriodSeconds).
        deadline: Otherwise, the deletionTimestamp to record (epoch seconds); None when the pod is
            already marked with an earlier or equal deadline: nothing to write.
    """

    immediate: bool
    grace_seconds: int = 0
    deadline: int | None = None


def plan_pod_delete(
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
    """The container whose logs a PodLogs request means.

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


class ObjectFilter:
    """The namespace, label selector and field selector of a list or watch request.

    Bad selectors raise ValidationError (on ``labelSelector``/``fieldSelector``) at construction,
    before any response is sent.
    """

    def __init__(self, kind: str, namespace: str = "", label_selector: str = "", field_selector: str = ""):
        """
        Args:
            kind: "pods" or "nodes" (which fields the field selector may name).
            namespace: Only this namespace; "" for all (always "" for nodes).
        """
        self.namespace = namespace
        self._labels = LabelSelector.parse(label_selector)
        self._fields = FieldSelector.parse(field_selector, kind)

    @classmethod
    def of(cls, kind: str, request: services_pb2.ListRequest | services_pb2.WatchRequest) -> ObjectFilter:
        """The filter of a request; nodes ignore the request's namespace."""
        namespace = request.namespace if kind == "pods" else ""
        return cls(kind, namespace, request.label_selector, request.field_selector)

    @property
    def has_selectors(self) -> bool:
        """True when a label or field selector is set (objects may enter and leave the selection)."""
        return not (self._labels.empty() and self._fields.empty())

    def matches(self, obj: objects_pb2.Pod | objects_pb2.Node) -> bool:
        """True if ``obj`` is in the namespace (when one is set) and matches both selectors."""
        if self.namespace and obj.metadata.namespace != self.namespace:
            return False
        return self._labels.matches(obj.metadata.labels) and self._fields.matches(obj)


def watch_event_type(store_type: str, matches: bool, was_matched: bool) -> str | None:
    """The event a filtered watcher sees for a store event, Kubernetes-style.

    An object that starts matching the selectors is ADDED, one that stops matching is DELETED,
    one that keeps matching is MODIFIED, one that never matched is not sent (None).

    Args:
        store_type: "ADDED", "MODIFIED" or "DELETED" from the store.
        matches: Whether the object after the event matches.
        was_matched: Whether the watcher had the object (it was sent before and still matched).
    """
    if store_type == "DELETED":
        return "DELETED" if (matches or was_matched) else None
    if matches:
        return "MODIFIED" if was_matched and store_type == "MODIFIED" else "ADDED"
    return "DELETED" if was_matched else None
