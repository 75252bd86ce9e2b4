"""What a Job's sync should do, as a pure function of the Job, its pods and the time (Kubernetes'
pkg/controller/job ``syncJob`` for NonIndexed jobs): the counts of its status, whether it has
met its success criteria or failed (and why), how many pods to create or which to delete, and
when to look again.

- active: pods neither Succeeded/Failed nor being deleted; succeeded and failed are counted from
  the pods' phases; with restartPolicy OnFailure the container restarts of the active pods count
  as failures (kube's ``pastBackoffLimitOnFailure``: restarts >= backoffLimit, or > 0 when the
  limit is 0).
- failed: failures > backoffLimit (BackoffLimitExceeded), or active longer than
  activeDeadlineSeconds since status.startTime (DeadlineExceeded); then every active pod goes.
- complete: succeeded >= completions; without completions (a work queue), once a pod succeeded
  and none is active; any pod still active then goes.
- otherwise ``min(parallelism, completions - succeeded)`` pods should be active (without
  completions: parallelism until one succeeded, then no new pod); surplus pods go (unscheduled,
  then not ready, then newest first), missing ones are created, unless pods failed since the
  last success: then the next creation waits 10 s doubling per such failure, capped at 6 min
  (kube's pod failure back-off), counted from the last failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.pods import FAILED, READY, SUCCEEDED

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
POD_BACKOFF_BASE = 10.0
POD_BACKOFF_MAX = 360.0


@dataclass
class JobPlan:
    """One sync's decision. ``failure``: (reason, message) once the job failed; ``complete``:
    success criteria met; ``create``: pods to create; ``delete``: pods to delete;
    ``requeue_after``: seconds until a deadline or a back-off ends (None: nothing to wait for)."""

    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    terminating: int = 0
    failure: tuple[str, str] | None = None
    complete: bool = False
    create: int = 0
    delete: list[objects_pb2.Pod] = field(default_factory=list)
    requeue_after: float | None = None


def _deleting(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


def is_ready(pod: objects_pb2.Pod) -> bool:
    condition = find_condition(pod.status.conditions, READY)
    return condition is not None and condition.status == "True"


def finished_at(pod: objects_pb2.Pod) -> float:
    """When a terminal pod finished: its containers' latest finishedAt (else its creation)."""
    times = [s.state.terminated.finished_at.seconds
             for s in (*pod.status.container_statuses, *pod.status.init_container_statuses)
             if s.state.HasField("terminated")]
    return float(max(times, default=pod.metadata.creation_timestamp.seconds))


def restarts(pods: Iterable[objects_pb2.Pod]) -> int:
    return sum(s.restart_count for pod in pods
               for s in (*pod.status.container_statuses, *pod.status.init_container_statuses))


def past_backoff_limit_on_failure(job: objects_pb2.Job, active: list[objects_pb2.Pod]) -> bool:
    if job.spec.template.spec.restart_policy != "OnFailure":
        return False
    count = restarts(active)
    limit = job.spec.backoff_limit
    return count > 0 if limit == 0 else count >= limit


def pod_backoff(failures: int) -> float:
    """The wait before a new pod after ``failures`` failures since the last success."""
    if failures <= 0:
        return 0.0
    return min(POD_BACKOFF_MAX, POD_BACKOFF_BASE * 2 ** (failures - 1))


def removal_order(pod: objects_pb2.Pod) -> tuple:
    """The least valuable first: unscheduled, not ready, then the newest."""
    return (bool(pod.spec.node_name), is_ready(pod), -pod.metadata.creation_timestamp.seconds)


def plan_job(job: objects_pb2.Job, pods: list[objects_pb2.Pod], now: float) -> JobPlan:
    """The plan for ``job`` (not yet finished) owning ``pods`` at ``now`` (epoch seconds)."""
    plan = JobPlan()
    active = [p for p in pods if p.status.phase not in (SUCCEEDED, FAILED) and not _deleting(p)]
    plan.active, plan.ready = len(active), sum(is_ready(p) for p in active)
    plan.terminating = sum(1 for p in pods if p.status.phase not in (SUCCEEDED, FAILED) and _deleting(p))
    succeeded = [p for p in pods if p.status.phase == SUCCEEDED]
    failed = [p for p in pods if p.status.phase == FAILED]
    plan.succeeded, plan.failed = len(succeeded), len(failed)
    spec, status = job.spec, job.status

    target = find_condition(status.conditions, "FailureTarget")
    if target is not None and target.status == "True":
        plan.failure = (target.reason, target.message)
    elif plan.failed > spec.backoff_limit or past_backoff_limit_on_failure(job, active):
        plan.failure = BACKOFF_LIMIT_EXCEEDED
    elif spec.HasField("active_deadline_seconds") and status.HasField("start_time"):
        left = status.start_time.seconds + spec.active_deadline_seconds - now
        if left <= 0:
            plan.failure = DEADLINE_EXCEEDED
        else:
            plan.requeue_after = left
    if plan.failure is not None:
        plan.delete = active
        return plan

    met = find_condition(status.conditions, "SuccessCriteriaMet")
    if met is not None and met.status == "True":
        plan.complete = True
    elif spec.HasField("completions"):
        plan.complete = plan.succeeded >= spec.completions
    else:
        plan.complete = plan.succeeded > 0 and not active
    if plan.complete:
        plan.delete = active
        return plan

    if spec.HasField("completions"):
        want = max(0, min(spec.parallelism, spec.completions - plan.succeeded))
    else:
        want = plan.active if plan.succeeded > 0 else spec.parallelism
    if plan.active > want:
        plan.delete = sorted(active, key=removal_order)[:plan.active - want]
    elif plan.active < want:
        last_success = max((finished_at(p) for p in succeeded), default=0.0)
        recent = [finished_at(p) for p in failed if finished_at(p) >= last_success]
        wait = max(recent, default=0.0) + pod_backoff(len(recent)) - now if recent else 0.0
        if wait > 0:
            plan.requeue_after = wait if plan.requeue_after is None else min(plan.requeue_after, wait)
        else:
            plan.create = want - plan.active
    return plan
