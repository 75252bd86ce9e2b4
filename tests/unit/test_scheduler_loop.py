"""The scheduler task against a real SQLite store in tmp_path: event-driven binding, the
unschedulable message, parking and waking, the no-overcommit guarantee of "assume", and the events
it records (Scheduled, FailedScheduling folded per attempt)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.metrics import MasterMetrics
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.scheduler.scheduler import Scheduler
from pymaster.store.sqlite import SQLiteStore


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def new_pod(name: str, cpu: str = "", node_name: str = "") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = name, "default", str(uuid.uuid4())
    container = pod.spec.containers.add(name="app", image="busybox:1.35")
    if cpu:
        container.resources.requests["cpu"] = cpu
    pod.spec.node_name = node_name
    pod.status.phase = "Pending"
    return pod


def new_node(name: str, cpu: str = "2", ready: str = "True", unschedulable: bool = False) -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name, node.metadata.uid = name, str(uuid.uuid4())
    node.spec.unschedulable = unschedulable
    node.status.allocatable.update({"cpu": cpu, "memory": "4Gi", "pods": "110"})
    node.status.conditions.add(type="Ready", status=ready)
    return node


@pytest.fixture
async def cluster(tmp_path):
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    registry = CollectorRegistry()
    scheduler = Scheduler(Registry(store, NodeLeases(40)), MasterMetrics(registry))
    await scheduler.start()
    yield store, scheduler, registry
    await scheduler.stop()
    await store.close()


def scheduled_condition(store: SQLiteStore, name: str) -> objects_pb2.PodCondition | None:
    return find_condition(store.get("pods", "default", name).status.conditions, "PodScheduled")


def node_of(store: SQLiteStore, name: str) -> str:
    return store.get("pods", "default", name).spec.node_name


def attempts(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("scheduler_schedule_attempts_total", {"result": result})


async def test_pod_waits_for_a_node_then_binds(cluster):
    store, _, registry = cluster
    await store.create("pods", new_pod("web", cpu="100m"))
    await wait_for(lambda: scheduled_condition(store, "web") is not None)
    condition = scheduled_condition(store, "web")
    assert (condition.status, condition.reason, condition.message) == (
        "False",
        "Unschedulable",
        "no nodes available to schedule pods",
    )

    await store.create("nodes", new_node("n1"))
    await wait_for(lambda: node_of(store, "web") == "n1")
    condition = scheduled_condition(store, "web")
    assert (condition.status, condition.reason, condition.message) == ("True", "", "")
    # The binder counts a bind once its write has returned: after the store shows it.
    await wait_for(lambda: attempts(registry, "scheduled") == 1)
    assert attempts(registry, "unschedulable") == 1  # its own status write did not retrigger it
    assert registry.get_sample_value("scheduler_pending_pods", {"queue": "unschedulable"}) == 0


async def test_oversized_pod_reports_why_and_retries_when_room_frees(cluster):
    store, _, _ = cluster
    await store.create("nodes", new_node("n1", cpu="2"))
    await store.create("pods", new_pod("big", cpu="1500m"))
    await wait_for(lambda: node_of(store, "big") == "n1")
    await store.create("pods", new_pod("web", cpu="1"))
    await wait_for(lambda: scheduled_condition(store, "web") is not None)
    assert scheduled_condition(store, "web").message == "0/1 nodes are available: 1 Insufficient cpu."

    await store.delete("pods", "default", "big")
    await wait_for(lambda: node_of(store, "web") == "n1")


async def test_no_overcommit_when_pods_arrive_together(cluster):
    store, _, registry = cluster
    await store.create("nodes", new_node("n1", cpu="2"))
    for i in range(3):
        await store.create("pods", new_pod(f"p{i}", cpu="1"))
    await wait_for(
        lambda: registry.get_sample_value("scheduler_pending_pods", {"queue": "unschedulable"}) == 1
    )
    # The binds are written by the binder, and counted once written.
    await wait_for(lambda: attempts(registry, "scheduled") == 2)
    bound = [name for name in ("p0", "p1", "p2") if node_of(store, name)]
    assert len(bound) == 2


async def test_cordoned_and_not_ready_nodes_get_nothing_until_they_change(cluster):
    store, _, _ = cluster
    await store.create("nodes", new_node("n1", unschedulable=True))
    await store.create("nodes", new_node("n2", ready="Unknown"))
    await store.create("pods", new_pod("web"))
    await wait_for(lambda: scheduled_condition(store, "web") is not None)
    assert scheduled_condition(store, "web").message == (
        "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
    )

    def uncordon(node: objects_pb2.Node) -> objects_pb2.Node:
        node.spec.unschedulable = False
        return node

    await store.mutate("nodes", "", "n1", uncordon)
    await wait_for(lambda: node_of(store, "web") == "n1")


async def test_bound_and_deleting_pods_are_left_alone(cluster):
    store, _, registry = cluster
    await store.create("nodes", new_node("n1"))
    await store.create("pods", new_pod("pinned", node_name="elsewhere"))
    deleting = new_pod("leaving")
    deleting.metadata.deletion_timestamp.seconds = int(time.time())
    await store.create("pods", deleting)
    await store.create("pods", new_pod("web"))
    await wait_for(lambda: node_of(store, "web") == "n1")
    assert node_of(store, "pinned") == "elsewhere"
    assert node_of(store, "leaving") == ""
    await wait_for(lambda: attempts(registry, "scheduled") == 1)


async def test_scheduler_picks_up_pending_pods_at_start(tmp_path):
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    await store.create("nodes", new_node("n1"))
    await store.create("pods", new_pod("web"))
    scheduler = Scheduler(Registry(store, NodeLeases(40)), MasterMetrics(CollectorRegistry()))
    await scheduler.start()
    try:
        await wait_for(lambda: node_of(store, "web") == "n1")
    finally:
        await scheduler.stop()
        await store.close()


# ---- events ----


def events_about(store: SQLiteStore, pod: str, reason: str) -> list[objects_pb2.Event]:
    events, _ = store.list("events")
    return [e for e in events if (e.involved_object.name, e.reason) == (pod, reason)]


async def test_a_scheduled_pod_gets_a_scheduled_event(cluster):
    store, _, _ = cluster
    await store.create("nodes", new_node("n1"))
    pod = await store.create("pods", new_pod("web"))
    await wait_for(lambda: len(events_about(store, "web", "Scheduled")) == 1)
    [event] = events_about(store, "web", "Scheduled")
    assert (event.type, event.count) == ("Normal", 1)
    assert event.message == "Successfully assigned default/web to n1"
    assert (event.source.component, event.reporting_component) == ("default-scheduler", "default-scheduler")
    involved = event.involved_object
    assert (involved.kind, involved.namespace, involved.name, involved.uid) == (
        "Pod", "default", "web", pod.metadata.uid
    )
    assert event.metadata.namespace == "default"
    assert events_about(store, "web", "FailedScheduling") == []


async def test_an_unschedulable_pod_gets_failed_scheduling_events_folded_per_attempt(cluster):
    store, _, registry = cluster
    await store.create("nodes", new_node("n1", cpu="2"))
    await store.create("pods", new_pod("big", cpu="3"))
    message = "0/1 nodes are available: 1 Insufficient cpu."

    def failed() -> list[objects_pb2.Event]:
        return [e for e in events_about(store, "big", "FailedScheduling") if e.message == message]

    await wait_for(lambda: len(failed()) == 1 and failed()[0].count == 1)
    [event] = failed()
    assert (event.type, event.source.component) == ("Warning", "default-scheduler")
    attempts_before = attempts(registry, "unschedulable")

    def relabel(node: objects_pb2.Node) -> objects_pb2.Node:
        node.metadata.labels["zone"] = "b"  # a change that may help: the pod is tried again
        return node

    await store.mutate("nodes", "", "n1", relabel)
    await wait_for(lambda: failed()[0].count == 2)
    [folded] = failed()  # one event, its count grown
    assert folded.metadata.uid == event.metadata.uid
    assert folded.last_timestamp.seconds >= event.last_timestamp.seconds
    assert attempts(registry, "unschedulable") == attempts_before + 1
    assert node_of(store, "big") == ""


# ---- gates, priority, batched binds ----


async def test_gated_pod_waits_with_scheduling_gated_until_the_gate_goes(cluster):
    store, _, registry = cluster
    await store.create("nodes", new_node("n1"))
    gated = new_pod("gated")
    gated.spec.scheduling_gates.add(name="example.com/approval")
    await store.create("pods", gated)
    await wait_for(lambda: scheduled_condition(store, "gated") is not None)
    condition = scheduled_condition(store, "gated")
    assert (condition.status, condition.reason, condition.message) == (
        "False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
    assert registry.get_sample_value("scheduler_pending_pods", {"queue": "gated"}) == 1
    assert node_of(store, "gated") == ""

    def ungate(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        del pod.spec.scheduling_gates[:]
        return pod

    await store.mutate("pods", "default", "gated", ungate)
    await wait_for(lambda: node_of(store, "gated") == "n1")
    assert registry.get_sample_value("scheduler_pending_pods", {"queue": "gated"}) == 0


async def test_higher_priority_pod_takes_the_freed_room(cluster):
    store, _, _ = cluster
    await store.create("nodes", new_node("n1", cpu="2"))
    await store.create("pods", new_pod("hog", cpu="2"))
    await wait_for(lambda: node_of(store, "hog") == "n1")
    low, high = new_pod("low", cpu="1500m"), new_pod("high", cpu="1500m")
    high.spec.priority = 1000
    await store.create("pods", low)
    await store.create("pods", high)
    await wait_for(lambda: all(scheduled_condition(store, n) is not None for n in ("low", "high")))
    await asyncio.sleep(1.1)  # the documented 1 s back-off of both, so priority alone decides
    await store.delete("pods", "default", "hog")
    await wait_for(lambda: node_of(store, "high") == "n1")
    assert node_of(store, "low") == ""


async def test_many_pods_bound_in_batches_without_overcommit(cluster):
    store, _, registry = cluster
    await store.create("nodes", new_node("n1", cpu="2"))
    await store.create("nodes", new_node("n2", cpu="2"))
    await asyncio.gather(*(store.create("pods", new_pod(f"p{i}", cpu="100m")) for i in range(45)))
    await wait_for(lambda: attempts(registry, "scheduled") == 40)
    placed = [node_of(store, f"p{i}") for i in range(45)]
    assert sorted(n for n in placed if n) == ["n1"] * 20 + ["n2"] * 20
    batches = registry.get_sample_value("scheduler_binding_batch_size_count")
    assert batches < 40  # several binds shared a transaction
