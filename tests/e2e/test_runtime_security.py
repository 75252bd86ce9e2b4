"""Security contexts and the QoS OOM policy on the real Docker Engine, through DockerRuntime (no
agent process): each field is proven from inside the container (``id``, /proc/1/status, a write
that fails, /proc/sys) and in ``docker inspect``. Each test uses its own node name and leaves no
container."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from pykubelet import sync
from pykubelet.admission import host_apparmor_enabled
from pykubelet.executor import PodExecutor
from pykubelet.pod_status import Observations, compute_pod_status
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, CreateContainerConfigError
from pykubelet.runtime.docker import DockerRuntime
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2

from .harness import BUSYBOX

pytestmark = pytest.mark.e2e

PAUSE = "pykube/pause:3.9"
# Capability bits (linux/capability.h) of what these tests add or drop.
CAP_CHOWN, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 0, 10, 12, 13
CAP_SYS_RESOURCE = 24
DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
}


@pytest.fixture
def seccomp_dir(tmp_path: Path) -> Path:
    """The node's Localhost seccomp profiles: ``profiles/deny-mkdir.json``."""
    directory = tmp_path / "seccomp"
    (directory / "profiles").mkdir(parents=True)
    (directory / "profiles" / "deny-mkdir.json").write_text(json.dumps(DENY_MKDIR))
    return directory


@pytest.fixture
async def rt(seccomp_dir: Path) -> AsyncIterator[DockerRuntime]:
    runtime = DockerRuntime(seccomp_dir=str(seccomp_dir))
    try:
        yield runtime
    finally:
        await runtime.close()


def make_pod(*names: str) -> objects_pb2.Pod:
    """A pod whose containers ``names`` (default "main") sleep."""
    meta = objects_pb2.ObjectMeta(name="sec", namespace="default", uid=str(uuid.uuid4()))
    pod = objects_pb2.Pod(metadata=meta)
    pod.spec.termination_grace_period_seconds = 1
    for name in names or ("main",):
        pod.spec.containers.add(name=name, image=BUSYBOX, command=["sleep", "3600"])
    return pod


async def start(rt: DockerRuntime, pod: objects_pb2.Pod, node: str) -> dict[str, ContainerInfo]:
    """Starts the pod's infra container, then each container; returns them by name."""
    infra = await rt.start_infra(pod, node, PAUSE)
    started = {INFRA_CONTAINER_NAME: infra}
    for container in pod.spec.containers:
        started[container.name] = await rt.start_container(pod, container, node, infra, 0, [])
    return started


async def run(rt: DockerRuntime, info: ContainerInfo, *command: str) -> tuple[int, str]:
    """Runs ``command`` in the container: (exit code, stdout + stderr)."""
    result = await rt.exec(info.id, list(command), 10)
    return result.exit_code, (result.stdout + result.stderr).decode()


async def status_field(rt: DockerRuntime, info: ContainerInfo, field: str) -> str:
    """A field of the container's main process' /proc/1/status, e.g. "CapEff"."""
    code, output = await run(rt, info, "grep", f"^{field}:", "/proc/1/status")
    assert code == 0, output
    return output.split()[1]


async def test_users_and_groups(rt, clean_node, docker_client):
    pod = make_pod("main", "other")
    context = pod.spec.security_context
    context.run_as_user, context.run_as_group, context.fs_group = 1000, 3000, 2000
    context.supplemental_groups.append(4000)
    pod.spec.containers[1].security_context.run_as_user = 2000  # the container's wins
    started = await start(rt, pod, clean_node)

    assert await run(rt, started["main"], "id") == (0, "uid=1000 gid=3000 groups=2000,3000,4000\n")
    assert await run(rt, started["other"], "id") == (0, "uid=2000 gid=3000 groups=2000,3000,4000\n")
    attrs = docker_client.api.inspect_container(started["main"].id)
    assert attrs["Config"]["User"] == "1000:3000"
    assert attrs["HostConfig"]["GroupAdd"] == ["4000", "2000"]


async def test_run_as_group_alone_keeps_the_images_user(rt, clean_node):
    pod = make_pod()
    pod.spec.containers[0].security_context.run_as_group = 3000
    started = await start(rt, pod, clean_node)
    assert await run(rt, started["main"], "id", "-u") == (0, "0\n")  # busybox runs as root
    assert await run(rt, started["main"], "id", "-g") == (0, "3000\n")


async def test_read_only_root_filesystem(rt, clean_node, docker_client):
    pod = make_pod("locked", "open")
    pod.spec.containers[0].security_context.read_only_root_filesystem = True
    started = await start(rt, pod, clean_node)
    code, output = await run(rt, started["locked"], "touch", "/x")
    assert code != 0 and "Read-only file system" in output
    assert await run(rt, started["open"], "touch", "/x") == (0, "")
    assert docker_client.api.inspect_container(started["locked"].id)["HostConfig"]["ReadonlyRootfs"] is True


