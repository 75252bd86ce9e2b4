"""compute_pod_status / get_phase as table tests over hand-built observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pykubelet.pod_status import Observations, compute_pod_status, get_phase
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.sync import ContainerFailure
from pymaster.api import objects_pb2

IMAGE = "pykube/busybox:1.35"
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
NOW = datetime(2026, 11, 25, 17, 0, 0, tzinfo=UTC)
T0 = NOW - timedelta(minutes=5)
HOST_IP = "10.0.0.7"


def make_pod(*names: str, policy: str = "Always") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid=UID))
    for name in names or ("app",):
        pod.spec.containers.add(name=name, image=IMAGE)
    pod.spec.restart_policy = policy
    return pod


def infra(state: str = "running", n: int = 0) -> ContainerInfo:
    return ContainerInfo(
        id=f"POD-{n}", name=INFRA_CONTAINER_NAME, pod_uid=UID, pod_name="web", pod_namespace="default",
        state=state, restart_count=n, created_at=T0 + timedelta(seconds=n),
        ip="172.17.0.9" if state == "running" else "",
    )


def app(
    name: str = "app",
    state: str = "running",
    code: int | None = None,
    n: int = 0,
    oom: bool = False,
    error: str = "",
) -> ContainerInfo:
    return ContainerInfo(
        id=f"{name}-{n}", name=name, pod_uid=UID, pod_name="web", pod_namespace="default", state=state,
        exit_code=code, restart_count=n, image=IMAGE, image_id="sha256:abc",
        created_at=T0 + timedelta(seconds=10 + n),
        started_at=T0 + timedelta(seconds=11 + n) if state in ("running", "exited") and not error else None,
        finished_at=T0 + timedelta(seconds=20 + n) if state == "exited" else None,
        oom_killed=oom, error=error,
    )


def observed(*containers: ContainerInfo) -> PodRuntime:
    return PodRuntime(uid=UID, name="web", namespace="default", containers=list(containers))


def state_of(cs: objects_pb2.ContainerStatus) -> str:
    """"running", "terminated(<code>,<reason>)" or "waiting(<reason>)"."""
    if cs.state.HasField("running"):
        return "running"
    if cs.state.HasField("terminated"):
        return f"terminated({cs.state.terminated.exit_code},{cs.state.terminated.reason})"
    return f"waiting({cs.state.waiting.reason})"


# (pod, observed, failures, phase, container states, ready)
STATUS_CASES = {
    "nothing yet": (make_pod(), None, {}, "Pending", ["waiting(ContainerCreating)"], False),
    "sandbox only": (make_pod(), observed(infra()), {}, "Pending", ["waiting(ContainerCreating)"], False),
    "running": (make_pod(), observed(infra(), app()), {}, "Running", ["running"], True),
    "one of two running": (
        make_pod("a", "b"), observed(infra(), app("a")), {}, "Pending",
        ["running", "waiting(ContainerCreating)"], False),
    "Never exit 3: Failed": (
        make_pod(policy="Never"), observed(infra("exited"), app(state="exited", code=3)), {},
        "Failed", ["terminated(3,Error)"], False),
    "Never exit 0: Succeeded": (
        make_pod(policy="Never"), observed(infra("exited"), app(state="exited", code=0)), {},
        "Succeeded", ["terminated(0,Completed)"], False),
    "Never, one failed one running: Running": (
        make_pod("a", "b", policy="Never"), observed(infra(), app("a", state="exited", code=1), app("b")), {},
        "Running", ["terminated(1,Error)", "running"], False),
    "OnFailure exit 1: Running (restarting)": (
        make_pod(policy="OnFailure"), observed(infra(), app(state="exited", code=1)), {},
        "Running", ["terminated(1,Error)"], False),
    "OnFailure exit 0: Succeeded": (
        make_pod(policy="OnFailure"), observed(infra(), app(state="exited", code=0)), {},
        "Succeeded", ["terminated(0,Completed)"], False),
    "Always exit 0: Running (restarting)": (
        make_pod(), observed(infra(), app(state="exited", code=0)), {},
        "Running", ["terminated(0,Completed)"], False),
    "OOM killed": (
        make_pod(policy="Never"), observed(infra(), app(state="exited", code=137, oom=True)), {},
        "Failed", ["terminated(137,OOMKilled)"], False),
    "start failed in Docker": (
        make_pod(policy="Never"), observed(infra(), app(state="exited", code=127, error="exec: nope")), {},
        "Failed", ["terminated(127,ContainerCannotRun)"], False),
    "image pull failed: Pending": (
        make_pod(), observed(infra()), {"app": ContainerFailure("app", "ErrImagePull", "no registry")},
        "Pending", ["waiting(ErrImagePull)"], False),
    "infra image missing: Pending": (
        make_pod("a", "b"), None,
        {n: ContainerFailure(n, "InfraImageMissing", "build it") for n in ("a", "b")},
        "Pending", ["waiting(InfraImageMissing)", "waiting(InfraImageMissing)"], False),
    "failed restart after a run: counts as stopped": (
        make_pod(policy="Never"), observed(infra(), app(state="exited", code=127, error="exec: nope")),
        {"app": ContainerFailure("app", "RunContainerError", "exec: nope")},
        "Failed", ["waiting(RunContainerError)"], False),
    "a stale failure does not hide a running container": (
        make_pod(), observed(infra(), app(n=1)), {"app": ContainerFailure("app", "ErrImagePull", "old")},
        "Running", ["running"], True),
    "unknown state": (
        make_pod(), observed(infra(), app(state="unknown")), {}, "Pending",
        ["waiting(ContainerStatusUnknown)"], False),
}


@pytest.mark.parametrize(
    ("pod", "obs", "failures", "phase", "states", "ready"),
    list(STATUS_CASES.values()),
    ids=list(STATUS_CASES),
)
def test_status(pod, obs, failures, phase, states, ready):
    status = compute_pod_status(pod, obs, Observations(failures=failures or {}), HOST_IP, NOW)
    assert status.phase == phase
    assert [state_of(cs) for cs in status.container_statuses] == states
    assert [cs.name for cs in status.container_statuses] == [c.name for c in pod.spec.containers]
    conditions = {c.type: c.status for c in status.conditions}
    expected = "True" if ready else "False"
    assert conditions == {"Initialized": "True", "Ready": expected, "ContainersReady": expected}
    assert status.host_ip == HOST_IP


def _status_of(state: str) -> objects_pb2.ContainerStatus:
    cs = objects_pb2.ContainerStatus(name=state)
    if state.startswith("running"):
        cs.state.running.SetInParent()
        cs.started = state != "running-unstarted"
    elif state.startswith("terminated"):
        cs.state.terminated.exit_code = int(state[-1])
    elif state.startswith("restarting"):
        cs.state.waiting.reason = "CrashLoopBackOff"
        cs.last_state.terminated.exit_code = int(state[-1]) if state[-1].isdigit() else 128
    else:
        cs.state.waiting.reason = "ContainerCreating"
    return cs


@pytest.mark.parametrize(
    ("policy", "states", "expected"),
    [
        ("Always", [], "Pending"),
        ("Always", ["waiting"], "Pending"),
        ("Always", ["running", "waiting"], "Pending"),
        ("Always", ["running", "terminated1"], "Running"),
        ("Always", ["terminated0"], "Running"),
        ("OnFailure", ["terminated0", "terminated0"], "Succeeded"),
        ("OnFailure", ["terminated0", "terminated1"], "Running"),
        ("Never", ["terminated0", "terminated1"], "Failed"),
        ("Never", ["restarting"], "Failed"),  # waiting with a terminated last state
        ("Never", ["terminated0", "waiting"], "Pending"),
    ],
)
def test_get_phase(policy, states, expected):
    pod = make_pod(policy=policy)
    assert get_phase(pod, [], [_status_of(s) for s in states]) == expected


@pytest.mark.parametrize(
    ("policy", "inits", "apps", "expected"),
    [
        # Plain init containers: Pending until each completed; Failed at once under Never.
        ("Always", ["terminated0", "running"], ["waiting"], "Pending"),
        ("Always", ["restarting1"], ["waiting"], "Pending"),
        ("Never", ["terminated1"], ["waiting"], "Failed"),
        ("Always", ["terminated0"], ["running"], "Running"),
        # Sidecars: running counts, not started yet is Pending, stopped ones do not count.
        ("Never", ["sidecar:running-unstarted"], ["waiting"], "Pending"),
        ("Never", ["sidecar:running"], ["running"], "Running"),
        ("Never", ["sidecar:running"], ["terminated0"], "Running"),  # the sidecar is stopped next
        ("Never", ["sidecar:terminated1"], ["terminated0"], "Succeeded"),
        ("Never", ["sidecar:terminated0"], ["terminated1"], "Failed"),
        ("OnFailure", ["terminated0", "sidecar:terminated1"], ["terminated0"], "Succeeded"),
    ],
)
def test_get_phase_with_init_containers_and_sidecars(policy, inits, apps, expected):
    pod = make_pod(policy=policy)
    init_statuses = []
    for i, state in enumerate(inits):
        sidecar, _, state = state.rpartition(":")
        container = pod.spec.init_containers.add(name=f"init{i}", image="busybox")
        if sidecar:
            container.restart_policy = "Always"
        init_statuses.append(_status_of(state))
    assert get_phase(pod, init_statuses, [_status_of(s) for s in apps]) == expected


def test_running_container_details():
    status = compute_pod_status(make_pod(), observed(infra(), app(n=2), app(state="exited", code=1, n=1)),
                                None, HOST_IP, NOW)
    cs = status.container_statuses[0]
    assert cs.state.running.started_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=13)
    assert cs.restart_count == 2
    assert cs.ready and cs.started
    assert cs.container_id == "docker://app-2"
    assert cs.image == IMAGE and cs.image_id == "docker://sha256:abc"
    last = cs.last_state.terminated
    assert (last.exit_code, last.reason, last.container_id) == (1, "Error", "docker://app-1")
    assert last.finished_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=21)
    assert status.pod_ip == "172.17.0.9"
    assert status.start_time.ToDatetime(tzinfo=UTC) == T0


def test_terminated_container_details():
    status = compute_pod_status(make_pod(policy="Never"), observed(infra(), app(state="exited", code=3)),
                                None, HOST_IP, NOW)
    terminated = status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.container_id == "docker://app-0"
    assert terminated.started_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=11)
    assert terminated.finished_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=20)
    assert not status.container_statuses[0].last_state.HasField("terminated")


def test_failure_message_and_last_state():
    failures = {"app": ContainerFailure("app", "RunContainerError", "exec: nope")}
    obs = observed(infra(), app(state="exited", code=2))
    status = compute_pod_status(make_pod(), obs, Observations(failures=failures), HOST_IP, NOW)
    cs = status.container_statuses[0]
    assert (cs.state.waiting.reason, cs.state.waiting.message) == ("RunContainerError", "exec: nope")
    assert cs.last_state.terminated.exit_code == 2


def test_unready_condition_names_containers():
    status = compute_pod_status(make_pod("a", "b"), observed(infra(), app("a")), None, HOST_IP, NOW)
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.reason, ready.message) == ("ContainersNotReady", "containers with unready status: [b]")


def test_succeeded_pod_ready_reason():
    obs = observed(infra("exited"), app(state="exited", code=0))
    status = compute_pod_status(make_pod(policy="Never"), obs, None, HOST_IP, NOW)
    assert next(c for c in status.conditions if c.type == "Ready").reason == "PodCompleted"


def test_transition_times_kept_while_unchanged():
    pod = make_pod()
    first = compute_pod_status(pod, observed(infra()), None, HOST_IP, NOW)
    later = NOW + timedelta(seconds=30)
    same = compute_pod_status(pod, observed(infra()), None, HOST_IP, later, first)
    changed = compute_pod_status(pod, observed(infra(), app()), None, HOST_IP, later, first)

    def times(status):
        return {c.type: c.last_transition_time.ToDatetime(tzinfo=UTC) for c in status.conditions}

    assert times(first) == {"Initialized": NOW, "Ready": NOW, "ContainersReady": NOW}
    assert times(same) == times(first)
    assert times(changed) == {"Initialized": NOW, "Ready": later, "ContainersReady": later}


def test_start_time_first_seen_then_kept():
    first = compute_pod_status(make_pod(), None, None, HOST_IP, NOW)
    assert first.start_time.ToDatetime(tzinfo=UTC) == NOW
    later = compute_pod_status(make_pod(), observed(infra()), None, HOST_IP, NOW + timedelta(seconds=9),
                               first)
    assert later.start_time == first.start_time


def test_terminal_phase_is_final_and_pod_ip_kept():
    pod = make_pod(policy="Never")
    done = compute_pod_status(pod, observed(infra(), app(state="exited", code=0)), None, HOST_IP, NOW)
    assert (done.phase, done.pod_ip) == ("Succeeded", "172.17.0.9")
    # The sandbox stopped; later a glitch shows no containers at all: still Succeeded, same IP.
    after = compute_pod_status(pod, observed(infra("exited")), None, HOST_IP, NOW, done)
    assert (after.phase, after.pod_ip) == ("Succeeded", "172.17.0.9")


def test_no_pod_scheduled_condition():
    status = compute_pod_status(make_pod(), observed(infra(), app()), None, HOST_IP, NOW)
    assert "PodScheduled" not in {c.type for c in status.conditions}


def test_qos_class_is_the_masters_or_computed_from_the_spec():
    pod = make_pod("app")
    pod.spec.containers[0].resources.limits.update({"cpu": "1", "memory": "64Mi"})
    status = compute_pod_status(pod, observed(infra(), app()), None, HOST_IP, NOW)
    assert status.qos_class == "Guaranteed"  # a pod with no class yet (static, standalone)
    pod.status.qos_class = "Burstable"  # the master's, set at creation, wins
    assert compute_pod_status(pod, None, None, HOST_IP, NOW).qos_class == "Burstable"
    assert compute_pod_status(make_pod("app"), None, None, HOST_IP, NOW).qos_class == "BestEffort"
