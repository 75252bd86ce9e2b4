"""The NoExecute taint manager (pymaster.controllers.taint_eviction): its decision as a table
(which pods go when, given taints, tolerations and the times), and the controller over a real
SQLite store deleting, delaying and cancelling."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2
from pymaster.api.kinds import EVENTS, NODES, PODS
from pymaster.controllers.taint_eviction import AT_ONCE, TaintEvictionController, eviction_time
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store import open_store, sqlite_url

ADDED = 1_000_000
BOUND = ADDED - 500


def taint(
    key: str, effect: str = "NoExecute", value: str = "", added: int | None = ADDED
) -> objects_pb2.Taint:
    t = objects_pb2.Taint(key=key, value=value, effect=effect)
    if added is not None:
        t.time_added.seconds = added
    return t


def toleration(key: str = "", operator: str = "Exists", effect: str = "NoExecute", seconds: int | None = None,
               value: str = "") -> objects_pb2.Toleration:
    t = objects_pb2.Toleration(key=key, operator=operator, effect=effect, value=value)
    if seconds is not None:
        t.toleration_seconds = seconds
    return t


def pod(*tolerations: objects_pb2.Toleration, bound: int = BOUND) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.namespace, p.metadata.name = "default", "web"
    p.metadata.creation_timestamp.seconds = bound - 10
    p.spec.node_name = "n1"
    p.spec.tolerations.extend(tolerations)
    p.status.conditions.add(type="PodScheduled", status="True").last_transition_time.seconds = bound
    return p


UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.mark.parametrize(
    ("taints", "tolerations", "expected"),
    [
        ([], [], None),
        ([taint("k", "NoSchedule")], [], None),  # only NoExecute evicts
        ([taint("k", "PreferNoSchedule")], [], None),
        ([taint("k")], [], AT_ONCE),
        ([taint("k", value="v")], [toleration("k", "Equal", value="w")], AT_ONCE),  # value differs
        ([taint("k", value="v")], [toleration("k", "Equal", value="v")], None),  # for ever
        ([taint("k")], [toleration("k", seconds=30)], ADDED + 30),
        ([taint("k")], [toleration("k", effect="", seconds=30)], ADDED + 30),  # any effect
        ([taint("k")], [toleration(seconds=30)], ADDED + 30),  # empty key + Exists: every taint
        ([taint("k")], [toleration("k", seconds=-5)], ADDED),  # negative counts as 0
        ([taint("a"), taint("b")], [toleration("a", seconds=60)], AT_ONCE),  # b not tolerated
        ([taint("a"), taint("b")], [toleration("a", seconds=60), toleration("b")], ADDED + 60),
        ([taint("a"), taint("b")], [toleration("a", seconds=60), toleration("b", seconds=20)], ADDED + 20),
        # The first matching toleration counts, as Kubernetes' GetMatchingTolerations.
        ([taint("a")], [toleration("a"), toleration("a", seconds=5)], None),
        ([taint("a")], [toleration("a", seconds=5), toleration("a")], ADDED + 5),
        # The clock starts at the earliest NoExecute taint...
        ([taint("a", added=ADDED + 100), taint("b")], [toleration(seconds=10)], ADDED + 10),
        # ... or at the binding when the pod came later.
        ([taint("a", added=BOUND - 1000)], [toleration(seconds=10)], BOUND + 10),
        ([taint("a", added=None)], [toleration(seconds=10)], BOUND + 10),
        # The default toleration of the unreachable taint.
        ([taint(UNREACHABLE)], [toleration(UNREACHABLE, seconds=300)], ADDED + 300),
    ],
)
def test_eviction_time(taints, tolerations, expected):
    assert eviction_time(pod(*tolerations), taints) == expected


def test_eviction_time_without_scheduled_condition_counts_from_creation():
    p = pod(toleration(seconds=10))
    del p.status.conditions[:]
    assert eviction_time(p, [taint("a", added=1)]) == BOUND - 10 + 10


# ---- the controller over a real store ----


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def registry(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    await store.open()
    yield Registry(store, NodeLeases(40.0))
    await store.close()


async def add_node(registry: Registry, *taints: objects_pb2.Taint) -> None:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "n1"
    node.spec.taints.extend(taints)
    await registry.nodes.register(node)
    if taints:
        stored = registry.nodes.get("", "n1")
        del stored.spec.taints[:]
        stored.spec.taints.extend(taints)
        await registry.nodes.update(stored)


async def add_pod(registry: Registry, name: str, *tolerations: objects_pb2.Toleration) -> None:
    p = objects_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.namespace, p.metadata.name = "default", name
    p.spec.containers.add(name="c", image="busybox")
    p.spec.tolerations.extend(tolerations)
    await registry.pods.create(p)
    await registry.pods.bind(registry.pods.get("default", name), "n1")


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def marked_by_controller(registry: Registry) -> bool:
    return any(e.reason == "TaintManagerEviction" for e in registry.store.list(EVENTS.resource)[0])


def marked(registry: Registry, name: str) -> bool:
    return registry.pods.get("default", name).metadata.HasField("deletion_timestamp")


async def test_controller_evicts_untolerating_pods_at_once_and_keeps_tolerating_ones(registry):
    await add_node(registry)
    await add_pod(registry, "plain")
    await add_pod(registry, "tolerant", toleration("dedicated"))
    metrics = CollectorRegistry()
    controller = TaintEvictionController(registry, metrics)
    controller.start()
    try:
        node = registry.nodes.get("", "n1")
        node.spec.taints.add(key="dedicated", effect="NoExecute")
        await registry.nodes.update(node)
        await until(lambda: marked(registry, "plain"))
        assert not marked(registry, "tolerant")
        assert metrics.get_sample_value("taint_eviction_controller_pod_deletions_total") == 1
        await until(lambda: marked_by_controller(registry))
        (event,) = [e for e in registry.store.list(EVENTS.resource)[0] if e.reason == "TaintManagerEviction"]
        assert (event.type, event.message, event.involved_object.name) == (
            "Normal", "Marking for deletion Pod default/plain", "plain")
        assert event.source.component == "taint-eviction-controller"
    finally:
        await controller.stop()


async def test_controller_waits_toleration_seconds_and_cancels_when_the_taint_goes(registry):
    clock = Clock(time.time())
    await add_node(registry)
    await add_pod(registry, "web", toleration("k", seconds=100))
    controller = TaintEvictionController(registry, clock=clock)
    controller.start()
    try:
        node = registry.nodes.get("", "n1")
        node.spec.taints.add(key="k", effect="NoExecute")
        node = await registry.nodes.update(node)
        added = node.spec.taints[0].time_added.seconds
        assert added  # stamped by the registry
        await until(lambda: "default/web" in controller.pending())
        assert controller.pending()["default/web"] == added + 100
        assert not marked(registry, "web")

        node.spec.ClearField("taints")
        await registry.nodes.update(node)
        await until(lambda: not controller.pending())
        await until(lambda: any(e.message == "Cancelling deletion of Pod default/web"
                                for e in registry.store.list(EVENTS.resource)[0]))
        assert not marked(registry, "web")
    finally:
        await controller.stop()


async def test_controller_evicts_when_the_toleration_runs_out(registry):
    await add_node(registry)
    await add_pod(registry, "web", toleration("k", seconds=1))
    clock = Clock(time.time())
    controller = TaintEvictionController(registry, clock=clock)
    controller.start()
    try:
        node = registry.nodes.get("", "n1")
        node.spec.taints.add(key="k", effect="NoExecute")
        await registry.nodes.update(node)
        await until(lambda: "default/web" in controller.pending())
        assert not marked(registry, "web")
        clock.now += 5
        controller._changed.set()  # the fake clock moved: wake the timer
        await until(lambda: marked(registry, "web"))
        assert registry.store.get(PODS.resource, "default", "web").metadata.deletion_grace_period_seconds > 0
    finally:
        await controller.stop()


async def test_controller_ignores_pods_already_being_deleted(registry):
    await add_node(registry)
    await add_pod(registry, "web")
    await registry.pods.delete("default", "web")
    controller = TaintEvictionController(registry)
    controller.start()
    try:
        node = registry.nodes.get("", "n1")
        node.spec.taints.add(key="k", effect="NoExecute")
        await registry.nodes.update(node)
        await until(lambda: registry.store.get(NODES.resource, "", "n1").spec.taints)
        await asyncio.sleep(0.1)
        assert not controller.pending() and not marked_by_controller(registry)
    finally:
        await controller.stop()
