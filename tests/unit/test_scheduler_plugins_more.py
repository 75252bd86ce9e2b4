"""Table tests of NodePorts, NodeName, NodeResourcesBalancedAllocation, NodeResourcesFit's
MostAllocated strategy and the pre-filter skips of the per-node filters."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot, Status
from pymaster.scheduler.plugins.balanced_allocation import BalancedAllocation
from pymaster.scheduler.plugins.node_name import NodeName
from pymaster.scheduler.plugins.node_ports import REASON as PORTS_REASON
from pymaster.scheduler.plugins.node_ports import NodePorts
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit


def pod(name: str = "web", cpu: str = "", memory: str = "", ports: tuple[tuple[str, str, int], ...] = (),
        node_name: str = "") -> PodInfo:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    container = p.spec.containers.add(name="app", image="busybox:1.35")
    if cpu:
        container.resources.requests["cpu"] = cpu
    if memory:
        container.resources.requests["memory"] = memory
    for ip, protocol, port in ports:
        container.ports.add(container_port=port, host_port=port, host_ip=ip, protocol=protocol)
    p.spec.node_name = node_name
    return PodInfo.from_pod(p)


def node(name: str = "n1", cpu: str = "4", memory: str = "8Gi", bound: tuple[PodInfo, ...] = ()) -> NodeInfo:
    n = objects_pb2.Node()
    n.metadata.name = name
    n.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": "110"})
    n.status.conditions.add(type="Ready", status="True")
    return NodeInfo.from_node(n, bound)


@pytest.mark.parametrize(
    ("wanted", "used", "ok"),
    [
        ((), (("", "TCP", 8080),), True),  # no host port: always fits
        ((("", "TCP", 8080),), (), True),
        ((("", "TCP", 8080),), (("", "TCP", 8080),), False),
        ((("", "TCP", 8080),), (("", "UDP", 8080),), True),  # another protocol
        ((("", "TCP", 8080),), (("", "TCP", 8081),), True),
        ((("10.0.0.1", "TCP", 8080),), (("10.0.0.2", "TCP", 8080),), True),  # other addresses
        ((("10.0.0.1", "TCP", 8080),), (("10.0.0.1", "TCP", 8080),), False),
        ((("10.0.0.1", "TCP", 8080),), (("0.0.0.0", "TCP", 8080),), False),  # 0.0.0.0: all
        ((("0.0.0.0", "TCP", 8080),), (("10.0.0.1", "TCP", 8080),), False),
        ((("", "TCP", 80), ("", "TCP", 8080)), (("", "TCP", 8080),), False),
    ],
)
def test_node_ports(wanted, used, ok):
    plugin = NodePorts()
    incoming = pod(ports=wanted)
    existing = node(bound=(pod("other", ports=used),))
    pre = plugin.pre_filter({}, incoming, Snapshot([existing]))
    if not wanted:
        assert pre.skipped
        return
    status = plugin.filter({}, incoming, existing)
    assert status.ok is ok
    if not ok:
        assert status.reasons == (PORTS_REASON,)


def test_node_ports_freed_when_the_pod_goes():
    info = node(bound=(pod("other", ports=(("", "TCP", 8080),)),))
    info.remove_pod("default/other")
    assert NodePorts().filter({}, pod(ports=(("", "TCP", 8080),)), info).ok


def test_node_name():
    plugin = NodeName()
    assert plugin.pre_filter({}, pod(), Snapshot([])).skipped
    named = pod(node_name="n2")
    assert plugin.pre_filter({}, named, Snapshot([])).ok
    assert plugin.filter({}, named, node("n2")).ok
    refused = Status.unschedulable("node(s) didn't match the requested node name")
    assert plugin.filter({}, named, node("n1")) == refused


@pytest.mark.parametrize(
    ("request_", "allocatable", "bound", "score"),
    [
        (("1", "2Gi"), ("4", "8Gi"), (), 100.0),  # 25% cpu, 25% memory: perfectly balanced
        (("2", "1Gi"), ("4", "8Gi"), (), (1 - abs(0.5 - 0.125) / 2) * 100),
        (("1", "1Gi"), ("4", "8Gi"), (("1", "3Gi"),), (1 - abs(0.5 - 0.5) / 2) * 100),
        (("8", "1Gi"), ("4", "8Gi"), (), (1 - abs(1.0 - 0.125) / 2) * 100),  # fractions capped at 1
        (("1", ""), ("4", "8Gi"), (), (1 - 0.25 / 2) * 100),  # real requests, not the defaults
    ],
)
def test_balanced_allocation(request_, allocatable, bound, score):
    cpu, memory = allocatable
    info = node(cpu=cpu, memory=memory, bound=tuple(pod(f"b{i}", c, m) for i, (c, m) in enumerate(bound)))
    plugin = BalancedAllocation()
    incoming = pod("web", *request_)
    assert plugin.pre_score({}, incoming, [info]).ok
    assert plugin.score({}, incoming, info) == pytest.approx(score)


def test_balanced_allocation_skips_request_less_pods():
    assert BalancedAllocation().pre_score({}, pod(), [node()]).skipped


def test_balanced_allocation_prefers_the_node_it_balances():
    cpu_heavy = node("a", bound=(pod("x", "3", "1Gi"),))
    memory_heavy = node("b", bound=(pod("y", "500m", "6Gi"),))
    wants_memory = pod("web", "100m", "1Gi")
    plugin = BalancedAllocation()
    assert plugin.score({}, wants_memory, cpu_heavy) > plugin.score({}, wants_memory, memory_heavy)


@pytest.mark.parametrize(
    ("strategy", "resources", "request_", "score"),
    [
        ("LeastAllocated", None, ("1", "2Gi"), 75.0),
        ("MostAllocated", None, ("1", "2Gi"), 25.0),
        ("MostAllocated", {"cpu": 3, "memory": 1}, ("2", "2Gi"), (3 * 50 + 25) / 4),
        ("LeastAllocated", {"cpu": 1}, ("2", "2Gi"), 50.0),
        ("MostAllocated", None, ("8", "16Gi"), 100.0),  # over allocatable counts as full
    ],
)
def test_resource_scoring_strategies(strategy, resources, request_, score):
    plugin = NodeResourcesFit(strategy, resources)
    assert plugin.score({}, pod("web", *request_), node()) == pytest.approx(score)


def test_unknown_strategy_refused():
    with pytest.raises(ValueError, match="RequestedToCapacityRatio"):
        NodeResourcesFit("RequestedToCapacityRatio")
