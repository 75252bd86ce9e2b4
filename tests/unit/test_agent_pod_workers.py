"""Pod workers: start-failure memory and the worker lifecycle against the shared fake runtime
(tests/fakes.py), with the plan and its execution replaced (they have tests of their own, and the
real thing runs on Docker in tests/e2e)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from pykubelet import pod_workers as pw
from pykubelet.admission import AdmissionPolicy
from pykubelet.metrics import AgentMetrics
from pykubelet.runtime.base import ContainerInfo, PodRuntime
from pykubelet.sync import ContainerFailure
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime


def make_pod(uid: str = "u1", grace: int | None = None, deletion_grace: int | None = None,
             deleting: bool = False, containers: tuple[str, ...] = ("app",)) -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.uid, pod.metadata.name, pod.metadata.namespace = uid, f"pod-{uid}", "default"
    for name in containers:
        pod.spec.containers.add(name=name, image="pykube/busybox:1.35")
    if grace is not None:
        pod.spec.termination_grace_period_seconds = grace
    if deletion_grace is not None:
        pod.metadata.deletion_grace_period_seconds = deletion_grace
    if deleting:
        pod.metadata.deletion_timestamp.seconds = 1
    return pod


def info(cid: str, name: str = "app", state: str = "running") -> ContainerInfo:
    return ContainerInfo(id=cid, name=name, pod_uid="u1", pod_name="pod-u1", pod_namespace="default",
                         state=state)


def runtime_of(*containers: ContainerInfo) -> PodRuntime:
    return PodRuntime("u1", "pod-u1", "default", list(containers))


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (None, False),
        (runtime_of(), False),
        (runtime_of(info("a")), False),
        (runtime_of(info("a"), info("s", "sidecar", "exited")), False),
        (runtime_of(info("a"), info("s", "sidecar")), True),
        (runtime_of(info("a2", state="running"), info("a1", state="exited"), info("s", "sidecar")), True),
    ],
)
def test_all_running(observed: PodRuntime | None, expected: bool) -> None:
    assert pw.all_running(make_pod(containers=("app", "sidecar")), observed) is expected


FAIL = ContainerFailure("app", "CreateContainerError", "boom")


@pytest.mark.parametrize(
    ("first", "then_new", "then_observed", "kept"),
    [
        # Nothing new happened to the container (say, a start skipped by back-off): keep showing it.
        (runtime_of(), [], runtime_of(), True),
        (None, [], None, True),
        (runtime_of(info("a1", state="created")), [], runtime_of(info("a1", state="created")), True),
        # A newer container exists, or the container runs: the failure is history.
        (runtime_of(), [], runtime_of(info("a1", state="exited")), False),
        (runtime_of(info("a1", state="created")), [], runtime_of(info("a2", state="created")), False),
        (runtime_of(info("a1", state="created")), [], runtime_of(info("a1")), False),
        # Failing again replaces it.
        (runtime_of(), [ContainerFailure("app", "ErrImagePull", "x")], runtime_of(), True),
    ],
)
def test_failure_tracker(first: PodRuntime | None, then_new: list[ContainerFailure],
                         then_observed: PodRuntime | None, kept: bool) -> None:
    tracker = pw.FailureTracker()
    tracker.update([FAIL], first)
    tracker.update(then_new, then_observed)
    assert ("app" in tracker.failures) is kept
    if then_new:
        assert tracker.failures["app"].reason == "ErrImagePull"


# ---- the worker lifecycle, with the plan/execute/status functions replaced ----


@dataclass
class Actions:
    noop: bool
    backoff: tuple[ContainerFailure, ...] = ()
    requeue_after: float | None = None

    def is_noop(self) -> bool:
        return self.noop


class FakeStatus:
    def __init__(self) -> None:
        self.statuses: dict[str, objects_pb2.PodStatus] = {}
        self.forgotten: list[str] = []
        self.terminated_uids: list[str] = []
        self.sets = 0  # set_status calls: one per finished sync

    def terminated(self, pod: objects_pb2.Pod) -> None:
        self.terminated_uids.append(pod.metadata.uid)

    def get(self, uid: str) -> objects_pb2.PodStatus | None:
        return self.statuses.get(uid)

    def set_status(self, pod: objects_pb2.Pod, status: objects_pb2.PodStatus) -> bool:
        self.sets += 1
        self.statuses[pod.metadata.uid] = status
        return True

    def forget(self, uid: str) -> None:
        self.forgotten.append(uid)


class FakeExecutor:
    """The executor, recording what the workers asked of it."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime, self.volumes = runtime, runtime.volumes
        self.kills: list[tuple[str, float, bool]] = []
        self.executes: list[str] = []

    async def execute(self, pod, actions, observed, grace_overrides=None):
        self.executes.append(pod.metadata.uid)
        self.grace_overrides = dict(grace_overrides or {})
        self.runtime.pods[pod.metadata.uid] = runtime_of(info("a1"))
        return []

    async def kill_pod(self, observed, grace_seconds, remove, pod=None):
        self.kills.append((observed.uid, grace_seconds, remove))
        self.runtime.pods.pop(observed.uid, None)


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runtime, self.status = FakeRuntime(), FakeStatus()
        self.volumes = self.runtime.volumes
        self.executor = FakeExecutor(self.runtime)
        self.kills, self.executes = self.executor.kills, self.executor.executes
        self.desired: dict[str, objects_pb2.Pod] = {}
        self.synced = asyncio.Event()
        self.registry = CollectorRegistry()
        self.noop = False
        self.workers = pw.PodWorkers(
            self.executor, self.desired, self.synced, self.status,  # type: ignore[arg-type]
            AgentMetrics(self.registry, "n1"), "n1", "10.0.0.1",
        )
        plan = lambda pod, observed, *args: Actions(self.noop)  # noqa: E731
        monkeypatch.setattr(pw.sync, "compute_pod_actions", plan)
        monkeypatch.setattr(pw, "compute_pod_status", self._status)
        self.seen: pw.Observations | None = None

    def _status(self, pod, observed, seen, host_ip, now, previous):
        self.seen = seen
        running = observed is not None and pw.all_running(pod, observed)
        return objects_pb2.PodStatus(phase="Running" if running else "Pending", host_ip=host_ip)


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_sync_starts_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.desired["u1"] = make_pod()
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert h.executes == ["u1"]
    assert h.status.statuses["u1"].phase == "Running"
    assert h.registry.get_sample_value("kubelet_pod_start_duration_seconds_count") == 1
    await h.workers.stop()


