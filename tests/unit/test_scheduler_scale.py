"""The scheduling framework at scale: the default profile placing pods one after another through
the scheduler's cache (its snapshot and arrays, the vectorised path the scheduler runs), each
decision assumed as the scheduler does, and the spread that results.

1,000 nodes and 5,000 equal pods take a few seconds on the 2-core test machine; the test asserts
the spread, never the time. Those nodes are 2-cpu/4Gi, the size of the test machine; large
nodes are checked too (scores are fractions, so one small pod still tells nodes apart).
"""

from __future__ import annotations

import random
from collections import Counter

from pymaster.api import objects_pb2
from pymaster.scheduler.cache import SchedulerCache
from pymaster.scheduler.framework import NodeInfo, PodInfo
from pymaster.scheduler.plugin_registry import build_framework


def make_node(name: str, cpu: str = "2", memory: str = "4Gi") -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": "110"})
    node.status.conditions.add(type="Ready", status="True")
    return node


def make_pod(name: str, cpu: str = "100m", memory: str = "128Mi") -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    container = pod.spec.containers.add(name="app", image="pykube/busybox:1.35")
    container.resources.requests.update({"cpu": cpu, "memory": memory})
    return pod


def place(nodes: list[NodeInfo], pods: list[objects_pb2.Pod], seed: int = 7) -> Counter[str]:
    """Schedules ``pods`` in order over ``nodes`` (updated in place: the cache takes them as they
    are); returns pods per node."""
    framework = build_framework(rng=random.Random(seed))
    cache = SchedulerCache()
    for info in nodes:
        cache.set_node(info.name, info.node)
        cache.infos[info.name] = info  # keep the caller's info, with the pods already on it
    placed: Counter[str] = Counter()
    for pod in pods:
        info = PodInfo.from_pod(pod)
        result = framework.schedule(info, cache.snapshot())
        assert result.node_name is not None, result.message
        cache.assume(info.key, info, result.node_name)
        placed[result.node_name] += 1
    return placed


def test_equal_pods_spread_evenly_over_a_thousand_nodes() -> None:
    nodes = [NodeInfo.from_node(make_node(f"node-{i:04d}")) for i in range(1000)]
    pods = [make_pod(f"web-{i}") for i in range(5000)]
    placed = place(nodes, pods)
    counts = [info.pod_count for info in nodes]
    assert sum(placed.values()) == sum(counts) == 5000
    assert max(counts) - min(counts) <= 1, Counter(counts)
    assert min(counts) == 5  # 5,000 over 1,000: exactly even


def test_nodes_with_less_free_cpu_get_fewer_pods() -> None:
    nodes = [NodeInfo.from_node(make_node(f"node-{i}")) for i in range(10)]
    busy = {f"node-{i}" for i in range(3)}
    for info in nodes:
        if info.name in busy:
            info.add_pod(make_pod(f"hog-{info.name}", cpu="1500m", memory="128Mi"))
    placed = place(nodes, [make_pod(f"web-{i}") for i in range(40)])
    free = [placed[info.name] for info in nodes if info.name not in busy]
    loaded = [placed[info.name] for info in nodes if info.name in busy]
    assert sum(free) + sum(loaded) == 40
    assert max(loaded) < min(free), placed
    assert max(free) - min(free) <= 1, placed  # the equal nodes still share evenly


def test_equal_pods_spread_evenly_over_large_nodes() -> None:
    nodes = [NodeInfo.from_node(make_node(f"big-{i:03d}", cpu="64", memory="256Gi")) for i in range(100)]
    place(nodes, [make_pod(f"web-{i}") for i in range(500)])
    counts = [info.pod_count for info in nodes]
    assert max(counts) - min(counts) <= 1, Counter(counts)
