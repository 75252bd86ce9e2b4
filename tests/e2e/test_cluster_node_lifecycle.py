"""Node lifecycle end to end, in one cluster of a real pymaster and two real pykubelets sharing
this host's Docker Engine, with short intervals (grace period 3 s, leases every second, default
tolerations of 6 s):

- a NoExecute taint put with ``pyctl taint`` evicts the pod that does not tolerate it (the node's
  agent stops it) while a tolerating pod keeps running; ``pyctl taint ... -`` takes it off;
- an agent killed with SIGKILL: its node turns Ready=Unknown and gets the unreachable taints, its
  pod is marked for deletion once its default toleration (6 s from the taint) has passed and not
  before, and the agent, started again, stops it; the node is Ready and untainted again.

The tests run in file order and each leaves the cluster without pods.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    node_containers,
    node_ready,
    pyctl,
    running_cluster,
    unique,
    wait_for,
    wait_pod_gone,
)

pytestmark = pytest.mark.e2e

GRACE = 3
TOLERATION = 6
UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("lifecycle"),
        master_extra=["--node-monitor-grace-period", str(GRACE),
                      "--default-unreachable-toleration-seconds", str(TOLERATION),
                      "--default-not-ready-toleration-seconds", str(TOLERATION)],
    ) as running:
        yield running


def _pod(name: str, node: str, tolerations: str = "") -> objects_pb2.Pod:
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          nodeName: {node}
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sleep, "3600"]
        """) + tolerations
    return load_pods(manifest)[0]


async def _running(client: Client, name: str) -> objects_pb2.Pod:
    return await wait_for(lambda: _phase_is(client, name, "Running"), 60, f"pod {name} Running")


async def _phase_is(client: Client, name: str, phase: str) -> objects_pb2.Pod | None:
    pod = await client.get_pod(name)
    return pod if pod.status.phase == phase else None


def _taints(node: objects_pb2.Node) -> set[str]:
    return {f"{t.key}:{t.effect}" for t in node.spec.taints}


async def test_noexecute_taint_evicts_pods_that_do_not_tolerate_it(cluster: Cluster) -> None:
    node, key = cluster.a.node_name, f"e2e.pykube.io/{unique('evict')}"
    plain, tolerant = unique("plain"), unique("tolerant")
    tolerations = f"  tolerations:\n  - {{key: {key}, operator: Exists, effect: NoExecute}}\n"
    async with cluster.client() as client:
        await client.create_pod(_pod(plain, node))
        await client.create_pod(_pod(tolerant, node, tolerations))
        await _running(client, plain)
        kept = await _running(client, tolerant)

        done = pyctl(cluster.master, "taint", "node", node, f"{key}=yes:NoExecute")
        assert (done.returncode, done.stdout) == (0, f"node/{node} tainted\n"), done.stderr
        again = pyctl(cluster.master, "taint", "node", node, f"{key}=no:NoExecute")
        assert again.returncode == 1
        assert again.stderr == (f"error: node {node} already has {key} taint(s) with same effect(s) and "
                                "--overwrite is false\n")

        await wait_pod_gone(client, plain, 30)
        assert node_containers(node, kept.metadata.uid), "the tolerating pod's container was stopped"
        pod = await client.get_pod(tolerant)
        assert pod.status.phase == "Running" and not pod.metadata.HasField("deletion_timestamp")

        async def evicted_event() -> bool:
            listed = await client.list("events", "default", field_selector=f"involvedObject.name={plain}")
            message = f"Marking for deletion Pod default/{plain}"
            return any(e.reason == "TaintManagerEviction" and e.message == message for e in listed.items)

        await wait_for(evicted_event, 10, "the TaintManagerEviction event")

        done = pyctl(cluster.master, "taint", "node", node, f"{key}-")
        assert (done.returncode, done.stdout) == (0, f"node/{node} untainted\n"), done.stderr
        assert key not in {t.key for t in (await client.get_node(node)).spec.taints}
        await client.delete_pod(tolerant, grace_period_seconds=0, force=True)
        await wait_pod_gone(client, tolerant)


