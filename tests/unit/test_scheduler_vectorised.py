"""The array forms of the hot plugins agree with their scalar methods (the reference semantics)
node by node, the vectorised decision equals the scalar one, and the cache keeps the arrays in
step with the NodeInfos as pods come and go."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pymaster.api import objects_pb2
from pymaster.scheduler.cache import SchedulerCache
from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot
from pymaster.scheduler.node_arrays import ALL_PASS, EQUAL, NodeArrays
from pymaster.scheduler.plugin_registry import build_framework
from pymaster.scheduler.plugins.balanced_allocation import BalancedAllocation
from pymaster.scheduler.plugins.node_ready import NodeReady
from pymaster.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit


def make_pod(name: str, cpu: str = "", memory: str = "", storage: str = "") -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    requests = pod.spec.containers.add(name="app", image="busybox:1.35").resources.requests
    for resource, amount in (("cpu", cpu), ("memory", memory), ("ephemeral-storage", storage)):
        if amount:
            requests[resource] = amount
    return pod


def random_node(rng: random.Random, i: int) -> NodeInfo:
    node = objects_pb2.Node()
    node.metadata.name = f"n{i:03d}"
    node.spec.unschedulable = rng.random() < 0.1
    node.metadata.labels["zone"] = rng.choice("ab")
    node.status.allocatable.update({
        "cpu": rng.choice(["0", "1", "2", "4", "1500m"]),
        "memory": rng.choice(["0", "1Gi", "4Gi", "8Gi"]),
        "pods": rng.choice(["0", "2", "110"]),
        "ephemeral-storage": rng.choice(["0", "10Gi"]),
    })
    node.status.conditions.add(type="Ready", status=rng.choice(["True", "True", "False"]))
    pods = [make_pod(f"b{i}-{j}", rng.choice(["", "100m", "1"]), rng.choice(["", "128Mi", "1Gi"]))
            for j in range(rng.randrange(3))]
    return NodeInfo.from_node(node, pods)


def random_pod(rng: random.Random, i: int) -> PodInfo:
    pod = make_pod(f"p{i}", rng.choice(["", "100m", "500m", "2"]), rng.choice(["", "64Mi", "2Gi"]),
                   rng.choice(["", "1Gi"]))
    if rng.random() < 0.3:
        pod.spec.node_selector["zone"] = "a"  # a per-node filter: the sampled path
    return PodInfo.from_pod(pod)


PLUGINS = [NodeReady(), NodeUnschedulable(), NodeResourcesFit(), NodeResourcesFit("MostAllocated"),
           NodeResourcesFit(resources={"cpu": 3, "memory": 1}), BalancedAllocation()]


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: f"{p.name}")
def test_array_forms_equal_the_scalar_methods(plugin):
    rng = random.Random(3)
    nodes = [random_node(rng, i) for i in range(60)]
    arrays = NodeArrays(nodes)
    for i in range(40):
        pod = random_pod(rng, i)
        if hasattr(plugin, "filter_array"):
            mask = plugin.filter_array({}, pod, arrays)
            expected_mask = [plugin.filter({}, pod, node).ok for node in nodes]
            assert all(expected_mask) if mask is ALL_PASS else list(mask) == expected_mask
        if hasattr(plugin, "score_array"):
            scores = plugin.score_array({}, pod, arrays)
            pre = getattr(plugin, "pre_score", None)
            if pre is not None and pre({}, pod, nodes).skipped:
                assert scores is EQUAL  # nothing to say: equal scores, no ranking
                continue
            expected = [plugin.score({}, pod, node) for node in nodes]
            assert scores == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_vectorised_decision_equals_the_scalar_one():
    rng = random.Random(5)
    nodes = [random_node(rng, i) for i in range(80)]
    scalar, vectorised = build_framework(percentage_of_nodes_to_score=100), build_framework()
    for i in range(50):
        pod = random_pod(rng, i)
        expected = scalar.schedule(pod, Snapshot(nodes))
        got = vectorised.schedule(pod, Snapshot(nodes, arrays=NodeArrays(nodes)))
        if expected.node_name is None:
            assert got == expected  # the scalar path explains
            continue
        active, _ = scalar.pre_filter({}, pod, Snapshot(nodes))
        totals = scalar.score_nodes({}, pod, [n for n in nodes if scalar.run_filters({}, pod, n, active).ok])
        assert totals[got.node_name] == pytest.approx(max(totals.values()))


def test_cache_keeps_arrays_in_step():
    cache = SchedulerCache()
    for i in range(3):
        node = objects_pb2.Node()
        node.metadata.name = f"n{i}"
        node.status.allocatable.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
        node.status.conditions.add(type="Ready", status="True")
        cache.set_node(node.metadata.name, node)
    arrays = cache.snapshot().arrays
    bound = make_pod("a", "500m", "1Gi")
    bound.spec.node_name = "n1"
    cache.set_pod("default/a", bound)
    cache.assume("default/b", PodInfo.from_pod(make_pod("b", "250m")), "n2")
    assert cache.snapshot().arrays is arrays  # same nodes: rows refreshed, not rebuilt
    assert list(arrays.req_cpu) == [0, 500, 250]
    assert list(arrays.free_nonzero_cpu) == [2000, 1500, 1750]  # the derived rows too
    cache.forget("default/b")
    cache.set_pod("default/a", None)
    cache.snapshot()
    assert list(arrays.req_cpu) == [0, 0, 0]
    node = cache.nodes["n0"]
    node.spec.unschedulable = True
    cache.set_node("n0", node)
    assert list(cache.snapshot().arrays.unschedulable) == [True, False, False]


def test_equal_pods_spread_exactly_over_five_thousand_nodes():
    cache = SchedulerCache()
    for i in range(5000):
        node = objects_pb2.Node()
        node.metadata.name = f"n{i:04d}"
        node.status.allocatable.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
        node.status.conditions.add(type="Ready", status="True")
        cache.set_node(node.metadata.name, node)
    framework = build_framework(rng=random.Random(1))
    for i in range(6000):
        info = PodInfo.from_pod(make_pod(f"p{i}", "100m", "128Mi"))
        cache.assume(info.key, info, framework.schedule(info, cache.snapshot()).node_name)
    counts = np.array([len(info.pods) for info in cache.infos.values()])
    assert (counts.min(), counts.max()) == (1, 2)