async def test_adopted_pod_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.noop = True
    h.runtime.pods["u1"] = runtime_of(info("a1"))
    h.desired["u1"] = make_pod()
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert h.executes == []
    assert h.registry.get_sample_value("kubelet_pod_start_duration_seconds_count") == 0
    await h.workers.stop()


async def test_requests_coalesce_while_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.noop = True
    h.desired["u1"] = make_pod()
    h.runtime.block.clear()
    h.workers.wake("u1")
    await wait_for(lambda: h.runtime.gets == 1)
    for _ in range(10):
        h.workers.wake("u1")
    h.runtime.block.set()
    # The worker has handled the ten requests once its second sync has ended...
    await wait_for(lambda: h.status.sets >= 2)
    # ...and that was the only sync they caused: none ran after it, none is pending.
    assert (h.status.sets, h.runtime.gets) == (2, 2)
    assert not sync_pending(h.workers, "u1")
    await h.workers.stop()


def sync_pending(workers: pw.PodWorkers, uid: str) -> bool:
    """Whether a sync of ``uid`` has been asked for and not started yet (the worker's flag)."""
    return workers._workers[uid].wake.is_set()


async def test_deleted_pod_is_killed_then_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.desired["u1"] = make_pod(grace=30)
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    h.desired["u1"] = make_pod(grace=30, deletion_grace=4, deleting=True)
    h.workers.wake("u1")
    await wait_for(lambda: "u1" not in h.workers.active())
    assert h.kills == [("u1", 4.0, True)]
    # The status manager tells the master (and retries): the worker is done.
    assert h.status.terminated_uids == ["u1"]
    assert h.status.forgotten == ["u1"]
    # Still listed by the master until it processes the confirmation: no new worker.
    h.workers.wake("u1")
    assert "u1" not in h.workers.active()


