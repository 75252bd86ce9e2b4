"""A Deployment's status from its ReplicaSets, and its Available and Progressing conditions
(Kubernetes' ``pkg/controller/deployment/sync.go`` ``calculateStatus`` and ``progress.go``), as
pure functions of the Deployment, its ReplicaSets and the time.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.controllers.deployment_util import (
    Deployment,
    ReplicaSet,
    deployment_complete,
    deployment_progressing,
    max_unavailable,
)

AVAILABLE = "Available"
PROGRESSING = "Progressing"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"

Status = objects_pb2.DeploymentStatus


def new_condition(
    type_: str, status: str, reason: str, message: str, now: float
) -> objects_pb2.WorkloadCondition:
    return objects_pb2.WorkloadCondition(
        type=type_, status=status, reason=reason, message=message,
        last_update_time=timestamp(now), last_transition_time=timestamp(now),
    )


def set_condition(status: Status, condition: objects_pb2.WorkloadCondition) -> None:
    """Sets a condition as kube's ``SetDeploymentCondition``: the same status and reason leave
    the current one as it is; the same status keeps its lastTransitionTime."""
    current = find_condition(status.conditions, condition.type)
    if current is not None and (current.status, current.reason) == (condition.status, condition.reason):
        return
    if current is not None and current.status == condition.status:
        condition.last_transition_time.CopyFrom(current.last_transition_time)
    remove_condition(status, condition.type)
    status.conditions.append(condition)


def remove_condition(status: Status, type_: str) -> None:
    kept = [c for c in status.conditions if c.type != type_]
    del status.conditions[:]
    status.conditions.extend(kept)


def calculate_status(
    deployment: Deployment, all_rss: list[ReplicaSet], new_rs: ReplicaSet | None, now: float
) -> Status:
    """The replica counts, observedGeneration and the Available condition (other conditions as
    stored)."""
    available = sum(rs.status.available_replicas for rs in all_rss)
    total = sum(rs.spec.replicas for rs in all_rss)
    status = Status(
        observed_generation=deployment.metadata.generation,
        replicas=sum(rs.status.replicas for rs in all_rss),
        updated_replicas=new_rs.status.replicas if new_rs is not None else 0,
        ready_replicas=sum(rs.status.ready_replicas for rs in all_rss),
        available_replicas=available,
        unavailable_replicas=max(total - available, 0),
    )
    if deployment.status.HasField("collision_count"):
        status.collision_count = deployment.status.collision_count
    status.conditions.extend(deployment.status.conditions)
    if available >= deployment.spec.replicas - max_unavailable(deployment):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status


def _subject(deployment: Deployment, new_rs: ReplicaSet | None) -> str:
    if new_rs is not None:
        return f'ReplicaSet "{new_rs.metadata.name}"'
    return f'Deployment "{deployment.metadata.name}"'


def timed_out(deployment: Deployment, status: Status, now: float) -> bool:
    """Whether the rollout made no progress for progressDeadlineSeconds (kube's
    ``DeploymentTimedOut``)."""
    condition = find_condition(status.conditions, PROGRESSING)
    if condition is None or condition.reason == NEW_RS_AVAILABLE:
        return False
    if condition.reason == TIMED_OUT:
        return True
    return condition.last_update_time.seconds + deployment.spec.progress_deadline_seconds < now


def rollout_status(
    deployment: Deployment, all_rss: list[ReplicaSet], new_rs: ReplicaSet | None, now: float
) -> Status:
    """``calculate_status`` plus the Progressing condition of a rollout (kube's
    ``syncRolloutStatus``): NewReplicaSetAvailable when complete, ReplicaSetUpdated on progress,
    ProgressDeadlineExceeded when stuck past the deadline."""
    status = calculate_status(deployment, all_rss, new_rs, now)
    current = find_condition(status.conditions, PROGRESSING)
    complete = (status.replicas == status.updated_replicas and current is not None
                and current.reason == NEW_RS_AVAILABLE)
    if complete:
        return status
    subject = _subject(deployment, new_rs)
    if deployment_complete(deployment, status):
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                            f"{subject} has successfully progressed.", now))
    elif deployment_progressing(deployment, status):
        condition = new_condition(PROGRESSING, "True", RS_UPDATED, f"{subject} is progressing.", now)
        if current is not None:
            if current.status == "True":
                condition.last_transition_time.CopyFrom(current.last_transition_time)
            remove_condition(status, PROGRESSING)
        set_condition(status, condition)
    elif timed_out(deployment, status, now):
        set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT,
                                            f"{subject} has timed out progressing.", now))
    return status


def recheck_after(deployment: Deployment, status: Status, now: float) -> float | None:
    """Seconds until the progress deadline of a rollout in progress should be checked again, or
    None (kube's ``requeueStuckDeployment``)."""
    condition = find_condition(status.conditions, PROGRESSING)
    if condition is None or condition.reason in (NEW_RS_AVAILABLE, TIMED_OUT):
        return None
    if deployment_complete(deployment, status):
        return None
    after = condition.last_update_time.seconds + deployment.spec.progress_deadline_seconds - now
    return 0.0 if after < 1 else after + 1


def paused_condition(deployment: Deployment, now: float) -> Status | None:
    """The status with Progressing Unknown DeploymentPaused (paused) or DeploymentResumed (resumed
    after a pause), or None when it needs no change; a timed-out rollout keeps its condition."""
    current = find_condition(deployment.status.conditions, PROGRESSING)
    if current is not None and current.reason == TIMED_OUT:
        return None
    paused_shown = current is not None and current.reason == PAUSED
    if deployment.spec.paused == paused_shown:
        return None
    status = Status()
    status.CopyFrom(deployment.status)
    if deployment.spec.paused:
        set_condition(status, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now))
    else:
        set_condition(status, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now))
    return status
