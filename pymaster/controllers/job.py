"""The Job controller (Kubernetes' pkg/controller/job, NonIndexed jobs, and the TTL-after-finished
controller): pods of a Job run until enough of them succeeded, or the Job fails.

Each sync reads the Job and its pods from the informers, asks ``job_plan.plan_job`` what to do,
creates or deletes pods (expectations per Job key keep it from creating twice before the
informer saw its pods) and writes the status: startTime at the first sync, active/ready/
succeeded/failed, and the conditions of kube 1.31+: a Job that met its success criteria gets
``SuccessCriteriaMet``, then ``Complete`` (and completionTime) once none of its pods is still
running or terminating; a failing Job gets ``FailureTarget`` (BackoffLimitExceeded or
DeadlineExceeded), its active pods are deleted, then ``Failed``. A finished Job with
``ttlSecondsAfterFinished`` is deleted (propagationPolicy Background: the garbage collector
removes its pods) that long after it finished.

Finished pods are kept (``pyctl logs job/NAME`` reads them) and counted from their phase.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.api.workloads import controller_of, generate_name, pod_from_template
from pymaster.controllers.expectations import Expectations
from pymaster.controllers.informer import InformerFactory, by_controller_uid
from pymaster.controllers.job_plan import JobPlan, plan_job
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, reference

log = logging.getLogger(__name__)

COMPONENT = "job-controller"
COMPLETE, FAILED = "Complete", "Failed"
SUCCESS_CRITERIA_MET, FAILURE_TARGET = "SuccessCriteriaMet", "FailureTarget"


def finished(job: objects_pb2.Job) -> objects_pb2.WorkloadCondition | None:
    """The Job's Complete or Failed condition when it is True, else None."""
    for condition in job.status.conditions:
        if condition.type in (COMPLETE, FAILED) and condition.status == "True":
            return condition
    return None


def set_job_condition(conditions, type_: str, reason: str, message: str, now: float) -> bool:
    """Sets a True condition (probe and transition times now when it is new or changes)."""
    condition = find_condition(conditions, type_)
    if condition is not None and (condition.status, condition.reason, condition.message) == (
            "True", reason, message):
        return False
    if condition is None:
        condition = conditions.add(type=type_)
    condition.status, condition.reason, condition.message = "True", reason, message
    condition.last_probe_time.CopyFrom(timestamp(now))
    condition.last_transition_time.CopyFrom(timestamp(now))
    return True


