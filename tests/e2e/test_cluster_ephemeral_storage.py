"""ephemeral-storage end to end (a real pymaster and pykubelet, the real Docker Engine): the node
advertises the size of its root dir's file system, the scheduler and the node's own admission
count requests against it (``Insufficient ephemeral-storage``, ``OutOfephemeral-storage``), and
the agent evicts a pod whose containers write more than their limits allow, to their writable
layer or to their logs, with the kubelet's messages, while a pod within its limit keeps running.

One single-node cluster serves the module. Its agent's root dir is on /dev/shm when that is another
file system than the one of the test's temp dir, so the capacity test tells the two apart. Every
test makes its own pods and waits for the evidence of what it claims (a status, an event, the
agent's measurements counted by its metrics), never for a state that held before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator

import pytest

from pykubelet.runtime.docker import DockerRuntime
from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.api.quantity import memory_bytes
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    running_cluster,
    runtime_operations,
    unique,
    wait_event,
    wait_for,
)

pytestmark = pytest.mark.e2e

MEASURED = "list_container_stats"  # the agent's runtime operation that measures a pod's containers


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("storage-root")
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.stat(shm).st_dev != os.stat(base).st_dev:
        path = tempfile.mkdtemp(prefix="pykube-storage-", dir=shm)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield str(base)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, root_dir: str) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("storage"), prefixes=("node-s",), agent_extra=["--root-dir", root_dir]
    ) as c:
        yield c


def _pod(name: str, containers: str, node_name: str = "") -> objects_pb2.Pod:
    """A pod named ``name`` with the ``containers`` YAML list (BUSYBOX: the test image)."""
    containers = textwrap.dedent(containers).replace("BUSYBOX", BUSYBOX)
    spec = "terminationGracePeriodSeconds: 1\n" + (f"nodeName: {node_name}\n" if node_name else "")
    spec += "containers:\n" + textwrap.indent(containers, "  ")
    manifest = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n" + textwrap.indent(spec, "  ")
    return load_pods(manifest)[0]


async def _wait(client: Client, name: str, check, what: str, timeout: float = 60) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if check(pod) else None

    return await wait_for(reached, timeout, f"pod {name}: {what}")


async def _evicted(client: Client, name: str, message: str) -> None:
    """Waits for pod ``name`` to fail as evicted with ``message``, with the Warning event, and for
    its containers to be stopped and stay so."""
    failed = await _wait(client, name, lambda p: p.status.phase == "Failed", "evicted")
    assert (failed.status.reason, failed.status.message) == ("Evicted", message)
    event = await wait_event(client, name, "Evicted")
    assert (event.type, event.message) == ("Warning", message)
    stopped = await _wait(
        client, name,
        lambda p: p.status.container_statuses and all(s.state.HasField("terminated") for s in
                                                      p.status.container_statuses),
        "every container stopped",
    )
    assert stopped.status.phase == "Failed" and stopped.status.reason == "Evicted"


async def test_the_node_advertises_its_root_dirs_file_system(cluster: Cluster, root_dir: str) -> None:
    st = os.statvfs(root_dir)
    async with cluster.client() as client:
        node = await client.get_node(cluster.a.node_name)
    for resources in (node.status.capacity, node.status.allocatable):
        assert memory_bytes(resources["ephemeral-storage"]) == st.f_blocks * st.f_frsize


async def test_writing_past_the_limit_to_the_root_file_system_evicts_the_pod(cluster: Cluster) -> None:
    name = unique("fill-rootfs")
    pod = _pod(name, """\
        - name: app
          image: BUSYBOX
          command: ["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1024 count=3072; sleep 3600"]
          resources: {limits: {ephemeral-storage: 1Mi}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        # One container: the pod's limit is its own, and Kubernetes checks the pod first.
        message = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
        await _evicted(client, name, message)
        await delete_pods(client, name)


async def test_logging_past_the_limit_evicts_the_pod(cluster: Cluster) -> None:
    name = unique("fill-logs")
    pod = _pod(name, """\
        - name: app
          image: BUSYBOX
          command: ["sh", "-c", "head -c 3145728 /dev/zero | tr '\\\\0' a; sleep 3600"]
          resources: {limits: {ephemeral-storage: 1Mi}}
        - name: roomy
          image: BUSYBOX
          command: ["sleep", "3600"]
          resources: {limits: {ephemeral-storage: 100Mi}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        # The pod as a whole (3 MiB of 101 MiB) is within its limit; the container is not.
        await _evicted(client, name, 'Container app exceeded its local ephemeral storage limit "1Mi". ')
        await delete_pods(client, name)


async def test_a_pod_within_its_limit_keeps_running(cluster: Cluster) -> None:
    name = unique("within")
    pod = _pod(name, """\
        - name: app
          image: BUSYBOX
          command: ["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1024 count=1024; head -c 102400 /dev/zero |
            tr '\\\\0' a; echo; echo written; sleep 3600"]
          resources: {limits: {ephemeral-storage: 10Mi}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await _wait(client, name, lambda p: p.status.phase == "Running", "Running")

        async def written() -> bool:
            chunks = [chunk async for chunk in client.pod_logs(name, tail_lines=1)]
            return b"".join(chunks) == b"written\n"

        await wait_for(written, 30, f"{name} to have written its files")
        # What the agent reads: the writable layer holds the file, the log what was printed.
        runtime = DockerRuntime()
        try:
            uid = (await client.get_pod(name)).metadata.uid
            usage = {u.name: u for u in await runtime.container_disk_usage(cluster.a.node_name, uid)}
        finally:
            await runtime.close()
        assert set(usage) == {"POD", "app"}
        assert 1024**2 <= usage["app"].rootfs_bytes < 2 * 1024**2
        assert 100 * 1024 <= usage["app"].logs_bytes < 1024**2
        # The agent measures the pod at least twice more after the writes, and lets it be.
        port = cluster.a.metrics_port
        before = runtime_operations(port, MEASURED)
        await wait_for(lambda: runtime_operations(port, MEASURED) >= before + 2, 60, "two more measurements")
        running = await client.get_pod(name)
        assert (running.status.phase, running.status.reason) == ("Running", "")
        events = await client.list("events", field_selector=f"involvedObject.name={name}")
        assert "Evicted" not in {e.reason for e in events.items}
        await delete_pods(client, name)


async def test_a_pod_asking_more_than_any_node_has_stays_pending(cluster: Cluster) -> None:
    name = unique("too-big")
    pod = _pod(name, """\
        - name: app
          image: BUSYBOX
          command: ["sleep", "3600"]
          resources: {requests: {ephemeral-storage: 1000Pi}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        event = await wait_event(client, name, "FailedScheduling")
        assert (event.type, event.message) == (
            "Warning", "0/1 nodes are available: 1 Insufficient ephemeral-storage."
        )
        pending = await client.get_pod(name)
        assert not pending.spec.node_name and pending.status.phase == "Pending"
        scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
        await delete_pods(client, name)


async def test_the_node_refuses_a_pod_bound_past_its_ephemeral_storage(cluster: Cluster) -> None:
    name = unique("bound-too-big")
    pod = _pod(name, """\
        - name: app
          image: BUSYBOX
          command: ["sleep", "3600"]
          resources: {requests: {ephemeral-storage: 1000Pi}}
        """, node_name=cluster.a.node_name)
    async with cluster.client() as client:
        await client.create_pod(pod)  # bound by its author: the scheduler never sees it
        failed = await _wait(client, name, lambda p: p.status.phase == "Failed", "rejected by the node")
        assert failed.status.reason == "OutOfephemeral-storage"
        assert failed.status.message.startswith(
            "Pod was rejected: Node didn't have enough resource: ephemeral-storage, "
            f"requested: {1000 * 1024**5}, used: 0, capacity: "
        )
        assert not failed.status.container_statuses or all(
            not s.state.HasField("running") for s in failed.status.container_statuses
        )
        await delete_pods(client, name)
