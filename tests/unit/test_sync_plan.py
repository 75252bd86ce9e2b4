"""The sync plan (compute_pod_actions) as table tests over hand-built observations; its execution
is in test_executor.py (fake runtime) and tests/e2e/test_runtime_docker.py (the real engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from agent_builders import app, infra, make_pod, observed

from pykubelet import sync
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo


def shape(actions: sync.PodActions) -> tuple:
    """The plan without the free-text kill reasons."""
    return (
        actions.kill_pod,
        actions.create_sandbox,
        list(actions.containers_to_start),
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
    ("obs", "to_start", "sandbox"),
    [
        (None, {"app": 0}, 0),
        (observed(infra("exited", n=1), app(state="exited", code=1, n=4)), {"app": 5}, 2),
        (observed(infra(n=2), app(state="exited", code=1, n=4), app(state="exited", n=3)), {"app": 5}, 0),
    ],
)
def test_plan_carries_restart_counts(obs, to_start, sandbox):
    actions = sync.compute_pod_actions(make_pod(), obs)
    assert actions.containers_to_start == to_start
    if actions.create_sandbox:
        assert actions.sandbox_restart_count == sandbox


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
    assert actions.containers_to_start == {} and not actions.kill_pod
    assert [(f.container_name, f.reason) for f in actions.backoff] == [("app", "CrashLoopBackOff")]
    assert "back-off 20s restarting failed container=app" in actions.backoff[0].message


def test_backoff_expired_restarts() -> None:
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), crashed(2, ago=25)), NOW)
    assert actions.containers_to_start == {"app": 3} and actions.backoff == []


@pytest.mark.parametrize(
    ("dead", "requeue"),
    [
        (crashed(1, ran=1, ago=4), 6.0),  # 10 s back-off, 4 s gone
        (crashed(3, ran=1, ago=0), 40.0),
        (crashed(9, ran=1, ago=100), 200.0),  # capped at 300 s
    ],
)
def test_back_off_asks_to_be_looked_at_again(dead, requeue):
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), dead), NOW)
    assert actions.containers_to_start == {}
    assert [f.reason for f in actions.backoff] == ["CrashLoopBackOff"]
    assert actions.requeue_after == pytest.approx(requeue)


@pytest.mark.parametrize(
    "dead",
    [crashed(0), crashed(2, ran=600), crashed(1, ago=11)],
    ids=["first crash", "ran ten minutes", "back-off over"],
)
def test_restart_without_back_off(dead):
    actions = sync.compute_pod_actions(make_pod(), observed(infra(), dead), NOW)
    assert actions.containers_to_start == {"app": dead.restart_count + 1}
    assert actions.requeue_after is None and actions.backoff == []


@pytest.mark.parametrize(("policy", "kill_pod"), [("Always", False), ("OnFailure", False), ("Never", True)])
def test_probe_failure_kills_then_a_later_sync_restarts_with_back_off(policy, kill_pod):
    failures = {"app": "Container app failed liveness probe, will be restarted"}
    actions = sync.compute_pod_actions(make_pod(policy=policy), observed(infra(), app()), NOW, failures)
    assert actions.containers_to_kill == {"app-0": failures["app"]}
    assert actions.containers_to_start == {}  # the restart is the next sync's, with the back-off
    assert actions.kill_pod is kill_pod  # a pod that will restart it keeps its sandbox
    if policy == "Never":
        return
    # Killed by the probe for the second time in a row: it waits like a crash-looping container.
    killed = crashed(1, ago=1.0)
    later = sync.compute_pod_actions(make_pod(policy=policy), observed(infra(), killed), NOW)
    assert later.containers_to_start == {}
    assert [f.reason for f in later.backoff] == ["CrashLoopBackOff"]


def test_probe_failure_of_a_container_not_running_is_ignored():
    failures = {"app": "failed liveness probe"}
    obs = observed(infra(), app(state="exited", code=0))
    actions = sync.compute_pod_actions(make_pod(policy="OnFailure"), obs, NOW, failures)
    assert actions.containers_to_kill == {} and actions.kill_pod
