"""The sync plan with init containers and sidecars (init containers with restartPolicy Always),
as table tests over hand-built observations: init containers one at a time and in order, to
completion; sidecars started in their turn, kept running, restarted whatever the pod's policy,
not keeping a Never/OnFailure pod from completing; a new sandbox runs the init containers again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from agent_builders import IMAGE, app, infra, make_pod, observed

from pykubelet import sync
from pykubelet.runtime.base import ContainerInfo
from pykubelet.runtime.labels import container_spec_hash
from pymaster.api import objects_pb2

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)


def pod_with(
    *inits: str, sidecars: tuple[str, ...] = (), apps: tuple[str, ...] = ("app",), policy: str = "Always"
) -> objects_pb2.Pod:
    """A pod whose init containers are ``inits`` with the ``sidecars`` among them (in order)."""
    pod = make_pod(*apps, policy=policy)
    for name in inits:
        container = pod.spec.init_containers.add(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
        if name in sidecars:
            container.restart_policy = "Always"
    return pod


def sidecar_hash(name: str) -> str:
    return container_spec_hash(objects_pb2.Container(
        name=name, image=IMAGE, image_pull_policy="IfNotPresent", restart_policy="Always"
    ))


def init(
    name: str,
    state: str = "exited",
    code: int | None = 0,
    n: int = 0,
    sidecar: bool = False,
    created: datetime = T0 + timedelta(seconds=1),
) -> ContainerInfo:
    info = app(name, state=state, code=code if state == "exited" else None, n=n)
    info.created_at = created
    if sidecar:
        info.spec_hash = sidecar_hash(name)
    return info


def sandbox(state: str = "running", n: int = 0) -> ContainerInfo:
    info = infra(state, n)
    info.created_at = T0
    return info


def plan(pod, *containers, not_started=(), failures=None) -> tuple:
    actions = sync.compute_pod_actions(pod, observed(*containers), NOW, failures, not_started)
    return actions.kill_pod, actions.create_sandbox, actions.containers_to_start


CASES = {
    "new pod: sandbox and the first init container only": (
        pod_with("i1", "i2"), (), (False, True, {"i1": 0})),
    "first done: the second": (
        pod_with("i1", "i2"), (sandbox(), init("i1")), (False, False, {"i2": 0})),
    "an init container running: wait": (
        pod_with("i1", "i2"), (sandbox(), init("i1", "running")), (False, False, {})),
    "all done: the app containers": (
        pod_with("i1", "i2", apps=("a", "b")), (sandbox(), init("i1"), init("i2")),
        (False, False, {"a": 0, "b": 0})),
    "failed, Always: restarted (first restart at once)": (
        pod_with("i1"), (sandbox(), init("i1", code=1)), (False, False, {"i1": 1})),
    "failed, OnFailure: restarted": (
        pod_with("i1", policy="OnFailure"), (sandbox(), init("i1", code=1)), (False, False, {"i1": 1})),
    "failed, Never: the pod fails (sandbox stopped)": (
        pod_with("i1", "i2", policy="Never"), (sandbox(), init("i1", code=1)), (True, False, {})),
    "sidecar: started in its turn": (
        pod_with("s", "i1", sidecars=("s",)), (sandbox(),), (False, False, {"s": 0})),
    "sidecar running: the next init container": (
        pod_with("s", "i1", sidecars=("s",)), (sandbox(), init("s", "running", sidecar=True)),
        (False, False, {"i1": 0})),
    "sidecar not past its startup probe: the next waits": (
        pod_with("s", "i1", sidecars=("s",)), (sandbox(), init("s", "running", sidecar=True)),
        (False, False, {}), {"s"}),
    "sidecar died during init: restarted": (
        pod_with("s", "i1", sidecars=("s",)),
        (sandbox(), init("s", code=0, sidecar=True), init("i1", "running")), (False, False, {"s": 1})),
    "sidecar died while the apps run: restarted (Never too)": (
        pod_with("s", sidecars=("s",), policy="Never"),
        (sandbox(), init("s", code=2, sidecar=True), app("app")), (False, False, {"s": 1})),
    "apps done under Never: sidecars and sandbox stop": (
        pod_with("s", sidecars=("s",), policy="Never"),
        (sandbox(), init("s", "running", sidecar=True), app("app", state="exited", code=0)),
        (True, False, {})),
    "apps done under OnFailure: sidecars and sandbox stop": (
        pod_with("s", sidecars=("s",), policy="OnFailure"),
        (sandbox(), init("s", "running", sidecar=True), app("app", state="exited", code=0)),
        (True, False, {})),
    "new sandbox runs the init containers again": (
        pod_with("i1", "i2"),
        (sandbox("exited"), init("i1"), init("i2"), app("app", state="exited", code=1)),
        (False, True, {"i1": 1})),
    "init containers of an older sandbox run again": (
        pod_with("i1"), (sandbox(n=1), init("i1", created=T0 - timedelta(seconds=5))),
        (False, False, {"i1": 1})),
    "OnFailure, all apps succeeded, sandbox gone: nothing again": (
        pod_with("i1", policy="OnFailure"),
        (sandbox("exited"), init("i1"), app("app", state="exited", code=0)), (False, False, {})),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_init_plan(case):
    pod, containers, expected, *not_started = case
    assert plan(pod, *containers, not_started=not_started[0] if not_started else ()) == expected


def test_init_failure_backs_off_like_an_app_container():
    dead = init("i1", code=1, n=2)
    dead.started_at, dead.finished_at = NOW - timedelta(seconds=6), NOW - timedelta(seconds=5)
    actions = sync.compute_pod_actions(pod_with("i1"), observed(sandbox(), dead), NOW)
    assert actions.containers_to_start == {}
    assert [(f.container_name, f.reason) for f in actions.backoff] == [("i1", "CrashLoopBackOff")]
    assert actions.requeue_after == pytest.approx(15.0)


def test_sidecar_liveness_failure_restarts_it_whatever_the_policy():
    pod = pod_with("s", sidecars=("s",), policy="Never")
    running = init("s", "running", sidecar=True)
    actions = sync.compute_pod_actions(
        pod, observed(sandbox(), running, app("app")), NOW, {"s": "failed liveness probe"}
    )
    assert actions.containers_to_kill == {running.id: "failed liveness probe"}
    assert not actions.kill_pod
    killed = init("s", "exited", code=137, sidecar=True)
    later = sync.compute_pod_actions(pod, observed(sandbox(), killed, app("app")), NOW)
    assert later.containers_to_start == {"s": 1}


def test_init_containers_are_not_garbage():
    pod = pod_with("i1")
    old = init("i1", n=0)
    actions = sync.compute_pod_actions(pod, observed(sandbox(), init("i1", n=1), old, app("app")), NOW)
    assert actions.containers_to_remove == [old.id]
