"""Security contexts end to end (a real pymaster and pykubelet, the real Docker Engine): the
master refuses an invalid securityContext at apply naming the field; a pod of the Kubernetes
documentation's security-context demo runs with its users, groups and no_new_privs; runAsNonRoot
on a root image waits with CreateContainerConfigError; the node admits safe sysctls and the
unsafe ones its ``--allowed-unsafe-sysctls`` names, and refuses the others; a pod asking for
AppArmor on a host without it is refused; a Guaranteed pod's container gets the kubelet's OOM
score adjustment.

One single-node cluster serves the module (started with ``--allowed-unsafe-sysctls kernel.msg*``);
every test makes its own pods and waits for the evidence of what it claims.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pykubelet.admission import host_apparmor_enabled
from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    node_containers,
    pyctl,
    running_cluster,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e

CAP_SYS_RESOURCE = 24


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("security"), prefixes=("node-s",),
        agent_extra=["--allowed-unsafe-sysctls", "kernel.msg*"],
    ) as c:
        yield c


def _manifest(name: str, spec: str) -> str:
    spec = textwrap.dedent(spec).replace("BUSYBOX", BUSYBOX)
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n"
        + textwrap.indent(spec, "  ")
    )


def _pod(name: str, spec: str) -> objects_pb2.Pod:
    return load_pods(_manifest(name, spec))[0]


async def _wait(client: Client, name: str, check, what: str, timeout: float = 60) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if check(pod) else None

    return await wait_for(reached, timeout, f"pod {name}: {what}")


async def _logs(client: Client, name: str, until: str) -> str | None:
    text = b"".join([chunk async for chunk in client.pod_logs(name)]).decode()
    return text if until in text else None


def test_an_invalid_security_context_is_refused_at_apply(cluster: Cluster) -> None:
    manifest = _manifest(unique("invalid"), """\
        containers:
          - name: app
            image: BUSYBOX
            securityContext: {allowPrivilegeEscalation: false, capabilities: {add: [SYS_ADMIN]}}
        """)
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0
    assert "spec.containers[0].securityContext: cannot set `allowPrivilegeEscalation` to false and " \
        "`capabilities.Add` CAP_SYS_ADMIN" in result.stderr


async def test_security_context_demo(cluster: Cluster) -> None:
    # The Kubernetes documentation's security-context-demo, reading what it proves.
    name = unique("demo")
    pod = _pod(name, """\
        securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000]}
        containers:
          - name: sec-ctx-demo
            image: BUSYBOX
            command: ["sh", "-c", "id; grep -E '^(NoNewPrivs|Seccomp):' /proc/1/status;
                      touch /x 2>/dev/null || echo ro; echo done; sleep 3600"]
            securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        logs = await wait_for(lambda: _logs(client, name, "done"), 60, "the demo's output")
        lines = [" ".join(line.split()) for line in logs.splitlines()]
        assert lines[:4] == ["uid=1000 gid=3000 groups=2000,3000,4000", "NoNewPrivs: 1", "Seccomp: 2", "ro"]
        await delete_pods(client, name)


async def test_run_as_non_root_with_a_root_image_waits(cluster: Cluster) -> None:
    name = unique("nonroot")
    pod = _pod(name, """\
        securityContext: {runAsNonRoot: true}
        containers:
          - {name: app, image: BUSYBOX, command: ["sleep", "3600"]}
        """)
    async with cluster.client() as client:
        created = await client.create_pod(pod)

        def refused(p: objects_pb2.Pod) -> bool:
            statuses = p.status.container_statuses
            return bool(statuses) and statuses[0].state.waiting.reason == "CreateContainerConfigError"

        refused_pod = await _wait(client, name, refused, "CreateContainerConfigError")
        waiting = refused_pod.status.container_statuses[0]
        assert waiting.state.waiting.message == (
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{name}_default({created.metadata.uid})", container: app)'
        )
        containers = node_containers(cluster.a.node_name, created.metadata.uid)
        assert [c.labels["pykube.container.name"] for c in containers] == ["POD"]  # no app container
        await delete_pods(client, name)


async def test_unsafe_sysctls_need_the_nodes_flag(cluster: Cluster) -> None:
    allowed, forbidden = unique("sysctl-ok"), unique("sysctl-no")
    async with cluster.client() as client:
        await client.create_pod(_pod(allowed, """\
            securityContext:
              sysctls:
                - {name: net.ipv4.ip_local_port_range, value: "1024 65000"}  # safe
                - {name: kernel.msgmax, value: "12345"}  # unsafe, allowed by the node's kernel.msg*
            containers:
              - name: app
                image: BUSYBOX
                command: ["sh", "-c", "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/msgmax;
                          sleep 3600"]
            """))
        await client.create_pod(_pod(forbidden, """\
            securityContext:
              sysctls: [{name: kernel.sem, value: "250 32000 32 128"}]
            containers:
              - {name: app, image: BUSYBOX, command: ["sleep", "3600"]}
            """))
        logs = await wait_for(lambda: _logs(client, allowed, "12345"), 60, "the sysctls' values")
        assert logs.split() == ["1024", "65000", "12345"]
        refused = await _wait(client, forbidden, lambda p: p.status.phase == "Failed", "Failed")
        assert refused.status.reason == "SysctlForbidden"
        assert refused.status.message == (
            'Pod was rejected: spec.securityContext.sysctls[0].name: forbidden sysctl: "kernel.sem" not '
            "allowlisted (pykubelet --allowed-unsafe-sysctls)"
        )
        assert node_containers(cluster.a.node_name, refused.metadata.uid) == []
        for name in (allowed, forbidden):
            await delete_pods(client, name)


@pytest.mark.skipif(host_apparmor_enabled(), reason="the host enforces AppArmor: nothing to refuse")
async def test_apparmor_is_refused_on_a_host_without_it(cluster: Cluster) -> None:
    name = unique("apparmor")
    async with cluster.client() as client:
        created = await client.create_pod(_pod(name, """\
            containers:
              - name: app
                image: BUSYBOX
                command: ["sleep", "3600"]
                securityContext: {appArmorProfile: {type: RuntimeDefault}}
            """))
        refused = await _wait(client, name, lambda p: p.status.phase == "Failed", "Failed")
        assert refused.status.reason == "AppArmor"
        assert refused.status.message == (
            "Pod was rejected: spec.containers[0].securityContext.appArmorProfile: Cannot enforce AppArmor: "
            "AppArmor is not enabled on the host"
        )
        assert node_containers(cluster.a.node_name, created.metadata.uid) == []
        await delete_pods(client, name)


def _lowest_oom_score_adj() -> int:
    """What this machine lets a root process set (lowering one's own takes CAP_SYS_RESOURCE)."""
    status = Path("/proc/self/status").read_text()
    cap_eff = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    return -1000 if cap_eff >> CAP_SYS_RESOURCE & 1 else int(Path("/proc/self/oom_score_adj").read_text())


async def test_a_guaranteed_pod_is_the_last_to_be_oom_killed(cluster: Cluster) -> None:
    name = unique("guaranteed")
    async with cluster.client() as client:
        created = await client.create_pod(_pod(name, """\
            containers:
              - name: app
                image: BUSYBOX
                command: ["sh", "-c", "echo adj=$(cat /proc/1/oom_score_adj); sleep 3600"]
                resources: {limits: {cpu: 100m, memory: 32Mi}}
            """))
        logs = await wait_for(lambda: _logs(client, name, "adj="), 60, "the container's OOM score adjustment")
        expected = max(-997, _lowest_oom_score_adj())
        assert logs.split() == [f"adj={expected}"]
        adjustments = {
            c.labels["pykube.container.name"]: c.attrs["HostConfig"]["OomScoreAdj"]
            for c in node_containers(cluster.a.node_name, created.metadata.uid)
        }
        assert adjustments == {"app": expected, "POD": max(-998, _lowest_oom_score_adj())}
        await delete_pods(client, name)
