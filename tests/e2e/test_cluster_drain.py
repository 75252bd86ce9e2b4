"""``pyctl drain`` end to end, in one cluster of a real pymaster and two real pykubelets sharing
this host's Docker Engine:

- a bare pod (no controller) makes drain refuse with kubectl's message; the node is cordoned all
  the same and the pod keeps running;
- with ``--force`` drain evicts it, reports each step like kubectl and the pod is gone;
- ``--timeout`` bounds the wait for a pod that takes its time to stop.

The tests run in file order; each uncordons its node and leaves no pods.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, pyctl, running_cluster, unique, wait_for, wait_pod_gone

pytestmark = pytest.mark.e2e

UNMANAGED = "cannot delete Pods that declare no controller (use --force to override)"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("drain")) as running:
        yield running


def _pod(name: str, node: str, grace: int = 1, script: str = "sleep 3600") -> objects_pb2.Pod:
    return load_pods(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          nodeName: {node}
          terminationGracePeriodSeconds: {grace}
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sh, -c, {script!r}]
        """))[0]


async def _running(client: Client, name: str) -> None:
    async def running() -> bool:
        return (await client.get_pod(name)).status.phase == "Running"

    await wait_for(running, 60, f"pod {name} Running")


async def _uncordon(cluster: Cluster, node: str) -> None:
    done = pyctl(cluster.master, "uncordon", node)
    assert done.returncode == 0, done.stderr


async def test_drain_refuses_a_pod_without_controller(cluster: Cluster) -> None:
    node, name = cluster.a.node_name, unique("bare")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, node))
        await _running(client, name)
        try:
            done = pyctl(cluster.master, "drain", node)
            assert done.returncode == 1
            assert done.stdout == f"node/{node} cordoned\n"
            assert done.stderr.splitlines() == [
                f'error: unable to drain node "{node}" due to error: {UNMANAGED}: default/{name}, '
                "continuing command...",
                "There are pending nodes to be drained:",
                f" {node}",
                f"error: {UNMANAGED}: default/{name}",
            ]
            assert (await client.get_node(node)).spec.unschedulable
            pod = await client.get_pod(name)
            assert pod.status.phase == "Running" and not pod.metadata.HasField("deletion_timestamp")
        finally:
            await client.delete_pod(name, grace_period_seconds=0, force=True)
            await wait_pod_gone(client, name)
            await _uncordon(cluster, node)


async def test_drain_with_force_evicts_and_reports(cluster: Cluster) -> None:
    node, name = cluster.a.node_name, unique("bare")
    async with cluster.client() as client:
        await client.create_pod(_pod(name, node))
        await _running(client, name)
        try:
            done = pyctl(cluster.master, "drain", f"node/{node}", "--force", "--grace-period", "1")
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines() == [
                f"node/{node} cordoned",
                f"evicting pod default/{name}",
                f"pod/{name} evicted",
                f"node/{node} drained",
            ]
            assert done.stderr == f"Warning: deleting Pods that declare no controller: default/{name}\n"
            assert name not in {p.metadata.name for p in (await client.list_pods()).items}
            assert (await client.get_node(node)).spec.unschedulable
        finally:
            await _uncordon(cluster, node)


async def test_drain_timeout(cluster: Cluster) -> None:
    node, name = cluster.b.node_name, unique("slow")
    async with cluster.client() as client:
        # sh ignores SIGTERM: the pod takes its whole grace period (30 s) to stop.
        script = "trap '' TERM; while true; do sleep 1; done"
        await client.create_pod(_pod(name, node, grace=30, script=script))
        await _running(client, name)
        try:
            done = pyctl(cluster.master, "drain", node, "--force", "--timeout", "2s")
            assert done.returncode == 1
            assert f"evicting pod default/{name}" in done.stdout.splitlines()
            assert done.stderr.splitlines()[-1] == "error: drain did not complete within 2s"
            assert (await client.get_pod(name)).metadata.HasField("deletion_timestamp")
        finally:
            await client.delete_pod(name, grace_period_seconds=0, force=True)
            await wait_pod_gone(client, name)
            await _uncordon(cluster, node)