async def test_capabilities(rt, clean_node, docker_client):
    pod = make_pod("minimal", "adjusted")
    minimal = pod.spec.containers[0].security_context.capabilities
    minimal.drop.append("ALL")
    minimal.add.extend(["chown", "CAP_NET_BIND_SERVICE"])
    adjusted = pod.spec.containers[1].security_context.capabilities
    adjusted.add.append("NET_ADMIN")
    adjusted.drop.append("NET_RAW")
    started = await start(rt, pod, clean_node)

    minimal_effective = int(await status_field(rt, started["minimal"], "CapEff"), 16)
    assert minimal_effective == 1 << CAP_CHOWN | 1 << CAP_NET_BIND_SERVICE
    effective = int(await status_field(rt, started["adjusted"], "CapEff"), 16)
    assert effective >> CAP_NET_ADMIN & 1 and effective >> CAP_CHOWN & 1  # added, and Docker's default kept
    assert not effective >> CAP_NET_RAW & 1
    host = docker_client.api.inspect_container(started["minimal"].id)["HostConfig"]
    assert (host["CapAdd"], host["CapDrop"]) == (["CAP_CHOWN", "CAP_NET_BIND_SERVICE"], ["ALL"])


async def test_allow_privilege_escalation_false_sets_no_new_privs(rt, clean_node, docker_client):
    pod = make_pod("strict", "default")
    pod.spec.containers[0].security_context.allow_privilege_escalation = False
    started = await start(rt, pod, clean_node)
    assert await status_field(rt, started["strict"], "NoNewPrivs") == "1"
    assert await status_field(rt, started["default"], "NoNewPrivs") == "0"
    host = docker_client.api.inspect_container(started["strict"].id)["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]


async def test_seccomp_profiles(rt, clean_node, docker_client):
    pod = make_pod("default", "unconfined", "localhost")
    # The pod's Localhost profile, which "localhost" inherits and the others override.
    pod.spec.security_context.seccomp_profile.type = "Localhost"
    pod.spec.security_context.seccomp_profile.localhost_profile = "profiles/deny-mkdir.json"
    pod.spec.containers[0].security_context.seccomp_profile.type = "RuntimeDefault"
    pod.spec.containers[1].security_context.seccomp_profile.type = "Unconfined"
    started = await start(rt, pod, clean_node)

    assert await status_field(rt, started["default"], "Seccomp") == "2"  # a filter: Docker's profile
    assert await status_field(rt, started["unconfined"], "Seccomp") == "0"
    assert await status_field(rt, started["localhost"], "Seccomp") == "2"
    code, output = await run(rt, started["localhost"], "mkdir", "/tmp/denied")
    assert code != 0 and "Operation not permitted" in output
    assert await run(rt, started["default"], "mkdir", "/tmp/allowed") == (0, "")
    options = docker_client.api.inspect_container(started["localhost"].id)["HostConfig"]["SecurityOpt"]
    assert [json.loads(o.removeprefix("seccomp=")) for o in options] == [DENY_MKDIR]


async def test_a_missing_seccomp_profile_creates_nothing(rt, clean_node, docker_client, seccomp_dir):
    pod = make_pod()
    pod.spec.containers[0].security_context.seccomp_profile.type = "Localhost"
    pod.spec.containers[0].security_context.seccomp_profile.localhost_profile = "profiles/nope.json"
    infra = await rt.start_infra(pod, clean_node, PAUSE)
    with pytest.raises(CreateContainerConfigError) as err:
        await rt.start_container(pod, pod.spec.containers[0], clean_node, infra, 0, [])
    assert err.value.message == (
        f'cannot load seccomp profile "{seccomp_dir}/profiles/nope.json": No such file or directory'
    )
    observed = await rt.get_pod(clean_node, pod.metadata.uid)
    assert [c.name for c in observed.containers] == [INFRA_CONTAINER_NAME]


async def test_localhost_seccomp_needs_the_nodes_profile_directory(runtime, clean_node):
    pod = make_pod()
    pod.spec.security_context.seccomp_profile.type = "Localhost"
    pod.spec.security_context.seccomp_profile.localhost_profile = "profiles/deny-mkdir.json"
    infra = await runtime.start_infra(pod, clean_node, PAUSE)
    with pytest.raises(CreateContainerConfigError, match="Localhost profiles are not available on this node"):
        await runtime.start_container(pod, pod.spec.containers[0], clean_node, infra, 0, [])


async def test_sysctls_are_set_in_the_pods_namespaces(rt, clean_node, docker_client):
    pod = make_pod()
    sysctls = pod.spec.security_context.sysctls
    sysctls.add(name="net.ipv4.ip_local_port_range", value="1024 65000")  # safe, network namespace
    sysctls.add(name="kernel/msgmax", value="12345")  # unsafe (the agent's admission decides), IPC
    started = await start(rt, pod, clean_node)
    code, output = await run(rt, started["main"], "cat", "/proc/sys/net/ipv4/ip_local_port_range",
                             "/proc/sys/kernel/msgmax")
    assert (code, output.split()) == (0, ["1024", "65000", "12345"])
    infra = docker_client.api.inspect_container(started[INFRA_CONTAINER_NAME].id)["HostConfig"]
    assert infra["Sysctls"] == {"net.ipv4.ip_local_port_range": "1024 65000", "kernel.msgmax": "12345"}


def _status(pod: objects_pb2.Pod, observed, failures) -> objects_pb2.PodStatus:
    by_name = {f.container_name: f for f in failures}
    return compute_pod_status(pod, observed, Observations(failures=by_name), "127.0.0.1", datetime.now(UTC))


async def test_run_as_non_root_refuses_a_root_image(rt, clean_node, tmp_path):
    pod = make_pod("root", "user")
    pod.spec.security_context.run_as_non_root = True
    pod.spec.containers[1].security_context.run_as_user = 1000
    executor = PodExecutor(rt, PodVolumes(tmp_path / "pods"), clean_node, PAUSE)
    observed = await rt.get_pod(clean_node, pod.metadata.uid)
    failures = await executor.execute(pod, sync.compute_pod_actions(pod, observed), observed)
    uid = pod.metadata.uid
    assert [(f.container_name, f.reason, f.message) for f in failures] == [(
        "root", "CreateContainerConfigError",
        f'container has runAsNonRoot and image will run as root (pod: "sec_default({uid})", container: root)',
    )]
    observed = await rt.get_pod(clean_node, uid)
    assert observed.latest("root") is None  # nothing was created for it
    assert await run(rt, observed.latest("user"), "id", "-u") == (0, "1000\n")
    waiting = _status(pod, observed, failures).container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == ("CreateContainerConfigError", failures[0].message)


def _lowest_oom_score_adj() -> int:
    """What this machine lets a root process set: lowering one's OOM score adjustment takes
    CAP_SYS_RESOURCE (some sandboxes drop it; then Docker cannot go below the agent's own)."""
    status = Path("/proc/self/status").read_text()
    cap_eff = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    return -1000 if cap_eff >> CAP_SYS_RESOURCE & 1 else int(Path("/proc/self/oom_score_adj").read_text())


@pytest.mark.parametrize(
    "requests, limits, expected",
    [
        ({}, {}, 1000),  # BestEffort
        ({"cpu": "100m", "memory": "64Mi"}, {"cpu": "100m", "memory": "64Mi"}, -997),  # Guaranteed
        ({"memory": "64Mi"}, {}, None),  # Burstable: from the machine's memory
    ],
)
async def test_oom_score_adj_per_qos_class(rt, clean_node, docker_client, requests, limits, expected):
    pod = make_pod()
    pod.spec.containers[0].resources.requests.update(requests)
    pod.spec.containers[0].resources.limits.update(limits)
    if expected is None:
        expected = 1000 - 1000 * 64 * 2**20 // psutil.virtual_memory().total
    lowest = _lowest_oom_score_adj()
    started = await start(rt, pod, clean_node)
    for name, adjust in (("main", expected), (INFRA_CONTAINER_NAME, -998)):
        adjust = max(adjust, lowest)
        assert docker_client.api.inspect_container(started[name].id)["HostConfig"]["OomScoreAdj"] == adjust
    assert await run(rt, started["main"], "cat", "/proc/1/oom_score_adj") == (0, f"{max(expected, lowest)}\n")


async def test_apparmor_profiles(rt, clean_node, docker_client):
    pod = make_pod("unconfined", "default")
    pod.spec.containers[0].security_context.app_armor_profile.type = "Unconfined"
    pod.metadata.annotations["container.apparmor.security.beta.kubernetes.io/default"] = "runtime/default"
    infra = await rt.start_infra(pod, clean_node, PAUSE)
    unconfined = await rt.start_container(pod, pod.spec.containers[0], clean_node, infra, 0, [])
    if not host_apparmor_enabled():
        # Nothing to confine with: Unconfined runs, a profile cannot be enforced.
        assert await run(rt, unconfined, "true") == (0, "")
        with pytest.raises(CreateContainerConfigError) as err:
            await rt.start_container(pod, pod.spec.containers[1], clean_node, infra, 0, [])
        assert err.value.message == "Cannot enforce AppArmor: AppArmor is not enabled on the host"
        return
    default = await rt.start_container(pod, pod.spec.containers[1], clean_node, infra, 0, [])
    assert await run(rt, unconfined, "cat", "/proc/1/attr/current") == (0, "unconfined\n")
    assert await run(rt, default, "cat", "/proc/1/attr/current") == (0, "docker-default (enforce)\n")
    host = docker_client.api.inspect_container(unconfined.id)["HostConfig"]
    assert host["SecurityOpt"] == ["apparmor=unconfined"]
