"""The Job controller: the plan as a pure function (counts, back-off, success and failure), and the
controller against a real SQLite store and registry (the test plays the agent by setting the
pods' phases in the store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.api.errors import NotFound
from pymaster.controllers.informer import InformerFactory
from pymaster.controllers.job import JobController
from pymaster.controllers.job_plan import BACKOFF_LIMIT_EXCEEDED, DEADLINE_EXCEEDED, plan_job, pod_backoff
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 10.0
NOW = 1_000_000.0
EXCEEDED = BACKOFF_LIMIT_EXCEEDED


def job(name: str = "work", completions: int | None = 1, parallelism: int = 1, backoff_limit: int = 6,
        restart_policy: str = "Never", deadline: int | None = None, ttl: int | None = None,
        ) -> objects_pb2.Job:
    j = objects_pb2.Job(api_version="batch/v1", kind="Job")
    j.metadata.name, j.metadata.namespace, j.metadata.uid = name, "default", f"uid-{name}"
    if completions is not None:
        j.spec.completions = completions
    j.spec.parallelism = parallelism
    j.spec.backoff_limit = backoff_limit
    if deadline is not None:
        j.spec.active_deadline_seconds = deadline
    if ttl is not None:
        j.spec.ttl_seconds_after_finished = ttl
    j.spec.template.spec.restart_policy = restart_policy
    j.spec.template.spec.containers.add(name="c", image="pykube/busybox:1.35", command=["true"])
    return j


def pod(phase: str = "Running", restarts: int = 0, finished: float = NOW - 100, created: float = NOW - 200,
        deleting: bool = False) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = f"p{created}"
    p.metadata.creation_timestamp.CopyFrom(timestamp(created))
    p.status.phase = phase
    status = p.status.container_statuses.add(name="c", restart_count=restarts)
    if phase in ("Succeeded", "Failed"):
        status.state.terminated.finished_at.CopyFrom(timestamp(finished))
    if deleting:
        p.metadata.deletion_timestamp.CopyFrom(timestamp(NOW))
    return p


# ---- the plan (pure) ----


@pytest.mark.parametrize("spec, pods, expected", [
    # (create, delete count, complete, failure)
    (dict(completions=5, parallelism=2), [], (2, 0, False, None)),
    (dict(completions=5, parallelism=2), [pod("Succeeded")] * 4, (1, 0, False, None)),
    (dict(completions=5, parallelism=2), [pod("Succeeded")] * 4 + [pod()], (0, 0, False, None)),
    (dict(completions=5, parallelism=2), [pod("Succeeded")] * 5, (0, 0, True, None)),
    (dict(completions=2, parallelism=2), [pod("Succeeded")] * 2 + [pod()], (0, 1, True, None)),
    (dict(completions=3, parallelism=3), [pod(deleting=True)], (3, 0, False, None)),
    # Work queue: no completions.
    (dict(completions=None, parallelism=2), [], (2, 0, False, None)),
    (dict(completions=None, parallelism=2), [pod("Succeeded"), pod()], (0, 0, False, None)),
    (dict(completions=None, parallelism=2), [pod("Succeeded")], (0, 0, True, None)),
    # Failures: Never counts failed pods, OnFailure the restarts of active ones.
    (dict(backoff_limit=1), [pod("Failed")], (1, 0, False, None)),
    (dict(backoff_limit=1), [pod("Failed"), pod("Failed"), pod()], (0, 1, False, EXCEEDED)),
    (dict(backoff_limit=2, restart_policy="OnFailure"), [pod(restarts=1)], (0, 0, False, None)),
    (dict(backoff_limit=2, restart_policy="OnFailure"), [pod(restarts=2)], (0, 1, False, EXCEEDED)),
    (dict(backoff_limit=0, restart_policy="OnFailure"), [pod(restarts=1)], (0, 1, False, EXCEEDED)),
])
def test_plan(spec, pods, expected):
    plan = plan_job(job(**spec), pods, NOW)
    assert (plan.create, len(plan.delete), plan.complete, plan.failure) == expected


def test_plan_counts():
    plan = plan_job(job(completions=9, parallelism=3),
                    [pod("Succeeded"), pod("Failed"), pod(), pod(deleting=True)], NOW)
    assert (plan.active, plan.succeeded, plan.failed, plan.terminating) == (1, 1, 1, 1)


def test_failed_pods_delay_the_next_one_with_a_doubling_back_off():
    assert [pod_backoff(n) for n in (0, 1, 2, 3, 10)] == [0, 10, 20, 40, 360]
    spec = job(completions=3, parallelism=1)
    just_failed = plan_job(spec, [pod("Failed", finished=NOW - 5)], NOW)
    assert just_failed.create == 0 and just_failed.requeue_after == pytest.approx(5)
    assert plan_job(spec, [pod("Failed", finished=NOW - 11)], NOW).create == 1
    # Failures before the last success do not count.
    after_success = [pod("Failed", finished=NOW - 30), pod("Succeeded", finished=NOW - 20)]
    assert plan_job(spec, after_success, NOW).create == 1


def test_active_deadline():
    spec = job(completions=3, deadline=60)
    spec.status.start_time.CopyFrom(timestamp(NOW - 30))
    plan = plan_job(spec, [pod()], NOW)
    assert plan.failure is None and plan.requeue_after == pytest.approx(30)
    spec.status.start_time.CopyFrom(timestamp(NOW - 60))
    plan = plan_job(spec, [pod()], NOW)
    assert plan.failure == DEADLINE_EXCEEDED and len(plan.delete) == 1


# ---- the controller ----


class Env:
    def __init__(self, store: SQLiteStore, registry: Registry, controller: JobController):
        self.store, self.registry, self.controller = store, registry, controller

    def pods(self, job_name: str = "work") -> list[objects_pb2.Pod]:
        return [p for p in self.controller.pods.list("default")
                if p.metadata.owner_references and p.metadata.owner_references[0].name == job_name]

    def job(self, name: str = "work") -> objects_pb2.Job:
        return self.registry.jobs.get("default", name)

    def condition(self, type_: str, name: str = "work"):
        condition = find_condition(self.job(name).status.conditions, type_)
        return condition if condition is not None and condition.status == "True" else None

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                while not condition():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def set_pod(self, p: objects_pb2.Pod, phase: str, restarts: int = 0) -> None:
        def change(current):
            current.status.phase = phase
            del current.status.container_statuses[:]
            current.status.container_statuses.add(name="c", restart_count=restarts)
            return current
        await self.store.mutate("pods", "default", p.metadata.name, change)


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[Env]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    registry = Registry(store, NodeLeases(40.0))
    factory = InformerFactory(store)
    controller = JobController(registry, factory)
    await controller.start()
    yield Env(store, registry, controller)
    await controller.stop()
    await factory.stop()
    await store.close()


def active(pods) -> list[objects_pb2.Pod]:
    return [p for p in pods if p.status.phase in ("Pending", "Running")]


async def test_job_runs_to_completion_with_its_parallelism(env: Env):
    await env.registry.jobs.create(job(completions=3, parallelism=2))
    most_active = 0
    async with asyncio.timeout(DEADLINE):
        while not env.condition("Complete"):
            pods = env.pods()
            most_active = max(most_active, len(active(pods)))
            for p in active(pods)[:1]:
                await env.set_pod(p, "Succeeded")
            await asyncio.sleep(0.02)
    status = env.job().status
    assert (status.succeeded, status.active, status.failed) == (3, 0, 0)
    assert most_active == 2 and len(env.pods()) == 3
    assert env.condition("SuccessCriteriaMet") is not None
    assert status.HasField("start_time") and status.HasField("completion_time")
    labels = env.pods()[0].metadata.labels
    assert labels["batch.kubernetes.io/job-name"] == "work"


async def test_restarts_of_on_failure_pods_exceed_the_backoff_limit(env: Env):
    await env.registry.jobs.create(job(completions=2, parallelism=2, backoff_limit=3,
                                       restart_policy="OnFailure"))
    await env.wait(lambda: len(env.pods()) == 2, "2 pods")
    first, second = env.pods()
    await env.set_pod(first, "Running", restarts=2)
    await asyncio.sleep(0.1)
    assert env.condition("Failed") is None
    await env.set_pod(second, "Running", restarts=1)
    await env.wait(lambda: env.condition("Failed") is not None, "Failed")
    failed = env.condition("Failed")
    assert (failed.reason, failed.message) == BACKOFF_LIMIT_EXCEEDED
    assert env.pods() == [], "the active pods are deleted (unbound: at once)"
    assert not env.job().status.HasField("completion_time")


async def test_active_deadline_fails_the_job(env: Env):
    await env.registry.jobs.create(job(completions=1, deadline=1))
    await env.wait(lambda: len(env.pods()) == 1, "a pod")
    await env.wait(lambda: env.condition("Failed") is not None, "Failed after the deadline")
    assert env.condition("Failed").reason == "DeadlineExceeded"
    assert env.pods() == []


async def test_ttl_after_finished_deletes_the_job(env: Env):
    await env.registry.jobs.create(job(completions=1, ttl=1))
    await env.wait(lambda: len(env.pods()) == 1, "a pod")
    await env.set_pod(env.pods()[0], "Succeeded")
    await env.wait(lambda: env.condition("Complete") is not None, "Complete")

    def gone() -> bool:
        try:
            env.job()
        except NotFound:
            return True
        return False

    await env.wait(gone, "the job deleted after its ttl")
