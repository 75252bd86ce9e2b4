"""The DaemonSet controller: placement as pure functions (kube's NodeShouldRunDaemonPod, the daemon
tolerations, the pod pinned to its node), and the controller against a real SQLite store and
registry (no scheduler, no agent: the test plays them by editing pods in the store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import set_condition
from pymaster.controllers.daemonset import DaemonSetController
from pymaster.controllers.daemonset_placement import (
    REVISION_HASH_LABEL,
    daemon_pod,
    daemon_spec,
    node_should_run,
    pod_ready,
    target_node,
    template_hash,
)
from pymaster.controllers.informer import InformerFactory
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 10.0


def node(name: str, labels: dict[str, str] | None = None, taints=()) -> objects_pb2.Node:
    n = objects_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.uid = f"uid-{name}"
    n.metadata.labels.update(labels or {})
    for key, effect in taints:
        n.spec.taints.add(key=key, effect=effect)
    return n


def daemon_set(name: str = "agent", image: str = "pykube/busybox:1.35", node_selector=None,
               max_unavailable: int = 1) -> objects_pb2.DaemonSet:
    ds = objects_pb2.DaemonSet(api_version="apps/v1", kind="DaemonSet")
    ds.metadata.name, ds.metadata.namespace, ds.metadata.uid = name, "default", f"uid-{name}"
    ds.spec.selector.match_labels["app"] = name
    ds.spec.template.metadata.labels["app"] = name
    ds.spec.template.spec.containers.add(name="c", image=image, command=["sleep", "3600"])
    ds.spec.template.spec.node_selector.update(node_selector or {})
    ds.spec.update_strategy.type = "RollingUpdate"
    ds.spec.update_strategy.rolling_update.max_unavailable.int_value = max_unavailable
    return ds


# ---- placement (pure) ----


@pytest.mark.parametrize("labels, taints, tolerate, expected", [
    ({"disk": "ssd"}, (), None, (True, True)),
    ({"disk": "hdd"}, (), None, (False, False)),
    ({"disk": "ssd"}, (("dedicated", "NoSchedule"),), None, (False, True)),
    ({"disk": "ssd"}, (("dedicated", "NoExecute"),), None, (False, False)),
    ({"disk": "ssd"}, (("dedicated", "NoExecute"),), "dedicated", (True, True)),
    ({"disk": "ssd"}, (("dedicated", "PreferNoSchedule"),), None, (True, True)),
    # The tolerations every daemon pod gets.
    ({"disk": "ssd"}, (("node.kubernetes.io/not-ready", "NoExecute"),), None, (True, True)),
    ({"disk": "ssd"}, (("node.kubernetes.io/unreachable", "NoExecute"),), None, (True, True)),
    ({"disk": "ssd"}, (("node.kubernetes.io/unschedulable", "NoSchedule"),), None, (True, True)),
    ({"disk": "ssd"}, (("node.kubernetes.io/disk-pressure", "NoSchedule"),), None, (True, True)),
    ({"disk": "ssd"}, (("node.kubernetes.io/network-unavailable", "NoSchedule"),), None, (False, True)),
])
def test_node_should_run(labels, taints, tolerate, expected):
    ds = daemon_set(node_selector={"disk": "ssd"})
    if tolerate:
        ds.spec.template.spec.tolerations.add(key=tolerate, operator="Exists")
    assert node_should_run(daemon_spec(ds), node("n1", labels, taints)) == expected


def test_required_node_affinity_is_honoured():
    ds = daemon_set()
    term = ds.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution \
        .node_selector_terms.add()
    term.match_expressions.add(key="zone", operator="In", values=["a"])
    assert node_should_run(daemon_spec(ds), node("n1", {"zone": "a"})) == (True, True)
    assert node_should_run(daemon_spec(ds), node("n2", {"zone": "b"})) == (False, False)


def test_daemon_pod_is_pinned_to_its_node_and_tolerates_node_conditions():
    ds = daemon_set()
    term = ds.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution \
        .node_selector_terms.add()
    term.match_expressions.add(key="zone", operator="In", values=["a"])
    pod = daemon_pod(ds, "n1", template_hash(ds))
    assert pod.metadata.name.startswith("agent-") and len(pod.metadata.name) == len("agent-") + 5
    assert pod.metadata.labels[REVISION_HASH_LABEL] == template_hash(ds)
    assert pod.metadata.owner_references[0].uid == ds.metadata.uid
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    terms = required.node_selector_terms
    assert len(terms) == 1 and not terms[0].match_expressions
    assert (terms[0].match_fields[0].key, list(terms[0].match_fields[0].values)) == ("metadata.name", ["n1"])
    assert target_node(pod) == "n1"
    keys = {(t.key, t.effect) for t in pod.spec.tolerations}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert all(not t.HasField("toleration_seconds") for t in pod.spec.tolerations)
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys


def test_template_hash_is_stable_and_follows_the_template():
    a, b = daemon_set(), daemon_set()
    assert template_hash(a) == template_hash(b)
    b.spec.template.spec.containers[0].image = "pykube/busybox:1.36"
    assert template_hash(a) != template_hash(b)


# ---- the controller ----


class Env:
    def __init__(self, store: SQLiteStore, registry: Registry, controller: DaemonSetController):
        self.store, self.registry, self.controller = store, registry, controller

    def pods(self, ds_name: str = "agent") -> list[objects_pb2.Pod]:
        return [p for p in self.controller.pods.list("default")
                if p.metadata.owner_references and p.metadata.owner_references[0].name == ds_name]

    def pods_by_node(self, ds_name: str = "agent") -> dict[str, list[objects_pb2.Pod]]:
        out: dict[str, list[objects_pb2.Pod]] = {}
        for pod in self.pods(ds_name):
            out.setdefault(target_node(pod), []).append(pod)
        return out

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                while not condition():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; pods: {self.pods_by_node()}") from None

    async def mutate_pod(self, pod: objects_pb2.Pod, fn) -> None:
        def change(current):
            fn(current)
            return current
        await self.store.mutate("pods", pod.metadata.namespace, pod.metadata.name, change)

    async def make_ready(self, pod: objects_pb2.Pod) -> None:
        def ready(current):
            current.spec.node_name = target_node(current)
            current.status.phase = "Running"
            set_condition(current.status.conditions, "Ready", "True", now=0)
        await self.mutate_pod(pod, ready)

    async def set_node(self, n: objects_pb2.Node) -> None:
        def change(current):
            current.metadata.labels.clear()
            current.metadata.labels.update(n.metadata.labels)
            del current.spec.taints[:]
            current.spec.taints.extend(n.spec.taints)
            return current
        await self.store.mutate("nodes", "", n.metadata.name, change)


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[Env]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    registry = Registry(store, NodeLeases(40.0))
    factory = InformerFactory(store)
    controller = DaemonSetController(registry, factory)
    await controller.start()
    yield Env(store, registry, controller)
    await controller.stop()
    await factory.stop()
    await store.close()


async def test_one_pod_per_node_including_a_node_that_joins(env: Env):
    for name in ("n1", "n2"):
        await env.store.create("nodes", node(name))
    ds = await env.registry.daemon_sets.create(daemon_set())
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1", "n2"], "a pod on n1 and n2")
    await env.store.create("nodes", node("n3"))
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1", "n2", "n3"], "a pod on n3 too")
    await asyncio.sleep(0.1)  # would a second sync create twice? (expectations)
    assert all(len(pods) == 1 for pods in env.pods_by_node().values())

    def status() -> objects_pb2.DaemonSetStatus:
        return env.registry.daemon_sets.get("default", "agent").status

    await env.wait(lambda: (status().desired_number_scheduled, status().current_number_scheduled) == (3, 3),
                   "status 3/3")
    assert status().observed_generation == ds.metadata.generation
    assert status().number_ready == 0 and status().number_unavailable == 3
    for pod in env.pods():
        await env.make_ready(pod)
    await env.wait(lambda: status().number_available == 3 and status().updated_number_scheduled == 3,
                   "3 available")


async def test_node_leaving_the_selector_loses_its_pod_and_failed_pods_are_replaced(env: Env):
    for name in ("n1", "n2"):
        await env.store.create("nodes", node(name, {"role": "edge"}))
    await env.registry.daemon_sets.create(daemon_set(node_selector={"role": "edge"}))
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1", "n2"], "pods on n1 and n2")
    await env.set_node(node("n2", {"role": "core"}))
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1"], "the pod of n2 gone")
    status = env.registry.daemon_sets.get("default", "agent").status
    assert status.desired_number_scheduled == 1
    # An untolerated NoExecute taint removes the pod; NoSchedule alone would keep it.
    await env.set_node(node("n1", {"role": "edge"}, (("dedicated", "NoSchedule"),)))
    await asyncio.sleep(0.2)
    assert sorted(env.pods_by_node()) == ["n1"]
    await env.set_node(node("n1", {"role": "edge"}))
    (failed,) = env.pods()

    def fail(current):
        current.status.phase = "Failed"

    await env.mutate_pod(failed, fail)
    await env.wait(lambda: [p.metadata.uid for p in env.pods()] not in ([], [failed.metadata.uid])
                   and failed.metadata.uid not in {p.metadata.uid for p in env.pods()}, "failed pod replaced")
    assert sorted(env.pods_by_node()) == ["n1"]


async def test_rolling_update_keeps_max_unavailable(env: Env):
    for name in ("n1", "n2", "n3"):
        await env.store.create("nodes", node(name))
    await env.registry.daemon_sets.create(daemon_set())
    await env.wait(lambda: len(env.pods()) == 3, "3 pods")
    for pod in env.pods():
        await env.make_ready(pod)
    await asyncio.sleep(0.05)
    update = daemon_set(image="pykube/busybox:1.36")
    update.metadata.uid = ""
    new_ds = await env.registry.daemon_sets.update(update)
    revision = template_hash(new_ds)
    seen_unavailable = 0
    async with asyncio.timeout(DEADLINE):
        while True:
            pods = env.pods()
            live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
            ready_new = [p for p in live if p.metadata.labels[REVISION_HASH_LABEL] == revision
                         and pod_ready(p)]
            seen_unavailable = max(seen_unavailable, 3 - sum(pod_ready(p) for p in live))
            if len(ready_new) == 3 and len(pods) == 3:
                break
            for pod in pods:  # the scheduler and the agents' part
                if pod.metadata.HasField("deletion_timestamp"):
                    await env.store.delete("pods", "default", pod.metadata.name)
                elif pod.metadata.labels[REVISION_HASH_LABEL] == revision and not pod_ready(pod):
                    await env.make_ready(pod)
            await asyncio.sleep(0.01)
    assert seen_unavailable <= 1
    status = env.registry.daemon_sets.get("default", "agent").status
    assert status.observed_generation == 2


async def test_deleted_node_loses_its_pod(env: Env):
    for name in ("n1", "n2"):
        await env.store.create("nodes", node(name))
    await env.registry.daemon_sets.create(daemon_set())
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1", "n2"], "pods on n1 and n2")
    await env.store.delete("nodes", "", "n2")
    await env.wait(lambda: sorted(env.pods_by_node()) == ["n1"], "the pod of the deleted node gone")


async def test_on_delete_replaces_a_pod_only_when_it_is_deleted(env: Env):
    for name in ("n1", "n2"):
        await env.store.create("nodes", node(name))
    ds = daemon_set()
    ds.spec.update_strategy.Clear()
    ds.spec.update_strategy.type = "OnDelete"
    await env.registry.daemon_sets.create(ds)
    await env.wait(lambda: len(env.pods()) == 2, "2 pods")
    old = {p.metadata.name for p in env.pods()}
    update = daemon_set(image="pykube/busybox:1.36")
    update.spec.update_strategy.Clear()
    update.spec.update_strategy.type = "OnDelete"
    revision = template_hash(await env.registry.daemon_sets.update(update))
    await env.wait(lambda: env.registry.daemon_sets.get("default", "agent").status.observed_generation == 2,
                   "the new generation observed")
    assert {p.metadata.name for p in env.pods()} == old
    assert env.registry.daemon_sets.get("default", "agent").status.updated_number_scheduled == 0
    victim = env.pods()[0]
    await env.registry.pods.delete("default", victim.metadata.name)  # unbound: gone at once

    def replaced() -> bool:
        names = {p.metadata.name for p in env.pods()}
        return len(names) == 2 and victim.metadata.name not in names

    await env.wait(replaced, "the deleted pod replaced")
    hashes = {n: pods[0].metadata.labels[REVISION_HASH_LABEL] for n, pods in env.pods_by_node().items()}
    other = "n1" if target_node(victim) == "n2" else "n2"
    assert hashes[target_node(victim)] == revision and hashes[other] != revision


async def test_extra_pods_on_a_node_are_deleted_keeping_the_oldest(env: Env):
    await env.store.create("nodes", node("n1"))
    ds = await env.registry.daemon_sets.create(daemon_set())
    await env.wait(lambda: len(env.pods()) == 1, "a pod")
    (first,) = env.pods()
    extra = daemon_pod(ds, "n1", template_hash(ds))  # as if a second controller had raced
    extra.metadata.creation_timestamp.seconds = first.metadata.creation_timestamp.seconds + 10
    await env.store.create("pods", extra)
    await env.wait(lambda: [p.metadata.name for p in env.pods()] == [first.metadata.name],
                   "the extra pod gone")