async def test_deleted_pod_without_containers_only_cleans_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.desired["u1"] = make_pod(deletion_grace=4, deleting=True)
    h.workers.wake("u1")
    await wait_for(lambda: "u1" not in h.workers.active())
    assert h.kills == []
    assert ("remove_volumes", "u1") in h.runtime.calls
    assert h.status.terminated_uids == ["u1"]


async def test_plan_requeue_wakes_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.noop = True
    plan = lambda pod, observed, *args: Actions(True, requeue_after=0.1)  # noqa: E731
    monkeypatch.setattr(pw.sync, "compute_pod_actions", plan)
    h.runtime.pods["u1"] = runtime_of(info("a1"))
    h.desired["u1"] = make_pod()
    h.workers.wake("u1")
    await wait_for(lambda: h.runtime.gets >= 3)  # woken again and again by its own plan
    await h.workers.stop()


async def test_removed_pod_is_killed_with_its_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.desired["u1"] = make_pod(grace=3)
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    del h.desired["u1"]
    h.workers.wake("u1")
    await wait_for(lambda: "u1" not in h.workers.active())
    assert h.kills == [("u1", 3.0, True)]
    assert h.status.terminated_uids == []


async def test_reaper_waits_for_the_snapshot_and_spares_desired(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.desired["u1"] = make_pod()
    # Before the first snapshot an empty desired set means "not known yet": nothing is reaped.
    early = {"u1": runtime_of(info("a1")), "early": PodRuntime("early", "x", "default", [info("e1")])}
    h.workers.reap(early)
    h.synced.set()
    later = {"u1": runtime_of(info("a1")), "orphan": PodRuntime("orphan", "y", "default", [info("o1")])}
    h.workers.reap(later)
    await wait_for(lambda: len(h.kills) >= 1)
    # Reaps start in the order they were asked for: had the first call reaped "early", its kill
    # would come before the orphan's. The desired pod is spared.
    assert h.kills == [("orphan", pw.REAP_GRACE_SECONDS, True)]


# ---- the node's own admission check ----


async def test_rejected_pod_fails_without_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    pod = make_pod()
    pod.spec.host_network = True
    h.desired["u1"] = pod
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    status = h.status.statuses["u1"]
    assert (status.phase, status.reason) == ("Failed", "Forbidden")
    assert status.message.startswith("Pod was rejected: spec.hostNetwork: host networking is not allowed")
    assert status.host_ip == "10.0.0.1" and status.HasField("start_time")
    assert h.executes == [] and h.kills == []
    assert h.registry.get_sample_value("pykube_agent_admission_rejections_total") == 1
    h.workers.wake("u1")  # every later sync refuses again, counted once
    await wait_for(lambda: h.runtime.gets >= 2)
    assert h.registry.get_sample_value("pykube_agent_admission_rejections_total") == 1
    await h.workers.stop()


async def test_rejected_pod_that_runs_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Say the agent restarted without --allow-privileged: what the pod runs is stopped, not removed.
    h = Harness(monkeypatch)
    pod = make_pod(grace=7, containers=("app", "tool"))
    pod.spec.containers[1].security_context.privileged = True
    h.runtime.pods["u1"] = runtime_of(info("a1"))
    h.desired["u1"] = pod
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert h.kills == [("u1", 7.0, False)]
    assert "spec.containers[1].securityContext.privileged" in h.status.statuses["u1"].message
    assert h.executes == []
    await h.workers.stop()


def test_rejected_status_keeps_the_start_time() -> None:
    previous = objects_pb2.PodStatus(phase="Running")
    previous.start_time.seconds = 42
    status = pw.rejected_status("Pod was rejected: x: y", "10.0.0.1", datetime.now(UTC), previous)
    assert (status.phase, status.reason, status.message) == ("Failed", "Forbidden", "Pod was rejected: x: y")
    assert status.start_time.seconds == 42


async def test_admitted_by_the_node_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.workers = pw.PodWorkers(
        h.executor, h.desired, h.synced, h.status,  # type: ignore[arg-type]
        AgentMetrics(CollectorRegistry(), "n1"), "n1", "10.0.0.1", AdmissionPolicy(allow_host_network=True),
    )
    pod = make_pod()
    pod.spec.host_network = True
    h.desired["u1"] = pod
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert h.status.statuses["u1"].phase == "Running" and h.executes == ["u1"]
    await h.workers.stop()


# ---- probes, events and the active deadline ----


class FakeProbes:
    """The probe manager's answers, set by the test."""

    def __init__(self) -> None:
        self.failures: dict[str, str] = {}
        self.ready: set[str] = set()
        self.synced: list[str] = []

    def sync(self, pod, observed) -> None:
        self.synced.append(pod.metadata.uid)

    def remove(self, uid: str) -> None:
        pass

    def readiness(self, uid: str, name: str) -> bool:
        return name in self.ready

    def started(self, uid: str, name: str) -> bool:
        return True

    def liveness_failures(self, uid: str) -> dict[str, str]:
        return dict(self.failures)

    def probe_grace_period(self, uid: str, name: str) -> int | None:
        return 3 if name in self.failures else None


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def pod_event(self, pod, type_, reason, message, container="") -> None:
        self.events.append((type_, reason, container))


def _with_probes(h: Harness) -> tuple[FakeProbes, FakeRecorder]:
    probes, recorder = FakeProbes(), FakeRecorder()
    h.workers = pw.PodWorkers(
        h.executor, h.desired, h.synced, h.status,  # type: ignore[arg-type]
        AgentMetrics(CollectorRegistry(), "n1"), "n1", "10.0.0.1", probes=probes,  # type: ignore[arg-type]
        recorder=recorder,  # type: ignore[arg-type]
    )
    return probes, recorder


async def test_liveness_failures_reach_the_plan_with_the_probe_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    probes, _ = _with_probes(h)
    probes.failures = {"app": "Container app failed liveness probe, will be restarted"}
    probes.ready = {"app"}
    planned: list[dict[str, str]] = []

    def plan(pod, observed, now, probe_failures, not_started):
        planned.append(dict(probe_failures))
        return Actions(False)

    monkeypatch.setattr(pw.sync, "compute_pod_actions", plan)
    h.desired["u1"] = make_pod()
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert planned == [probes.failures]
    assert h.executor.grace_overrides == {"app": 3.0}
    assert h.seen is not None and h.seen.ready("app") and not h.seen.ready("other")
    assert probes.synced[:2] == ["u1", "u1"]  # before the plan, and again after the execution
    await h.workers.stop()


async def test_back_off_is_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    _, recorder = _with_probes(h)
    backoff = (ContainerFailure("app", "CrashLoopBackOff", "back-off 10s restarting failed container"),)
    monkeypatch.setattr(pw.sync, "compute_pod_actions", lambda *args: Actions(True, backoff=backoff))
    h.desired["u1"] = make_pod()
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    assert recorder.events == [("Warning", "BackOff", "app")]
    assert h.seen is not None and h.seen.failures["app"].reason == "CrashLoopBackOff"
    await h.workers.stop()


async def test_a_pod_past_its_active_deadline_is_stopped_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    _, recorder = _with_probes(h)
    pod = make_pod(grace=5)
    pod.spec.active_deadline_seconds = 30
    started = objects_pb2.PodStatus(phase="Running")
    started.start_time.FromSeconds(int(datetime.now(UTC).timestamp()) - 60)
    h.status.statuses["u1"] = started
    h.runtime.pods["u1"] = runtime_of(info("a1"))
    h.desired["u1"] = pod
    h.workers.wake("u1")
    await wait_for(lambda: h.seen is not None)
    assert h.kills == [("u1", 5.0, False)]
    assert h.executes == []
    assert h.seen.deadline_exceeded
    assert recorder.events == [("Normal", "DeadlineExceeded", "")]
    await h.workers.stop()


def test_deadline_left_counts_from_the_start_time() -> None:
    pod = make_pod()
    now = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    status = objects_pb2.PodStatus()
    assert pw.deadline_left(pod, status, now) is None  # no deadline
    pod.spec.active_deadline_seconds = 90
    assert pw.deadline_left(pod, status, now) is None  # not started
    status.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    assert pw.deadline_left(pod, status, now) == 30


def _allocatable(known: dict[str, str], fresh: dict[str, str] | None = None, asked: list[bool] | None = None):
    """An agent's allocatable getter: ``known`` as last heard, ``fresh`` once asked of the master."""

    async def allocatable(refresh: bool) -> dict[str, str]:
        if asked is not None:
            asked.append(refresh)
        return dict(fresh if refresh and fresh is not None else known)

    return allocatable


async def test_a_pod_fitting_only_the_masters_newer_figures_is_admitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scheduler bound the pod after an admin added dongles the agent has not heard of yet.
    h = Harness(monkeypatch)
    asked: list[bool] = []
    base = {"cpu": "1", "memory": "1Gi", "pods": "10"}
    h.workers = pw.PodWorkers(
        h.executor, h.desired, h.synced, h.status,  # type: ignore[arg-type]
        AgentMetrics(CollectorRegistry(), "n1"), "n1", "10.0.0.1",  # type: ignore[arg-type]
        allocatable=_allocatable(base, {**base, "example.com/dongle": "3"}, asked),
    )
    pod = make_pod("u1")
    pod.spec.containers[0].resources.requests["example.com/dongle"] = "3"
    pod.spec.containers[0].resources.limits["example.com/dongle"] = "3"
    h.desired["u1"] = pod
    h.workers.wake("u1")
    await wait_for(lambda: h.executes == ["u1"])
    assert asked == [False, True]
    await h.workers.stop()


async def test_a_pod_that_does_not_fit_is_rejected_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    recorder = FakeRecorder()
    h.workers = pw.PodWorkers(
        h.executor, h.desired, h.synced, h.status,  # type: ignore[arg-type]
        AgentMetrics(CollectorRegistry(), "n1"), "n1", "10.0.0.1", recorder=recorder,  # type: ignore[arg-type]
        allocatable=_allocatable({"cpu": "1", "memory": "1Gi", "pods": "10"}),
    )
    first, second = make_pod("u1"), make_pod("u2")
    for p in (first, second):
        p.spec.containers[0].resources.requests["cpu"] = "700m"
    h.desired["u1"] = first
    h.workers.wake("u1")
    await wait_for(lambda: "u1" in h.status.statuses)
    h.desired["u2"] = second
    h.workers.wake("u2")
    await wait_for(lambda: "u2" in h.status.statuses)
    status = h.status.statuses["u2"]
    assert (status.phase, status.reason) == ("Failed", "OutOfcpu")
    assert status.message == (
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 700, used: 700, capacity: 1000"
    )
    assert ("Warning", "OutOfcpu", "") in recorder.events
    assert h.executes == ["u1"]
    # The first pod leaving frees the cpu, but a rejected pod stays rejected (as with the kubelet).
    del h.desired["u1"]
    h.workers.wake("u1")
    await wait_for(lambda: "u1" not in h.workers.active())
    sets = h.status.sets
    h.workers.wake("u2")
    await wait_for(lambda: h.status.sets > sets)
    assert h.status.statuses["u2"].reason == "OutOfcpu" and h.executes == ["u1"]
    await h.workers.stop()