class JobController(Controller):
    name = "job"

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
        self.jobs = self.informer("jobs")
        self.pods = self.informer("pods", {"controller": by_controller_uid})
        self.jobs.add_handler(lambda old, new: self.enqueue(new or old))
        self.pods.add_handler(self._pod_changed)

    async def start(self) -> None:
        self.recorder.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.stop()

    def _pod_changed(self, old: Message | None, new: Message | None) -> None:
        pod = new or old
        ref = controller_of(pod)
        if ref is None or ref.kind != "Job":
            return
        key = f"{pod.metadata.namespace}/{ref.name}"
        if old is None:
            self.expectations.creation_observed(key)
        elif new is None:
            if not old.metadata.HasField("deletion_timestamp"):
                self.expectations.deletion_observed(key, old.metadata.uid)
        elif new.metadata.HasField("deletion_timestamp") and not old.metadata.HasField("deletion_timestamp"):
            self.expectations.deletion_observed(key, new.metadata.uid)
        self.enqueue(key)

    async def sync(self, key: str) -> None:
        job = self.jobs.get_by_key(key)
        if job is None:
            self.expectations.delete(key)
            return
        if job.metadata.HasField("deletion_timestamp"):
            return
        now = self._clock()
        done = finished(job)
        if done is not None:
            await self._expire(job, done, now)
            return
        pods = self.pods.by_index("controller", job.metadata.uid)
        plan = plan_job(job, pods, now)
        if self.expectations.satisfied(key) and (plan.create or plan.delete):
            await self._act(job, key, plan)
        if plan.requeue_after is not None:
            self.run_after(key, plan.requeue_after + 0.1)
        await self._update_status(job, plan, now)

    async def _act(self, job: objects_pb2.Job, key: str, plan: JobPlan) -> None:
        self.expectations.expect(key, adds=plan.create, deletes=len(plan.delete))
        failure: Exception | None = None
        for pod in plan.delete:
            try:
                await self._registry.pods.delete(pod.metadata.namespace, pod.metadata.name)
            except Exception as err:
                self.expectations.lower(key, deletes=1)
                failure = failure or err
                continue
            self.recorder.record(reference(job), "Normal", "SuccessfulDelete",
                                 f"Deleted pod: {pod.metadata.name}")
        for _ in range(plan.create):
            pod = pod_from_template(job.spec.template, job, generate_name(f"{job.metadata.name}-"))
            try:
                created = await self._registry.pods.create(pod)
            except Exception as err:
                self.expectations.lower(key, adds=1)
                self.recorder.record(reference(job), "Warning", "FailedCreate", f"Error creating: {err}")
                failure = failure or err
                continue
            log.info("job created pod job=%s pod=%s", key, created.metadata.name)
            self.recorder.record(reference(job), "Normal", "SuccessfulCreate",
                                 f"Created pod: {created.metadata.name}")
        if failure is not None:
            raise failure

    async def _update_status(self, job: objects_pb2.Job, plan: JobPlan, now: float) -> None:
        settled = plan.active == 0 and plan.terminating == 0
        events: list[tuple[str, str, str]] = []

        def change(current: objects_pb2.Job) -> bool:
            events.clear()
            status = current.status
            before = objects_pb2.JobStatus()
            before.CopyFrom(status)
            if not status.HasField("start_time"):
                status.start_time.CopyFrom(timestamp(now))
            status.active, status.succeeded, status.failed = plan.active, plan.succeeded, plan.failed
            status.ready = plan.ready
            if plan.failure is not None:
                reason, message = plan.failure
                set_job_condition(status.conditions, FAILURE_TARGET, reason, message, now)
                if settled and set_job_condition(status.conditions, FAILED, reason, message, now):
                    events.append(("Warning", reason, message))
            elif plan.complete:
                set_job_condition(status.conditions, SUCCESS_CRITERIA_MET, "CompletionsReached",
                                  "Reached expected number of succeeded pods", now)
                if settled and set_job_condition(status.conditions, COMPLETE, "CompletionsReached",
                                                 "Reached expected number of succeeded pods", now):
                    status.completion_time.CopyFrom(timestamp(now))
                    events.append(("Normal", "Completed", "Job completed"))
            return status != before

        await self._registry.jobs.update_status(job.metadata.namespace, job.metadata.name, job.metadata.uid,
                                                change)
        for type_, reason, message in events:
            self.recorder.record(reference(job), type_, reason, message)
            log.info("job finished job=%s/%s reason=%s", job.metadata.namespace, job.metadata.name, reason)

    async def _expire(self, job: objects_pb2.Job, done: objects_pb2.WorkloadCondition, now: float) -> None:
        """ttlSecondsAfterFinished: deletes the Job that long after it finished."""
        if not job.spec.HasField("ttl_seconds_after_finished"):
            return
        finished_time = job.status.completion_time.seconds or done.last_transition_time.seconds
        # Times are whole seconds (rounded down): wait for the end of that second, so the Job
        # never goes before its ttl has passed.
        left = finished_time + 1 + job.spec.ttl_seconds_after_finished - now
        if left > 0:
            self.run_after(job, left + 0.1)
            return
        await self._registry.jobs.delete_propagating(job.metadata.namespace, job.metadata.name, "Background")
        log.info("job deleted after its ttl job=%s/%s", job.metadata.namespace, job.metadata.name)
