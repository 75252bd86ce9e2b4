"""Table tests of the scheduler plugins over fake Pod/Node protos (pure logic)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo, Status
from pymaster.scheduler.plugins.node_ready import NodeReady
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
    assert NodeReady().filter({}, pod(), node(ready=ready)) == expected


@pytest.mark.parametrize(
    ("unschedulable", "expected"),
    [(False, OK), (True, Status.unschedulable("node(s) were unschedulable"))],
)
def test_node_unschedulable(unschedulable, expected):
    assert NodeUnschedulable().filter({}, pod(), node(unschedulable=unschedulable)) == expected


@pytest.mark.parametrize(
    ("request_", "allocatable", "bound", "reasons"),
    [
        (("", ""), ("2", "4Gi", "110"), (), ()),
        (("2", "4Gi"), ("2", "4Gi", "110"), (), ()),  # exactly full fits
        (("2001m", ""), ("2", "4Gi", "110"), (), ("Insufficient cpu",)),
        (("", "5Gi"), ("2", "4Gi", "110"), (), ("Insufficient memory",)),
        (("3", "5Gi"), ("2", "4Gi", "110"), (), ("Insufficient cpu", "Insufficient memory")),
        (("1", ""), ("2", "4Gi", "110"), (("1500m", ""),), ("Insufficient cpu",)),
        (("500m", "1Gi"), ("2", "4Gi", "110"), (("1500m", "3Gi"),), ()),
        (("", ""), ("2", "4Gi", "1"), (("", ""),), ("Too many pods",)),
        (("", ""), ("0", "0", "0"), (), ("Too many pods",)),  # a node that reported nothing
    ],
)
def test_node_resources_fit(request_, allocatable, bound, reasons):
    cpu, memory, pods = allocatable
    target = node(cpu=cpu, memory=memory, pods=pods, bound=bound)
    status = NodeResourcesFit().filter({}, pod(*request_), target)
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
    got = NodeResourcesFit().score({}, pod(*request_), node(cpu=cpu, memory=memory, bound=bound))
    assert got == pytest.approx(score)


def test_least_allocated_prefers_emptier_node():
    busy = node(cpu="4", memory="8Gi", bound=(("3", "6Gi"),))
    idle = node(cpu="4", memory="8Gi")
    fit = NodeResourcesFit()
    assert fit.score({}, pod("500m", "1Gi"), idle) > fit.score({}, pod("500m", "1Gi"), busy)


# ---- extended resources ----

DONGLE = "example.com/dongle"


def dongle_pod(limit: str = "", request: str = "", init: str = "", sidecar: str = "") -> PodInfo:
    """A pod asking for dongles by limit (the request defaults to it), request, in a plain init
    container or in a sidecar."""
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    app = p.spec.containers.add(name="app", image="busybox:1.35")
    if limit:
        app.resources.limits[DONGLE] = limit
    if request:
        app.resources.requests[DONGLE] = request
    if init:
        p.spec.init_containers.add(name="init", image="busybox:1.35").resources.limits[DONGLE] = init
    if sidecar:
        side = p.spec.init_containers.add(name="side", image="busybox:1.35", restart_policy="Always")
        side.resources.limits[DONGLE] = sidecar
    return PodInfo.from_pod(p)


def dongle_node(
    capacity: dict[str, str], allocatable: dict[str, str], bound: tuple[str, ...] = ()
) -> NodeInfo:
    n = objects_pb2.Node()
    n.metadata.name = "n1"
    n.status.capacity.update({"cpu": "2", "memory": "4Gi", "pods": "110", **capacity})
    n.status.allocatable.update({"cpu": "2", "memory": "4Gi", "pods": "110", **allocatable})
    n.status.conditions.add(type="Ready", status="True")
    return NodeInfo.from_node(n, [dongle_pod(limit).pod for limit in bound])


@pytest.mark.parametrize(
    ("pod_", "capacity", "allocatable", "bound", "ok"),
    [
        pytest.param(dongle_pod("1"), {DONGLE: "2"}, {DONGLE: "2"}, (), True, id="fits"),
        pytest.param(dongle_pod("2"), {DONGLE: "2"}, {DONGLE: "2"}, (), True, id="exactly all"),
        pytest.param(dongle_pod("3"), {DONGLE: "2"}, {DONGLE: "2"}, (), False, id="more than the node has"),
        pytest.param(dongle_pod("1"), {DONGLE: "2"}, {DONGLE: "2"}, ("2",), False, id="all taken"),
        pytest.param(dongle_pod("1"), {DONGLE: "2"}, {DONGLE: "2"}, ("1",), True, id="one left"),
        pytest.param(dongle_pod("2"), {DONGLE: "2"}, {DONGLE: "2"}, ("1",), False, id="no overcommit"),
        pytest.param(dongle_pod("1"), {}, {}, (), False, id="node without dongles"),
        pytest.param(dongle_pod("1"), {DONGLE: "2"}, {}, (), True, id="allocatable falls back to capacity"),
        pytest.param(dongle_pod("2"), {DONGLE: "4"}, {DONGLE: "1"}, (), False, id="allocatable counts"),
        pytest.param(dongle_pod(request="1"), {DONGLE: "1"}, {DONGLE: "1"}, (), True, id="by request"),
        pytest.param(dongle_pod(), {}, {}, (), True, id="no dongle asked"),
        pytest.param(dongle_pod("0"), {}, {}, (), True, id="zero asked"),
        # init containers: the larger of the init peak and what runs at the end
        pytest.param(dongle_pod("1", init="2"), {DONGLE: "2"}, {DONGLE: "2"}, (), True, id="init peak fits"),
        pytest.param(dongle_pod("1", init="3"), {DONGLE: "2"}, {DONGLE: "2"}, (), False, id="init peak"),
        pytest.param(dongle_pod("1", sidecar="1"), {DONGLE: "1"}, {DONGLE: "1"}, (), False, id="sidecar"),
    ],
)
def test_node_resources_fit_extended(pod_, capacity, allocatable, bound, ok):
    status = NodeResourcesFit().filter({}, pod_, dongle_node(capacity, allocatable, bound))
    assert status == (OK if ok else Status.unschedulable("Insufficient example.com/dongle"))


def test_node_resources_fit_reports_every_shortage():
    p = objects_pb2.Pod()
    app = p.spec.containers.add(name="app", image="busybox:1.35")
    app.resources.limits.update({"cpu": "3", "example.com/b": "1", "example.com/a": "1"})
    status = NodeResourcesFit().filter({}, PodInfo.from_pod(p), dongle_node({"example.com/a": "1"}, {}, ()))
    assert status.reasons == ("Insufficient cpu", "Insufficient example.com/b")


def test_extended_resources_do_not_change_the_score():
    plain, dongles = dongle_pod(), dongle_pod("1")
    n = dongle_node({DONGLE: "2"}, {DONGLE: "2"})
    assert NodeResourcesFit().score({}, plain, n) == NodeResourcesFit().score({}, dongles, n)


# ---- ephemeral-storage ----


def storage_pod(request: str = "", limit: str = "", init: str = "") -> PodInfo:
    """A pod asking for ephemeral-storage by request, by limit (the request defaults to it) or in
    a plain init container."""
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    app = p.spec.containers.add(name="app", image="busybox:1.35")
    if request:
        app.resources.requests["ephemeral-storage"] = request
    if limit:
        app.resources.limits["ephemeral-storage"] = limit
    if init:
        setup = p.spec.init_containers.add(name="init", image="busybox:1.35")
        setup.resources.requests["ephemeral-storage"] = init
    return PodInfo.from_pod(p)


def storage_node(
    allocatable: str | None, capacity: str | None = None, bound: tuple[str, ...] = ()
) -> NodeInfo:
    n = objects_pb2.Node()
    n.metadata.name = "n1"
    n.status.allocatable.update({"cpu": "2", "memory": "4Gi", "pods": "110"})
    if allocatable is not None:
        n.status.allocatable["ephemeral-storage"] = allocatable
    if capacity is not None:
        n.status.capacity["ephemeral-storage"] = capacity
    n.status.conditions.add(type="Ready", status="True")
    return NodeInfo.from_node(n, [storage_pod(request).pod for request in bound])


@pytest.mark.parametrize(
    ("pod_", "node_", "ok"),
    [
        pytest.param(storage_pod("1Gi"), storage_node("10Gi"), True, id="fits"),
        pytest.param(storage_pod("10Gi"), storage_node("10Gi"), True, id="exactly all"),
        pytest.param(storage_pod("11Gi"), storage_node("10Gi"), False, id="more than the node has"),
        pytest.param(storage_pod(limit="11Gi"), storage_node("10Gi"), False, id="the limit is the request"),
        pytest.param(storage_pod("2Gi"), storage_node("10Gi", bound=("9Gi",)), False, id="taken by others"),
        pytest.param(storage_pod("1Gi"), storage_node("10Gi", bound=("9Gi",)), True, id="what is left"),
        pytest.param(storage_pod("1Gi"), storage_node(None, "10Gi"), True, id="falls back to capacity"),
        pytest.param(storage_pod("1Gi"), storage_node(None), False, id="a node that reports none"),
        pytest.param(storage_pod(), storage_node(None), True, id="none asked"),
        pytest.param(storage_pod("1Gi", init="20Gi"), storage_node("10Gi"), False, id="init peak"),
        pytest.param(storage_pod("263174212Ki"), storage_node("263174212Ki"), True, id="kubelet notation"),
    ],
)
def test_node_resources_fit_ephemeral_storage(pod_, node_, ok):
    expected = OK if ok else Status.unschedulable("Insufficient ephemeral-storage")
    assert NodeResourcesFit().filter({}, pod_, node_) == expected


def test_ephemeral_storage_is_reported_in_kube_schedulers_order():
    p = objects_pb2.Pod()
    app = p.spec.containers.add(name="app", image="busybox:1.35")
    app.resources.requests.update({"cpu": "3", "memory": "5Gi", "ephemeral-storage": "1Ti", DONGLE: "1"})
    status = NodeResourcesFit().filter({}, PodInfo.from_pod(p), storage_node("10Gi"))
    assert status.reasons == (
        "Insufficient cpu", "Insufficient memory", "Insufficient ephemeral-storage", f"Insufficient {DONGLE}"
    )


def test_ephemeral_storage_does_not_change_the_score():
    n = storage_node("10Gi")
    fit = NodeResourcesFit()
    assert fit.score({}, storage_pod(), n) == fit.score({}, storage_pod("5Gi"), n)
