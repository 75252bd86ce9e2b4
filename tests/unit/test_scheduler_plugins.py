"""Table tests of the scheduler plugins over fake Pod/Node protos (pure logic)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo, Status
from pymaster.scheduler.plugins.least_allocated import LeastAllocated
from pymaster.scheduler.plugins.node_ready import NodeReady
from pymaster.scheduler.plugins.node_selector import NodeSelector
from pymaster.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit


def pod(cpu: str = "", memory: str = "", selector: dict[str, str] | None = None) -> PodInfo:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    container = p.spec.containers.add(name="app", image="busybox:1.35")
    if cpu:
        container.resources.requests["cpu"] = cpu
    if memory:
        container.resources.requests["memory"] = memory
    p.spec.node_selector.update(selector or {})
    return PodInfo.from_pod(p)


def node(
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str = "110",
    ready: str = "True",
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    bound: tuple[tuple[str, str], ...] = (),
) -> NodeInfo:
    n = objects_pb2.Node()
    n.metadata.name = "n1"
    n.metadata.labels.update(labels or {})
    n.spec.unschedulable = unschedulable
    n.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": pods})
    if ready:
        n.status.conditions.add(type="Ready", status=ready)
    return NodeInfo.from_node(n, [pod(c, m).pod for c, m in bound])


OK = Status.success()


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ("True", OK),
        ("False", Status.unschedulable("node(s) were not ready")),
        ("Unknown", Status.unschedulable("node(s) were not ready")),
        ("", Status.unschedulable("node(s) were not ready")),
    ],
)
def test_node_ready(ready, expected):
    assert NodeReady().filter(pod(), node(ready=ready)) == expected


@pytest.mark.parametrize(
    ("unschedulable", "expected"),
    [(False, OK), (True, Status.unschedulable("node(s) were unschedulable"))],
)
def test_node_unschedulable(unschedulable, expected):
    assert NodeUnschedulable().filter(pod(), node(unschedulable=unschedulable)) == expected


@pytest.mark.parametrize(
    ("selector", "labels", "ok"),
    [
        ({}, {}, True),
        ({}, {"disk": "ssd"}, True),
        ({"disk": "ssd"}, {"disk": "ssd", "zone": "a"}, True),
        ({"disk": "ssd"}, {"disk": "hdd"}, False),
        ({"disk": "ssd"}, {}, False),
        ({"disk": "ssd", "zone": "a"}, {"disk": "ssd"}, False),
    ],
)
def test_node_selector(selector, labels, ok):
    status = NodeSelector().filter(pod(selector=selector), node(labels=labels))
    assert status.ok is ok
    if not ok:
        assert status.reasons == ("node(s) didn't match Pod's node selector",)


@pytest.mark.parametrize(
    ("request_", "allocatable", "bound", "reasons"),
    [
        (("", ""), ("2", "4Gi", "110"), (), ()),
        (("2", "4Gi"), ("2", "4Gi", "110"), (), ()),  # exactly full fits
        (("2001m", ""), ("2", "4Gi", "110"), (), ("insufficient cpu",)),
        (("", "5Gi"), ("2", "4Gi", "110"), (), ("insufficient memory",)),
        (("3", "5Gi"), ("2", "4Gi", "110"), (), ("insufficient cpu", "insufficient memory")),
        (("1", ""), ("2", "4Gi", "110"), (("1500m", ""),), ("insufficient cpu",)),
        (("500m", "1Gi"), ("2", "4Gi", "110"), (("1500m", "3Gi"),), ()),
        (("", ""), ("2", "4Gi", "1"), (("", ""),), ("too many pods",)),
        (("", ""), ("0", "0", "0"), (), ("too many pods",)),  # a node that reported nothing
    ],
)
def test_node_resources_fit(request_, allocatable, bound, reasons):
    cpu, memory, pods = allocatable
    status = NodeResourcesFit().filter(pod(*request_), node(cpu=cpu, memory=memory, pods=pods, bound=bound))
    assert status.ok is (not reasons)
    assert status.reasons == reasons


@pytest.mark.parametrize(
    ("request_", "allocatable", "bound", "score"),
    [
        (("1", "2Gi"), ("2", "4Gi"), (), 50),
        (("1", "1Gi"), ("2", "4Gi"), (), (50 + 75) / 2),  # fractions count
        (("1", "2Gi"), ("4", "8Gi"), (("1", "2Gi"),), 50),
        (("2", "4Gi"), ("2", "4Gi"), (), 0),
        (("", ""), ("1", "1000Mi"), (), (90 + 80) / 2),  # defaults: 100m, 200Mi
        (("1", "1Gi"), ("0", "0"), (), 0),
    ],
)
def test_least_allocated(request_, allocatable, bound, score):
    cpu, memory = allocatable
    got = LeastAllocated().score(pod(*request_), node(cpu=cpu, memory=memory, bound=bound))
    assert got == pytest.approx(score)


def test_least_allocated_prefers_emptier_node():
    busy = node(cpu="4", memory="8Gi", bound=(("3", "6Gi"),))
    idle = node(cpu="4", memory="8Gi")
    assert LeastAllocated().score(pod("500m", "1Gi"), idle) > LeastAllocated().score(pod("500m", "1Gi"), busy)
