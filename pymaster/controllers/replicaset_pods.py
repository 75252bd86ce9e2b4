"""What the ReplicaSet controller decides about pods, as pure functions (Kubernetes'
``pkg/controller/controller_utils.go`` and ``pkg/controller/replicaset``): which pods count
(active), which are ready and available (minReadySeconds), which go first on a scale down (the
ActivePodsWithRanks order), the names of new pods (``generateName``) and the status a set of
pods gives a ReplicaSet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.api.label_selectors import label_selector_matches
from pymaster.api.pods import is_terminal

REPLICA_FAILURE = "ReplicaFailure"
FAILED_CREATE = "FailedCreate"
FAILED_DELETE = "FailedDelete"

# kube's podPhaseToOrdinal: on a scale down Pending goes before Unknown before Running.
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def is_active(pod: objects_pb2.Pod) -> bool:
    """Counts toward replicas: not Succeeded/Failed and not being deleted (FilterActivePods)."""
    return not is_terminal(pod) and not pod.metadata.HasField("deletion_timestamp")


def ready_since(pod: objects_pb2.Pod) -> float | None:
    """Epoch seconds since which the pod is Ready, or None when it is not Ready."""
    condition = find_condition(pod.status.conditions, "Ready")
    if condition is None or condition.status != "True":
        return None
    return float(condition.last_transition_time.seconds)


def is_available(pod: objects_pb2.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (kube's IsPodAvailable)."""
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds == 0 or (since > 0 and since + min_ready_seconds <= now)


def next_available_in(pods: Iterable[objects_pb2.Pod], min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the first Ready but not yet available pod becomes available, or None."""
    waits = [since + min_ready_seconds - now for pod in pods
             if (since := ready_since(pod)) is not None and not is_available(pod, min_ready_seconds, now)]
    return max(min(waits), 0.0) if waits else None


def _max_restarts(pod: objects_pb2.Pod) -> int:
    return max((status.restart_count for status in pod.status.container_statuses), default=0)


def deletion_order(pods: list[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
    """``pods`` sorted least valuable first, as kube's ActivePodsWithRanks: unscheduled, then
    Pending before Unknown before Running, not Ready before Ready, more of these pods on the same
    node first, Ready more recently first, more container restarts first, newer first."""
    per_node = Counter(pod.spec.node_name for pod in pods if pod.spec.node_name)

    def key(pod: objects_pb2.Pod) -> tuple:
        since = ready_since(pod)
        created = pod.metadata.creation_timestamp.seconds if pod.metadata.HasField("creation_timestamp") \
            else float("inf")  # no creation time sorts before the newest, as kube's
        return (
            1 if pod.spec.node_name else 0,
            _PHASE_ORDER.get(pod.status.phase, 0),
            0 if since is None else 1,
            -per_node[pod.spec.node_name] if pod.spec.node_name else 0,
            -(since or 0.0),
            -_max_restarts(pod),
            -created,
        )

    return sorted(pods, key=key)


def template_labels_match(template: objects_pb2.PodTemplateSpec, pod: objects_pb2.Pod) -> bool:
    """Whether the pod carries every label of the template (fullyLabeledReplicas)."""
    labels = pod.metadata.labels
    return all(labels.get(k) == v for k, v in template.metadata.labels.items())


def selector_matches(rs: objects_pb2.ReplicaSet, pod: objects_pb2.Pod) -> bool:
    """Whether the ReplicaSet's selector selects the pod (an empty selector selects nothing:
    validation refuses it, and a controller must never claim every pod)."""
    selector = rs.spec.selector
    if not selector.match_labels and not selector.match_expressions:
        return False
    return label_selector_matches(selector, pod.metadata.labels)


def compute_status(
    rs: objects_pb2.ReplicaSet,
    current: objects_pb2.ReplicaSetStatus,
    pods: list[objects_pb2.Pod],
    failure: tuple[str, str] | None,
    now: float,
) -> objects_pb2.ReplicaSetStatus:
    """The status ``pods`` (the active pods the ReplicaSet owns) give ``rs``.

    Args:
        current: The stored status (its conditions are carried over).
        failure: (reason, message) of the last sync's failed create/delete, or None: sets or
            removes the ReplicaFailure condition.
        now: Epoch seconds.
    """
    status = objects_pb2.ReplicaSetStatus(
        replicas=len(pods),
        fully_labeled_replicas=sum(template_labels_match(rs.spec.template, pod) for pod in pods),
        ready_replicas=sum(ready_since(pod) is not None for pod in pods),
        available_replicas=sum(is_available(pod, rs.spec.min_ready_seconds, now) for pod in pods),
        observed_generation=rs.metadata.generation,
    )
    for condition in current.conditions:
        if condition.type != REPLICA_FAILURE:
            status.conditions.add().CopyFrom(condition)
    if failure is not None:
        previous = find_condition(current.conditions, REPLICA_FAILURE)
        condition = status.conditions.add(type=REPLICA_FAILURE, status="True", reason=failure[0],
                                          message=failure[1])
        if previous is not None and previous.status == "True":
            condition.last_transition_time.CopyFrom(previous.last_transition_time)
        else:
            condition.last_transition_time.CopyFrom(timestamp(now))
    return status