async def test_taint_by_selector_and_all_nodes(cluster: Cluster) -> None:
    labelled, other = cluster.a.node_name, cluster.b.node_name
    label, key = unique("pool"), f"e2e.pykube.io/{unique('sel')}"
    async with cluster.client() as client:
        assert pyctl(cluster.master, "label", "node", labelled, f"{label}=gpu").returncode == 0
        try:
            done = pyctl(cluster.master, "taint", "nodes", "-l", f"{label}=gpu", f"{key}=x:NoSchedule")
            assert (done.returncode, done.stdout) == (0, f"node/{labelled} tainted\n"), done.stderr
            assert f"{key}:NoSchedule" in _taints(await client.get_node(labelled))
            assert f"{key}:NoSchedule" not in _taints(await client.get_node(other))
            # --all: every node; the one without the taint fails alone, the others are done.
            done = pyctl(cluster.master, "taint", "nodes", "--all", f"{key}:NoSchedule-")
            assert done.returncode == 1
            assert f"node/{labelled} untainted\n" in done.stdout
            assert f'error: taint "{key}:NoSchedule" not found\n' in done.stderr
            assert key not in {t.key for t in (await client.get_node(labelled)).spec.taints}
            refused = pyctl(cluster.master, "taint", "nodes", labelled, "--all", f"{key}-")
            assert refused.returncode == 1
            assert refused.stderr == "error: names cannot be combined with -l or --all\n"
        finally:
            pyctl(cluster.master, "taint", "nodes", labelled, f"{key}-")  # in case a step failed
            pyctl(cluster.master, "label", "node", labelled, f"{label}-")


async def test_killed_agent_pods_are_evicted_after_their_toleration(cluster: Cluster) -> None:
    agent, name = cluster.b, unique("victim")
    node = agent.node_name
    async with cluster.client() as client:
        await client.create_pod(_pod(name, node))
        pod = await _running(client, name)
        (toleration,) = [t for t in pod.spec.tolerations if t.key == UNREACHABLE]
        assert toleration.toleration_seconds == TOLERATION  # the master's flag, at creation

        agent.kill9()

        async def unreachable() -> objects_pb2.Node | None:
            n = await client.get_node(node)
            wanted = {f"{UNREACHABLE}:NoExecute", f"{UNREACHABLE}:NoSchedule"}
            unknown = any(c.type == "Ready" and c.status == "Unknown" for c in n.status.conditions)
            return n if unknown and wanted <= _taints(n) else None

        tainted = await wait_for(unreachable, GRACE + 20, f"node {node} Unknown and tainted", interval=0.1)
        (taint,) = [t for t in tainted.spec.taints if (t.key, t.effect) == (UNREACHABLE, "NoExecute")]
        due = taint.time_added.seconds + TOLERATION
        # Not before its time: the pod is still there, unmarked, while its toleration lasts.
        assert time.time() < due - 1, "the taint was seen too late to check the wait"
        pod = await client.get_pod(name)
        assert not pod.metadata.HasField("deletion_timestamp")

        async def marked() -> objects_pb2.Pod | None:
            p = await client.get_pod(name)
            return p if p.metadata.HasField("deletion_timestamp") else None

        await wait_for(marked, TOLERATION + 20, f"pod {name} marked for deletion", interval=0.1)
        assert time.time() >= due - 1  # timeAdded has whole seconds
        assert node_containers(node, pod.metadata.uid), "nobody stops the pod while its agent is down"

        agent.start()  # the agent, back, stops the marked pod
        await wait_pod_gone(client, name, 60)
        await wait_for(lambda: node_containers(node, pod.metadata.uid) == [], 30, "pod's containers gone")

        async def healthy() -> bool:
            n = await client.get_node(node)
            return node_ready(n) and not {t for t in _taints(n) if t.startswith(UNREACHABLE)}

        await wait_for(healthy, 30, f"node {node} Ready and untainted")
