"""Carrying out a sync plan (pykubelet.executor) against the shared fake runtime (tests/fakes.py):
the order of operations, restart counts, failures as container statuses, and pod kills that keep
or clean the volumes. The real engine is in tests/e2e/test_runtime_docker.py."""

from __future__ import annotations

import pytest
from agent_builders import IMAGE, UID, app, infra, make_pod, observed

from pykubelet import sync
from pykubelet.executor import PodExecutor
from pykubelet.runtime.base import (
    ContainerRuntimeError,
    CreateContainerError,
    ExecResult,
    ImagePullError,
    InfraImageMissing,
    Mount,
    RuntimeUnavailable,
)
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime
from tests.unit.test_agent_env import FakeObjects


class Events:
    """Collects what the executor records: (type, reason, message, container)."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str, str]] = []

    def pod_event(
        self, pod: objects_pb2.Pod, type_: str, reason: str, message: str, container: str = ""
    ) -> None:
        self.recorded.append((type_, reason, message, container))


def make_executor(
    runtime: FakeRuntime, infra_image: str = "pause:1", events: Events | None = None
) -> PodExecutor:
    return PodExecutor(runtime, runtime.volumes, "n1", infra_image, "10.0.0.1", events)


async def test_execute_new_pod_starts_sandbox_then_containers_in_order():
    pod = make_pod("a", "b")
    runtime = FakeRuntime()
    failures = await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, None), None)
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
    await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, obs), obs)
    assert ("start_container", "app", "POD-1", 5) in runtime.calls
    assert runtime.calls[-1] == ("remove", "app-3")


async def test_execute_kills_with_the_pod_grace_then_new_sandbox():
    pod = make_pod(grace=7)
    obs = observed(infra("exited", n=0), app(n=2))
    runtime = FakeRuntime()
    await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, obs), obs)
    assert runtime.calls[:2] == [("stop", "app-2", 7.0), ("start_infra", "pause:1", 1)]
    assert ("start_container", "app", "new-infra", 3) in runtime.calls


async def test_execute_spec_change_stops_old_with_its_override_grace_and_starts_new():
    pod = make_pod(grace=3)
    obs = observed(infra(), app(stale=True, n=0))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    await make_executor(runtime, "pause:1").execute(pod, actions, obs, grace_overrides={"app": 1})
    assert runtime.calls[0] == ("stop", "app-0", 1)
    assert ("start_container", "app", "POD-0", 1) in runtime.calls


async def test_execute_reports_container_failures_and_goes_on():
    pod = make_pod("a", "b")
    pod.spec.containers[0].image = "missing:1"
    runtime = FakeRuntime(fail_images={"missing:1": ImagePullError('failed to pull image "missing:1": nope')})
    failures = await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, None), None)
    assert failures == [sync.ContainerFailure("a", "ErrImagePull", 'failed to pull image "missing:1": nope')]
    assert ("start_container", "b", "new-infra", 0) in runtime.calls


async def test_execute_create_failure_is_a_failure():
    pod = make_pod()

    class Failing(FakeRuntime):
        async def start_container(self, *args, **kwargs):
            raise CreateContainerError("invalid reference format")

    runtime = Failing()
    failures = await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, None), None)
    assert failures == [sync.ContainerFailure("app", "CreateContainerError", "invalid reference format")]


async def test_execute_mounts_what_the_volume_manager_prepared():
    pod = make_pod("a", "b")
    runtime = FakeRuntime()
    await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, None), None)
    assert runtime.mounts == {
        name: [Mount(f"/{name}", f"/host/{UID}/{name}"),
               Mount("/dev/termination-log", f"/host/{UID}/{name}/0-termination-log")]
        for name in ("a", "b")
    }


async def test_execute_volume_failure_is_a_create_container_failure():
    pod = make_pod()
    runtime = FakeRuntime()
    runtime.volumes.error = CreateContainerError("hostPath type check failed: /x is not a directory")
    failures = await make_executor(runtime, "pause:1").execute(pod, sync.compute_pod_actions(pod, None), None)
    message = "hostPath type check failed: /x is not a directory"
    assert failures == [sync.ContainerFailure("app", "CreateContainerError", message)]
    assert not any(call[0] == "start_container" for call in runtime.calls)


async def test_execute_sandbox_failure_fails_every_container():
    pod = make_pod("a", "b")
    runtime = FakeRuntime(infra_error=InfraImageMissing("infra image x not found locally"))
    failures = await make_executor(runtime, "x").execute(pod, sync.compute_pod_actions(pod, None), None)
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
        await make_executor(runtime, "p").execute(pod, actions, obs)


@pytest.mark.parametrize("remove", [False, True])
async def test_kill_pod_stops_apps_then_infra(remove):
    obs = observed(infra(), app("a"), app("b"), app("c", state="exited", code=0))
    runtime = FakeRuntime()
    await make_executor(runtime).kill_pod(obs, 2.0, remove=remove)
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
        await make_executor(runtime).kill_pod(obs, 1.0, remove=True)
    assert ("remove_volumes", UID) not in runtime.calls


async def test_execute_kill_pod_keeps_volumes():
    pod = make_pod()
    obs = observed(infra(state="exited"), app(state="running"))
    runtime = FakeRuntime()
    actions = sync.compute_pod_actions(pod, obs)
    assert actions.kill_pod and actions.create_sandbox
    await make_executor(runtime, "p").execute(pod, actions, obs)
    assert not [call for call in runtime.calls if call[0] == "remove_volumes"]


def _init(pod: objects_pb2.Pod, name: str, sidecar: bool = False) -> objects_pb2.Container:
    container = pod.spec.init_containers.add(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
    if sidecar:
        container.restart_policy = "Always"
    return container


async def test_execute_starts_the_first_init_container_only_and_records_events():
    pod = make_pod()
    _init(pod, "setup")
    _init(pod, "migrate")
    runtime, events = FakeRuntime(), Events()
    await make_executor(runtime, events=events).execute(pod, sync.compute_pod_actions(pod, None), None)
    assert [c for c in runtime.calls if c[0] == "start_container"] == [
        ("start_container", "setup", "new-infra", 0)
    ]
    assert events.recorded == [
        ("Normal", "Pulled", f'Container image "{IMAGE}" already present on machine', "setup"),
        ("Normal", "Created", "Created container setup", "setup"),
        ("Normal", "Started", "Started container setup", "setup"),
    ]


async def test_a_failed_post_start_hook_kills_the_container_and_is_its_failure():
    pod = make_pod(grace=5)
    pod.spec.containers[0].lifecycle.post_start.exec.command[:] = ["sh", "-c", "exit 7"]
    runtime, events = FakeRuntime(), Events()
    runtime.exec_results["new-app"] = ExecResult(7, b"", b"no config\n")
    actions = sync.compute_pod_actions(pod, None)
    failures = await make_executor(runtime, events=events).execute(pod, actions, None)
    assert [(f.container_name, f.reason) for f in failures] == [("app", "PostStartHookError")]
    assert "no config" in failures[0].message
    calls = [c[0] for c in runtime.calls]
    assert calls.index("exec") < calls.index("stop")
    # The hook's container is stopped without its preStop hook (kubelet's rule).
    assert [c for c in runtime.calls if c[0] == "exec"] == [("exec", "new-app", ("sh", "-c", "exit 7"))]
    assert ("Warning", "FailedPostStartHook") in [(t, r) for t, r, _, _ in events.recorded]


async def test_pre_stop_runs_before_sigterm_with_the_grace_left():
    pod = make_pod(grace=7)
    pod.spec.containers[0].lifecycle.pre_stop.exec.command[:] = ["/bin/drain"]
    obs = observed(infra(), app())
    runtime, events = FakeRuntime(), Events()
    runtime.pods[UID] = obs
    await make_executor(runtime, events=events).kill_pod(obs, 7.0, remove=False, pod=pod)
    hook, stop = runtime.calls[0], runtime.calls[1]
    assert hook == ("exec", "app-0", ("/bin/drain",))
    assert stop[:2] == ("stop", "app-0") and 2.0 <= stop[2] <= 7.0
    assert runtime.calls[2] == ("stop", "POD-0", 7.0)
    assert ("Normal", "Killing", "Stopping container app", "app") in events.recorded


async def test_kill_pod_stops_apps_then_sidecars_in_reverse_then_the_sandbox():
    pod = make_pod("web")
    _init(pod, "setup")
    _init(pod, "proxy", sidecar=True)
    _init(pod, "logger", sidecar=True)
    obs = observed(infra(), app("web"), app("proxy"), app("logger"), app("setup", state="exited", code=0))
    runtime = FakeRuntime()
    await make_executor(runtime).kill_pod(obs, 3.0, remove=False, pod=pod)
    assert [c[1] for c in runtime.calls if c[0] == "stop"] == ["web-0", "logger-0", "proxy-0", "POD-0"]


async def test_pulled_event_says_how_long_a_pull_took():
    pod = make_pod()

    class Pulling(FakeRuntime):
        async def ensure_image(self, image, pull_policy, on_pull=None):
            on_pull(image)
            return 1.5

    runtime, events = Pulling(), Events()
    await make_executor(runtime, events=events).execute(pod, sync.compute_pod_actions(pod, None), None)
    assert events.recorded[:2] == [
        ("Normal", "Pulling", f'Pulling image "{IMAGE}"', "app"),
        ("Normal", "Pulled", f'Successfully pulled image "{IMAGE}" in 1.500s', "app"),
    ]


# ---- the environment (pykubelet.env) resolved before each start ----


def _env_pod(*env: objects_pb2.EnvVar, host_network: bool = False) -> objects_pb2.Pod:
    pod = make_pod()
    pod.spec.host_network = host_network
    container = pod.spec.containers[0]
    container.env.extend(env)
    container.command[:] = ["sh", "-c", "echo $(POD_IP) $$(POD_IP)"]
    return pod


def _field(name: str, path: str) -> objects_pb2.EnvVar:
    ref = objects_pb2.ObjectFieldSelector(field_path=path)
    return objects_pb2.EnvVar(name=name, value_from=objects_pb2.EnvVarSource(field_ref=ref))


def _key(name: str, config_map: str, key: str) -> objects_pb2.EnvVar:
    ref = objects_pb2.ConfigMapKeySelector(name=config_map, key=key)
    return objects_pb2.EnvVar(name=name, value_from=objects_pb2.EnvVarSource(config_map_key_ref=ref))


async def test_start_runs_the_resolved_container_and_mounts_for_it():
    objects = FakeObjects()
    objects.add_config_map("conf", {"mode": "fast"})
    pod = _env_pod(
        _field("POD_IP", "status.podIP"), _field("HOST_IP", "status.hostIP"), _key("MODE", "conf", "mode")
    )
    runtime = FakeRuntime()
    mounted_for: list[objects_pb2.Container] = []
    mounts = runtime.volumes.mounts

    async def recording_mounts(p, spec):
        mounted_for.append(spec)
        return await mounts(p, spec)

    runtime.volumes.mounts = recording_mounts
    executor = PodExecutor(runtime, runtime.volumes, "n1", "pause:1", "10.0.0.1", None, objects)
    assert await executor.execute(pod, sync.compute_pod_actions(pod, None), None) == []
    resolved = runtime.resolved["app"]
    assert [(e.name, e.value) for e in resolved.env] == [
        ("POD_IP", "172.17.0.5"), ("HOST_IP", "10.0.0.1"), ("MODE", "fast"),
    ]
    assert list(resolved.command) == ["sh", "-c", "echo 172.17.0.5 $(POD_IP)"]
    assert mounted_for == [resolved]  # subPathExpr expands against the resolved env
    assert pod.spec.containers[0].env[0].HasField("value_from")  # the spec itself is untouched


async def test_on_the_host_network_the_pod_ip_is_the_nodes():
    pod = _env_pod(_field("POD_IP", "status.podIP"), host_network=True)
    runtime = FakeRuntime()
    await make_executor(runtime).execute(pod, sync.compute_pod_actions(pod, None), None)
    assert [(e.name, e.value) for e in runtime.resolved["app"].env] == [("POD_IP", "10.0.0.1")]


async def test_a_missing_config_map_is_a_config_error_until_it_exists():
    objects = FakeObjects()
    pod = _env_pod(_key("MODE", "conf", "mode"))
    pod.spec.containers.add(name="other", image=IMAGE, image_pull_policy="IfNotPresent")
    runtime, events = FakeRuntime(), Events()
    executor = PodExecutor(runtime, runtime.volumes, "n1", "pause:1", "10.0.0.1", events, objects)
    failures = await executor.execute(pod, sync.compute_pod_actions(pod, None), None)
    message = 'configmap "conf" not found'
    assert failures == [sync.ContainerFailure("app", "CreateContainerConfigError", message)]
    assert ("Warning", "Failed", 'Error: configmap "conf" not found', "app") in events.recorded
    assert [c[1] for c in runtime.calls if c[0] == "start_container"] == ["other"]  # the others go on
    objects.add_config_map("conf", {"mode": "fast"})
    obs = await runtime.get_pod("n1", UID)
    assert await executor.execute(pod, sync.compute_pod_actions(pod, obs), obs) == []
    assert [(e.name, e.value) for e in runtime.resolved["app"].env] == [("MODE", "fast")]


async def test_without_a_reader_a_reference_is_a_config_error():
    pod = _env_pod(_key("MODE", "conf", "mode"))
    failures = await make_executor(FakeRuntime()).execute(pod, sync.compute_pod_actions(pod, None), None)
    assert [(f.reason, f.message) for f in failures] == [
        ("CreateContainerConfigError", "couldn't get configMap default/conf, no kubeClient defined")
    ]


async def test_invalid_env_from_keys_are_an_event_about_the_pod():
    objects = FakeObjects()
    objects.add_config_map("conf", {"1bad": "x", "good": "y"})
    pod = make_pod()
    pod.spec.containers[0].env_from.add(config_map_ref=objects_pb2.ConfigMapEnvSource(name="conf"))
    runtime, events = FakeRuntime(), Events()
    executor = PodExecutor(runtime, runtime.volumes, "n1", "pause:1", "10.0.0.1", events, objects)
    await executor.execute(pod, sync.compute_pod_actions(pod, None), None)
    assert [(e.name, e.value) for e in runtime.resolved["app"].env] == [("good", "y")]
    assert ("Warning", "InvalidEnvironmentVariableNames",
            "Keys [1bad] from the EnvFrom configMap default/conf were skipped since they are considered "
            "invalid environment variable names.", "") in events.recorded
