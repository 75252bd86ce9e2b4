"""Carrying out a sync plan (pykubelet.executor) against the shared fake runtime (tests/fakes.py):
the order of operations, restart counts, failures as container statuses, and pod kills that keep
or clean the volumes. The real engine is in tests/e2e/test_runtime_docker.py."""

from __future__ import annotations

import pytest
from agent_builders import IMAGE, UID, app, infra, make_pod, observed

from pykubelet import executor, sync
from pykubelet.runtime.base import (
    ContainerRuntimeError,
    CreateContainerError,
    ImagePullError,
    InfraImageMissing,
    Mount,
    RuntimeUnavailable,
)
from tests.fakes import FakeRuntime


async def test_execute_new_pod_starts_sandbox_then_containers_in_order():
    pod = make_pod("a", "b")
    runtime = FakeRuntime()
    failures = await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None
    )
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
    await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, obs), "n1", "pause:1", obs
    )
    assert ("start_container", "app", "POD-1", 5) in runtime.calls
    assert runtime.calls[-1] == ("remove", "app-3")


async def test_execute_kills_with_the_pod_grace_then_new_sandbox():
    pod = make_pod(grace=7)
    obs = observed(infra("exited", n=0), app(n=2))
    runtime = FakeRuntime()
    await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, obs), "n1", "pause:1", obs
    )
    assert runtime.calls[:2] == [("stop", "app-2", 7.0), ("start_infra", "pause:1", 1)]
    assert ("start_container", "app", "new-infra", 3) in runtime.calls


async def test_execute_spec_change_stops_old_and_starts_new():
    pod = make_pod(grace=3)
    obs = observed(infra(), app(stale=True, n=0))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    await executor.execute(runtime, runtime.volumes, pod, actions, "n1", "pause:1", obs, grace_seconds=1)
    assert runtime.calls[0] == ("stop", "app-0", 1)
    assert ("start_container", "app", "POD-0", 1) in runtime.calls


async def test_execute_reports_container_failures_and_goes_on():
    pod = make_pod("a", "b")
    pod.spec.containers[0].image = "missing:1"
    runtime = FakeRuntime(fail_images={"missing:1": ImagePullError('failed to pull image "missing:1": nope')})
    failures = await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None
    )
    assert failures == [sync.ContainerFailure("a", "ErrImagePull", 'failed to pull image "missing:1": nope')]
    assert ("start_container", "b", "new-infra", 0) in runtime.calls


async def test_execute_create_failure_is_a_failure():
    pod = make_pod()

    class Failing(FakeRuntime):
        async def start_container(self, *args, **kwargs):
            raise CreateContainerError("invalid reference format")

    runtime = Failing()
    failures = await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None
    )
    assert failures == [sync.ContainerFailure("app", "CreateContainerError", "invalid reference format")]


async def test_execute_mounts_what_the_volume_manager_prepared():
    pod = make_pod("a", "b")
    runtime = FakeRuntime()
    await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None
    )
    assert runtime.mounts == {
        "a": [Mount("/a", f"/host/{UID}/a")],
        "b": [Mount("/b", f"/host/{UID}/b")],
    }


async def test_execute_volume_failure_is_a_create_container_failure():
    pod = make_pod()
    runtime = FakeRuntime()
    runtime.volumes.error = CreateContainerError("hostPath type check failed: /x is not a directory")
    failures = await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "pause:1", None
    )
    message = "hostPath type check failed: /x is not a directory"
    assert failures == [sync.ContainerFailure("app", "CreateContainerError", message)]
    assert not any(call[0] == "start_container" for call in runtime.calls)


async def test_execute_sandbox_failure_fails_every_container():
    pod = make_pod("a", "b")
    runtime = FakeRuntime(infra_error=InfraImageMissing("infra image x not found locally"))
    failures = await executor.execute(
        runtime, runtime.volumes, pod, sync.compute_pod_actions(pod, None), "n1", "x", None
    )
    assert [(f.container_name, f.reason) for f in failures] == [
        ("a", "InfraImageMissing"), ("b", "InfraImageMissing")
    ]
    assert not any(call[0] == "start_container" for call in runtime.calls)


async def test_execute_engine_down_propagates():
    pod = make_pod()
    runtime = FakeRuntime(fail_images={IMAGE: RuntimeUnavailable("docker engine unreachable")})
    obs = observed(infra())
    with pytest.raises(RuntimeUnavailable):
        actions = sync.compute_pod_actions(pod, obs)
        await executor.execute(runtime, runtime.volumes, pod, actions, "n1", "p", obs)


@pytest.mark.parametrize("remove", [False, True])
async def test_kill_pod_stops_apps_then_infra(remove):
    obs = observed(infra(), app("a"), app("b"), app("c", state="exited", code=0))
    runtime = FakeRuntime()
    await executor.kill_pod(runtime, runtime.volumes, obs, 2.0, remove=remove)
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
        await executor.kill_pod(runtime, runtime.volumes, obs, 1.0, remove=True)
    assert ("remove_volumes", UID) not in runtime.calls


async def test_execute_kill_pod_keeps_volumes():
    pod = make_pod()
    obs = observed(infra(state="exited"), app(state="running"))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    assert actions.kill_pod and actions.create_sandbox
    await executor.execute(runtime, runtime.volumes, pod, actions, "n1", "p", obs)
    assert not [call for call in runtime.calls if call[0] == "remove_volumes"]
