"""Placement rules users write, end to end (a real pymaster, three real pykubelets sharing this
host's Docker Engine, the default scheduler profile):

- a required pod anti-affinity by hostname keeps the replicas of a label apart: three land on
  three nodes, the fourth stays Pending with the anti-affinity reason in FailedScheduling;
- a required node affinity on a label (and Gt on a label no node has: Pending, with the reason);
- a NoSchedule taint (set by an admin's update of spec.taints) keeps a pod without a toleration
  away from the node and lets one with a matching toleration in;
- a topology spread constraint over hostname puts a replica on the node without one, although
  that node has the least room left.

One cluster serves the module: node-a is labelled disk=ssd, cores=8; node-b and node-c have no
extra label. Every test makes its own pods and removes them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from pymaster.api import errors, objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, running_cluster, unique, wait_for, wait_pod_gone

pytestmark = pytest.mark.e2e

HOSTNAME = "kubernetes.io/hostname"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("placement"),
        prefixes=("node-a", "node-b", "node-c"),
        agent_extra_by_prefix={"node-a": ["--node-labels", "disk=ssd,cores=8"]},
    ) as c:
        yield c


def _pod(name: str, spec: str = "", labels: str = "{}", cpu: str = "10m", node: str = "") -> objects_pb2.Pod:
    """A sleeping busybox pod; ``spec``: more spec fields, as YAML indented by 2."""
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, labels: {labels}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sleep, "3600"]
            resources: {{requests: {{cpu: {cpu}, memory: 8Mi}}}}
        """) + textwrap.indent(textwrap.dedent(spec), "  ")
    pod = load_pods(manifest)[0]
    pod.spec.node_name = node
    return pod


async def _node_of(client: Client, name: str) -> str:
    async def bound() -> str:
        return (await client.get_pod(name)).spec.node_name

    return await wait_for(bound, 30, f"pod {name} bound")


async def _failed_scheduling(client: Client, name: str) -> str:
    async def recorded() -> str | None:
        events = await client.list("events", field_selector=f"involvedObject.name={name}")
        return next((e.message for e in events.items if e.reason == "FailedScheduling"), None)

    return await wait_for(recorded, 30, f"FailedScheduling about {name}")


async def _remove(client: Client, *names: str) -> None:
    for name in names:
        try:
            await client.delete_pod(name, grace_period_seconds=0, force=True)
        except errors.NotFound:
            pass
    for name in names:
        await wait_pod_gone(client, name)


async def test_required_anti_affinity_keeps_replicas_apart(cluster: Cluster) -> None:
    app = unique("apart")
    spec = f"""\
        affinity:
          podAntiAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: {HOSTNAME}
              labelSelector: {{matchLabels: {{app: {app}}}}}
        """
    names = [f"{app}-{i}" for i in range(4)]
    async with cluster.client() as client:
        try:
            placed = []
            for name in names[:3]:
                await client.create_pod(_pod(name, spec, labels=f"{{app: {app}}}"))
                placed.append(await _node_of(client, name))
            assert sorted(placed) == sorted(cluster.node_names)
            await client.create_pod(_pod(names[3], spec, labels=f"{{app: {app}}}"))
            message = await _failed_scheduling(client, names[3])
            assert message == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
            assert not (await client.get_pod(names[3])).spec.node_name
            # A pod the replicas' anti-affinity selects is kept away from them too (symmetry).
            intruder = f"{app}-x"
            await client.create_pod(_pod(intruder, labels=f"{{app: {app}}}"))
            message = await _failed_scheduling(client, intruder)
            assert "3 node(s) didn't satisfy existing pods anti-affinity rules" in message, message
            names.append(intruder)
        finally:
            await _remove(client, *names)


async def test_required_node_affinity_on_a_label(cluster: Cluster) -> None:
    ssd, not_ssd, none = unique("ssd"), unique("not-ssd"), unique("none")
    async with cluster.client() as client:
        try:
            await client.create_pod(_pod(ssd, """\
                affinity:
                  nodeAffinity:
                    requiredDuringSchedulingIgnoredDuringExecution:
                      nodeSelectorTerms:
                      - matchExpressions: [{key: disk, operator: In, values: [ssd]},
                                           {key: cores, operator: Gt, values: ["4"]}]
                """))
            await client.create_pod(_pod(not_ssd, """\
                affinity:
                  nodeAffinity:
                    requiredDuringSchedulingIgnoredDuringExecution:
                      nodeSelectorTerms:
                      - matchExpressions: [{key: disk, operator: DoesNotExist}]
                """))
            await client.create_pod(_pod(none, """\
                affinity:
                  nodeAffinity:
                    requiredDuringSchedulingIgnoredDuringExecution:
                      nodeSelectorTerms:
                      - matchExpressions: [{key: cores, operator: Gt, values: ["64"]}]
                """))
            assert await _node_of(client, ssd) == cluster.a.node_name
            assert await _node_of(client, not_ssd) in cluster.node_names[1:]
            message = await _failed_scheduling(client, none)
            assert message == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        finally:
            await _remove(client, ssd, not_ssd, none)


async def _set_taints(client: Client, node_name: str, *taints: objects_pb2.Taint) -> None:
    node = await client.get_node(node_name)
    del node.spec.taints[:]
    node.spec.taints.extend(taints)
    await client.update_node(node)


async def test_no_schedule_taint_keeps_pods_without_toleration_away(cluster: Cluster) -> None:
    target = cluster.a.node_name
    plain, tolerant = unique("plain"), unique("tolerant")
    pin = f"nodeSelector: {{{HOSTNAME}: {target}}}\n"
    async with cluster.client() as client:
        try:
            taint = objects_pb2.Taint(key="dedicated", value="db", effect="NoSchedule")
            await _set_taints(client, target, taint)
            await client.create_pod(_pod(plain, pin))
            message = await _failed_scheduling(client, plain)
            assert "1 node(s) had untolerated taint {dedicated: db}" in message, message
            toleration = "tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]\n"
            await client.create_pod(_pod(tolerant, pin + toleration))
            assert await _node_of(client, tolerant) == target
            assert not (await client.get_pod(plain)).spec.node_name
        finally:
            await _set_taints(client, target)
            await _remove(client, plain, tolerant)


async def test_topology_spread_over_hostname(cluster: Cluster) -> None:
    app = unique("spread")
    a, b, c = cluster.node_names
    # One replica on node-a and node-b each; node-c has none but the least free cpu.
    filler, first, second = unique("filler"), f"{app}-a", f"{app}-b"
    spread = f"{app}-c"
    async with cluster.client() as client:
        try:
            await client.create_pod(_pod(filler, cpu="500m", node=c))
            await client.create_pod(_pod(first, labels=f"{{app: {app}}}", node=a))
            await client.create_pod(_pod(second, labels=f"{{app: {app}}}", node=b))
            await client.create_pod(_pod(spread, f"""\
                topologySpreadConstraints:
                - maxSkew: 1
                  topologyKey: {HOSTNAME}
                  whenUnsatisfiable: DoNotSchedule
                  labelSelector: {{matchLabels: {{app: {app}}}}}
                """, labels=f"{{app: {app}}}"))
            assert await _node_of(client, spread) == c
        finally:
            await _remove(client, filler, first, second, spread)
