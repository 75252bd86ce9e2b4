"""The sync plan (compute_pod_actions) as table tests over hand-built observations, and
``execute``/``kill_pod`` against a recording fake runtime (the real engine is in
tests/e2e/test_runtime_docker.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pykubelet import sync
from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerRuntimeError,
    CreateContainerError,
    ImagePullError,
    InfraImageMissing,
    PodRuntime,
    RuntimeUnavailable,
)
from pykubelet.runtime.labels import container_spec_hash
from pymaster.api import objects_pb2

IMAGE = "pykube/busybox:1.35"
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


def make_pod(
    *names: str,
    policy: str = "Always",
    deleting: bool = False,
    phase: str = "",
    grace: int | None = None,
    deletion_grace: int | None = None,
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid=UID))
    for name in names or ("app",):
        pod.spec.containers.add(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
    pod.spec.restart_policy = policy
    if grace is not None:
        pod.spec.termination_grace_period_seconds = grace
    if deleting:
        pod.metadata.deletion_timestamp.GetCurrentTime()
    if deletion_grace is not None:
        pod.metadata.deletion_grace_period_seconds = deletion_grace
    pod.status.phase = phase
    return pod


def spec_hash(name: str) -> str:
    container = objects_pb2.Container(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
    return container_spec_hash(container)


def infra(state: str = "running", n: int = 0) -> ContainerInfo:
    return ContainerInfo(
        id=f"POD-{n}", name=INFRA_CONTAINER_NAME, pod_uid=UID, pod_name="web", pod_namespace="default",
        state=state, restart_count=n, ip="172.17.0.9" if state == "running" else "",
    )


def app(
    name: str = "app", state: str = "running", code: int | None = None, n: int = 0, stale: bool = False
) -> ContainerInfo:
    return ContainerInfo(
        id=f"{name}-{n}", name=name, pod_uid=UID, pod_name="web", pod_namespace="default", state=state,
        exit_code=code, restart_count=n, spec_hash="0ld" if stale else spec_hash(name),
    )


def observed(*containers: ContainerInfo) -> PodRuntime:
    return PodRuntime(uid=UID, name="web", namespace="default", containers=list(containers))


def shape(actions: sync.PodActions) -> tuple:
    """The plan without the free-text kill reasons."""
    return (
        actions.kill_pod,
        actions.create_sandbox,
        actions.containers_to_start,
        sorted(actions.containers_to_kill),
        actions.containers_to_remove,
    )


# (pod, observed, kill_pod, create_sandbox, to_start, to_kill ids, to_remove)
PLAN_CASES = {
    "new pod: sandbox and all containers": (
        make_pod("a", "b"), None, False, True, ["a", "b"], [], []),
    "no containers at all": (make_pod(), observed(), False, True, ["app"], [], []),
    "steady running pod: noop": (make_pod(), observed(infra(), app()), False, False, [], [], []),
    "sandbox without containers yet": (make_pod(), observed(infra()), False, False, ["app"], [], []),
    "second container never started": (
        make_pod("a", "b"), observed(infra(), app("a")), False, False, ["b"], [], []),
    "Always restarts a succeeded container": (
        make_pod(), observed(infra(), app(state="exited", code=0)), False, False, ["app"], [], []),
    "OnFailure restarts a failed container": (
        make_pod(policy="OnFailure"), observed(infra(), app(state="exited", code=1)),
        False, False, ["app"], [], []),
    "OnFailure all succeeded: stop the sandbox": (
        make_pod(policy="OnFailure"), observed(infra(), app(state="exited", code=0)),
        True, False, [], [], []),
    "Never exited 3: stop the sandbox": (
        make_pod(policy="Never"), observed(infra(), app(state="exited", code=3)), True, False, [], [], []),
    "Never, one done one running: keep going": (
        make_pod("a", "b", policy="Never"),
        observed(infra(), app("a", state="exited", code=0), app("b")), False, False, [], [], []),
    "Never done, sandbox stopped: noop": (
        make_pod(policy="Never"), observed(infra("exited"), app(state="exited", code=3)),
        False, False, [], [], []),
    "Never, sandbox died while running: kill, no new sandbox": (
        make_pod(policy="Never"), observed(infra("exited"), app()), True, False, [], [], []),
    "created but never started: start a new one": (
        make_pod(policy="Never"), observed(infra(), app(state="created")), False, False, ["app"], [], []),
    "unknown state: start a new one": (
        make_pod(), observed(infra(), app(state="unknown")), False, False, ["app"], [], []),
    "Always, sandbox died: kill what is left, new sandbox": (
        make_pod(), observed(infra("exited"), app()), True, True, ["app"], [], []),
    "Always, sandbox and container dead: new sandbox": (
        make_pod(), observed(infra("exited"), app(state="exited", code=137)), False, True, ["app"], [], []),
    "infra removed by hand: new sandbox": (make_pod(), observed(app()), True, True, ["app"], [], []),
    "OnFailure, sandbox dead: only the failed container again": (
        make_pod("a", "b", policy="OnFailure"),
        observed(infra("exited"), app("a", state="exited", code=0), app("b", state="exited", code=2)),
        False, True, ["b"], [], []),
    "OnFailure, sandbox dead, all succeeded: nothing": (
        make_pod(policy="OnFailure"), observed(infra("exited"), app(state="exited", code=0)),
        False, False, [], [], []),
    "spec changed: kill and restart": (
        make_pod(), observed(infra(), app(stale=True)), False, False, ["app"], ["app-0"], []),
    "spec changed under Never: restarted anyway": (
        make_pod(policy="Never"), observed(infra(), app(stale=True)), False, False, ["app"], ["app-0"], []),
    "container removed from the spec: kill it": (
        make_pod("a"), observed(infra(), app("a"), app("gone")), False, False, [], ["gone-0"], []),
    "two running instances: kill the older": (
        make_pod(), observed(infra(), app(n=1), app(n=0)), False, False, [], ["app-0"], []),
    "deleted: kill the pod": (
        make_pod(deleting=True), observed(infra(), app()), True, False, [], [], []),
    "deleted, nothing running: noop": (
        make_pod(deleting=True), observed(infra("exited"), app(state="exited", code=0)),
        False, False, [], [], []),
    "deleted before it ever ran: no sandbox": (make_pod(deleting=True), None, False, False, [], [], []),
    "terminal phase: never again": (
        make_pod(phase="Failed"), observed(infra("exited"), app(state="exited", code=1)),
        False, False, [], [], []),
    "garbage: keep only the newest dead per name": (
        make_pod(),
        observed(infra(), app(n=3), app(state="exited", code=1, n=2), app(state="exited", code=1, n=1),
                 app(state="exited", code=1, n=0)),
        False, False, [], [], ["app-1", "app-0"]),
    "garbage: old sandboxes and containers gone from the spec": (
        make_pod("a"),
        observed(infra(n=2), infra("exited", n=1), infra("exited", n=0), app("a", n=1),
                 app("gone", state="exited", code=0)),
        False, False, [], [], ["POD-0", "gone-0"]),
}


@pytest.mark.parametrize(
    ("pod", "obs", "kill_pod", "create_sandbox", "to_start", "to_kill", "to_remove"),
    list(PLAN_CASES.values()),
    ids=list(PLAN_CASES),
)
def test_compute_pod_actions(pod, obs, kill_pod, create_sandbox, to_start, to_kill, to_remove):
    actions = sync.compute_pod_actions(pod, obs)
    assert shape(actions) == (kill_pod, create_sandbox, to_start, to_kill, to_remove)


def test_noop_only_when_nothing_to_do():
    assert sync.PodActions().is_noop()
    assert not sync.PodActions(containers_to_remove=["x"]).is_noop()
    assert not sync.PodActions(containers_to_kill={"x": "why"}).is_noop()
    assert sync.compute_pod_actions(make_pod(), observed(infra(), app())).is_noop()


def test_kill_reason_names_the_change():
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), app(stale=True)))
    assert actions.containers_to_kill == {"app-0": "container app definition changed"}


@pytest.mark.parametrize(
    ("obs", "name", "expected"),
    [
        (None, "app", 0),
        (observed(infra()), "app", 0),
        (observed(infra(n=2), app(n=4), app(state="exited", n=3)), "app", 5),
        (observed(infra(n=2)), INFRA_CONTAINER_NAME, 3),
    ],
)
def test_next_restart_count(obs, name, expected):
    assert sync.next_restart_count(obs, name) == expected


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (make_pod(), 30.0),
        (make_pod(grace=5), 5.0),
        (make_pod(grace=5, deleting=True, deletion_grace=0), 0.0),
        (make_pod(grace=5, deletion_grace=1), 5.0),  # not being deleted: the spec's
    ],
)
def test_pod_grace_seconds(pod, expected):
    assert sync.pod_grace_seconds(pod) == expected


# ---- execute / kill_pod with a recording fake ----


class FakeRuntime:
    """Records calls; raises the errors configured per image / for the sandbox."""

    def __init__(self, fail_images: dict[str, Exception] | None = None, infra_error: Exception | None = None):
        self.calls: list[tuple] = []
        self.fail_images = fail_images or {}
        self.infra_error = infra_error
        self.fail_removals: set[str] = set()

    async def ensure_image(self, image, pull_policy):
        self.calls.append(("ensure_image", image, pull_policy))
        if image in self.fail_images:
            raise self.fail_images[image]

    async def start_infra(self, pod, node_name, infra_image, restart_count=0):
        self.calls.append(("start_infra", infra_image, restart_count))
        if self.infra_error is not None:
            raise self.infra_error
        return ContainerInfo(
            id="new-infra", name=INFRA_CONTAINER_NAME, pod_uid=pod.metadata.uid, pod_name=pod.metadata.name,
            pod_namespace=pod.metadata.namespace, state="running", restart_count=restart_count,
            created_at=datetime.now(UTC) - timedelta(seconds=1), ip="172.17.0.5",
        )

    async def start_container(self, pod, container, node_name, infra, restart_count):
        self.calls.append(("start_container", container.name, infra.id, restart_count))
        return ContainerInfo(
            id=f"new-{container.name}", name=container.name, pod_uid=pod.metadata.uid,
            pod_name=pod.metadata.name, pod_namespace=pod.metadata.namespace, state="running",
            restart_count=restart_count,
        )

    async def stop_container(self, container_id, grace_seconds):
        self.calls.append(("stop", container_id, grace_seconds))

    async def remove_container(self, container_id):
        self.calls.append(("remove", container_id))
        if container_id in self.fail_removals:
            raise ContainerRuntimeError(f"cannot remove {container_id}")

    async def remove_pod_volumes(self, pod_uid):
        self.calls.append(("remove_volumes", pod_uid))


async def test_execute_new_pod_starts_sandbox_then_containers_in_order():
    pod = make_pod("a", "b")
    runtime = FakeRuntime()
    failures = await sync.execute(runtime, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None)
    assert failures == []
    assert runtime.calls == [
        ("start_infra", "pause:1", 0),
        ("ensure_image", IMAGE, "IfNotPresent"),
        ("start_container", "a", "new-infra", 0),
        ("ensure_image", IMAGE, "IfNotPresent"),
        ("start_container", "b", "new-infra", 0),
    ]


async def test_execute_restart_counts_and_garbage():
    pod = make_pod(grace=7)
    obs = observed(infra(n=1), app(state="exited", code=1, n=4), app(state="exited", code=1, n=3))
    runtime = FakeRuntime()
    await sync.execute(runtime, pod, sync.compute_pod_actions(pod, obs), "n1", "pause:1", obs)
    assert ("start_container", "app", "POD-1", 5) in runtime.calls
    assert runtime.calls[-1] == ("remove", "app-3")


async def test_execute_kills_with_the_pod_grace_then_new_sandbox():
    pod = make_pod(grace=7)
    obs = observed(infra("exited", n=0), app(n=2))
    runtime = FakeRuntime()
    await sync.execute(runtime, pod, sync.compute_pod_actions(pod, obs), "n1", "pause:1", obs)
    assert runtime.calls[:2] == [("stop", "app-2", 7.0), ("start_infra", "pause:1", 1)]
    assert ("start_container", "app", "new-infra", 3) in runtime.calls


async def test_execute_spec_change_stops_old_and_starts_new():
    pod = make_pod(grace=3)
    obs = observed(infra(), app(stale=True, n=0))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    await sync.execute(runtime, pod, actions, "n1", "pause:1", obs, grace_seconds=1)
    assert runtime.calls[0] == ("stop", "app-0", 1)
    assert ("start_container", "app", "POD-0", 1) in runtime.calls


async def test_execute_reports_container_failures_and_goes_on():
    pod = make_pod("a", "b")
    pod.spec.containers[0].image = "missing:1"
    runtime = FakeRuntime(fail_images={"missing:1": ImagePullError('failed to pull image "missing:1": nope')})
    failures = await sync.execute(runtime, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None)
    assert failures == [sync.ContainerFailure("a", "ErrImagePull", 'failed to pull image "missing:1": nope')]
    assert ("start_container", "b", "new-infra", 0) in runtime.calls


async def test_execute_create_failure_is_a_failure():
    pod = make_pod()

    class Failing(FakeRuntime):
        async def start_container(self, *args):
            raise CreateContainerError("invalid reference format")

    failures = await sync.execute(Failing(), pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None)
    assert failures == [sync.ContainerFailure("app", "CreateContainerError", "invalid reference format")]


async def test_execute_sandbox_failure_fails_every_container():
    pod = make_pod("a", "b")
    runtime = FakeRuntime(infra_error=InfraImageMissing("infra image x not found locally"))
    failures = await sync.execute(runtime, pod, sync.compute_pod_actions(pod, None), "n1", "x", None)
    assert [(f.container_name, f.reason) for f in failures] == [
        ("a", "InfraImageMissing"), ("b", "InfraImageMissing")
    ]
    assert not any(call[0] == "start_container" for call in runtime.calls)


async def test_execute_engine_down_propagates():
    pod = make_pod()
    runtime = FakeRuntime(fail_images={IMAGE: RuntimeUnavailable("docker engine unreachable")})
    obs = observed(infra())
    with pytest.raises(RuntimeUnavailable):
        await sync.execute(runtime, pod, sync.compute_pod_actions(pod, obs), "n1", "p", obs)


@pytest.mark.parametrize("remove", [False, True])
async def test_kill_pod_stops_apps_then_infra(remove):
    obs = observed(infra(), app("a"), app("b"), app("c", state="exited", code=0))
    runtime = FakeRuntime()
    await sync.kill_pod(runtime, obs, 2.0, remove=remove)
    stops = [call for call in runtime.calls if call[0] == "stop"]
    assert sorted(stops[:2]) == [("stop", "a-0", 2.0), ("stop", "b-0", 2.0)]
    assert stops[2:] == [("stop", "POD-0", 2.0)]
    removes = [call[1] for call in runtime.calls if call[0] == "remove"]
    assert sorted(removes) == (["POD-0", "a-0", "b-0", "c-0"] if remove else [])
    # The volumes go last, once every container is gone; a mere kill keeps them (emptyDir data
    # survives a sandbox re-creation).
    volume_calls = [call for call in runtime.calls if call[0] == "remove_volumes"]
    assert volume_calls == ([("remove_volumes", UID)] if remove else [])
    if remove:
        assert runtime.calls[-1] == ("remove_volumes", UID)


async def test_kill_pod_keeps_volumes_when_a_container_removal_fails():
    obs = observed(infra(state="exited"), app("a", state="exited", code=0))
    runtime = FakeRuntime()
    runtime.fail_removals.add("a-0")
    with pytest.raises(ContainerRuntimeError):
        await sync.kill_pod(runtime, obs, 1.0, remove=True)
    assert ("remove_volumes", UID) not in runtime.calls


async def test_execute_kill_pod_keeps_volumes():
    pod = make_pod()
    obs = observed(infra(state="exited"), app(state="running"))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    assert actions.kill_pod and actions.create_sandbox
    await sync.execute(runtime, pod, actions, "n1", "p", obs)
    assert not [call for call in runtime.calls if call[0] == "remove_volumes"]


NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def crashed(n: int, ran: float = 1.0, ago: float = 0.0) -> ContainerInfo:
    """The n-th attempt of "app", which ran ``ran`` seconds and exited ``ago`` seconds before NOW."""
    container = app(state="exited", code=1, n=n)
    container.finished_at = NOW - timedelta(seconds=ago)
    container.started_at = container.finished_at - timedelta(seconds=ran)
    return container


@pytest.mark.parametrize(
    ("container", "wait"),
    [
        (crashed(0), 0.0),  # the first restart is immediate
        (crashed(1), 10.0),
        (crashed(1, ago=4), 6.0),
        (crashed(2), 20.0),
        (crashed(3), 40.0),
        (crashed(10), 300.0),  # capped
        (crashed(10, ago=400), 0.0),
        (crashed(5, ran=700), 0.0),  # ran long enough: the back-off resets
    ],
)
def test_restart_backoff(container: ContainerInfo, wait: float) -> None:
    assert sync.restart_backoff(container, NOW) == pytest.approx(wait)


def test_container_in_backoff_is_reported_not_started() -> None:
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), crashed(2, ago=5)), NOW)
    assert actions.containers_to_start == [] and not actions.kill_pod
    assert [(f.container_name, f.reason) for f in actions.backoff] == [("app", "CrashLoopBackOff")]
    assert "back-off 20s restarting failed container=app" in actions.backoff[0].message


def test_backoff_expired_restarts() -> None:
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), crashed(2, ago=25)), NOW)
    assert actions.containers_to_start == ["app"] and actions.backoff == []
