"""The ReplicaSet controller against a real SQLiteStore and registry (no agent: pods stay
unscheduled unless a test binds them, and the tests set their phase and readiness through the
store): creation in slow-start batches, scale down by kube's ActivePods order, adoption and
release, status (ready, available after minReadySeconds, ReplicaFailure) and events; plus the
pure helpers of replicaset_pods."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp
from pymaster.api.errors import ValidationError
from pymaster.api.workloads import NAME_ALPHABET, controller_of, generate_name
from pymaster.controllers.informer import InformerFactory
from pymaster.controllers.replicaset import ReplicaSetController
from pymaster.controllers.replicaset_pods import (
    deletion_order,
    is_available,
    next_available_in,
)
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 5.0


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def replica_set(name: str, replicas: int = 3, app: str | None = None,
                min_ready: int = 0) -> objects_pb2.ReplicaSet:
    rs = objects_pb2.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.namespace = "default"
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = min_ready
    rs.spec.selector.match_labels["app"] = app or name
    rs.spec.template.metadata.labels["app"] = app or name
    rs.spec.template.metadata.labels["tier"] = "web"
    rs.spec.template.spec.containers.add(name="c", image="pykube/busybox:1.35")
    return rs


def bare_pod(name: str, labels: dict[str, str]) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    pod.metadata.labels.update(labels)
    pod.spec.containers.add(name="c", image="pykube/busybox:1.35")
    return pod


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield Registry(store, NodeLeases(40.0))
    await store.close()


@pytest.fixture
async def controller(registry: Registry) -> AsyncIterator[ReplicaSetController]:
    factory = InformerFactory(registry.store)
    rsc = ReplicaSetController(registry, factory)
    factory.start()
    await rsc.start()
    yield rsc
    await rsc.stop()
    await factory.stop()


def pods_of(registry: Registry, rs: objects_pb2.ReplicaSet,
            active_only: bool = True) -> list[objects_pb2.Pod]:
    pods, _ = registry.store.list("pods")
    return [p for p in pods if (ref := controller_of(p)) is not None and ref.uid == rs.metadata.uid
            and not (active_only and p.metadata.HasField("deletion_timestamp"))]


def events(registry: Registry, reason: str) -> list[objects_pb2.Event]:
    items, _ = registry.store.list("events")
    return [e for e in items if e.reason == reason]


async def set_pod_state(registry: Registry, pod: objects_pb2.Pod, phase: str,
                        ready_at: float | None) -> None:
    def change(current: objects_pb2.Pod) -> objects_pb2.Pod:
        current.status.phase = phase
        if ready_at is not None:
            current.status.conditions.add(type="Ready", status="True",
                                          last_transition_time=timestamp(ready_at))
        return current

    await registry.store.mutate("pods", pod.metadata.namespace, pod.metadata.name, change)


def status(registry: Registry, name: str) -> objects_pb2.ReplicaSetStatus:
    return registry.replica_sets.get("default", name).status


async def test_creates_replicas_with_owner_references_events_and_status(registry, controller):
    rs = await registry.replica_sets.create(replica_set("web", replicas=3))
    await wait_until(lambda: len(pods_of(registry, rs)) == 3 and status(registry, "web").replicas == 3)
    pods = pods_of(registry, rs)
    for pod in pods:
        assert pod.metadata.name.startswith("web-") and len(pod.metadata.name) == len("web-") + 5
        assert set(pod.metadata.name[4:]) <= set(NAME_ALPHABET)
        ref = controller_of(pod)
        assert (ref.kind, ref.api_version, ref.name) == ("ReplicaSet", "apps/v1", "web")
        assert ref.block_owner_deletion
        assert pod.metadata.labels["tier"] == "web"
        assert pod.spec.restart_policy == "Always"  # created through the pod rules (defaults)
    st = status(registry, "web")
    assert (st.fully_labeled_replicas, st.ready_replicas, st.available_replicas) == (3, 0, 0)
    assert st.observed_generation == 1
    await wait_until(lambda: len(events(registry, "SuccessfulCreate")) == 3)
    assert {e.message for e in events(registry, "SuccessfulCreate")} == {f"Created pod: {p.metadata.name}"
                                                                          for p in pods}
    assert all(e.source.component == "replicaset-controller" for e in events(registry, "SuccessfulCreate"))


async def test_replaces_a_deleted_pod_and_never_overshoots(registry, controller):
    rs = await registry.replica_sets.create(replica_set("api", replicas=2))
    await wait_until(lambda: len(pods_of(registry, rs)) == 2)
    victim = pods_of(registry, rs)[0]
    await registry.pods.delete("default", victim.metadata.name)
    await wait_until(lambda: len(pods_of(registry, rs)) == 2
                     and victim.metadata.name not in {p.metadata.name for p in pods_of(registry, rs)})
    await asyncio.sleep(0.2)  # give a wrong extra create the time to show
    assert len(pods_of(registry, rs)) == 2


async def test_scale_down_deletes_the_least_valuable_pods_first(registry, controller):
    rs = await registry.replica_sets.create(replica_set("db", replicas=3))
    await wait_until(lambda: len(pods_of(registry, rs)) == 3)
    keep = pods_of(registry, rs)[0]
    await set_pod_state(registry, keep, "Running", time.time() - 10)
    await registry.replica_sets.scale("default", "db", 1)
    await wait_until(lambda: len(pods_of(registry, rs)) == 1)
    assert pods_of(registry, rs)[0].metadata.name == keep.metadata.name
    await wait_until(lambda: (status(registry, "db").replicas,
                              status(registry, "db").ready_replicas) == (1, 1))
    assert status(registry, "db").observed_generation == 2
    await wait_until(lambda: len(events(registry, "SuccessfulDelete")) == 2)


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching(registry, controller):
    orphan = await registry.pods.create(bare_pod("stray", {"app": "cache"}))
    other = await registry.pods.create(bare_pod("other", {"app": "else"}))
    rs = await registry.replica_sets.create(replica_set("cache", replicas=2))
    await wait_until(lambda: len(pods_of(registry, rs)) == 2)
    names = {p.metadata.name for p in pods_of(registry, rs)}
    assert "stray" in names  # adopted: only one pod created
    assert controller_of(registry.pods.get("default", "other")) is None
    assert other.metadata.uid
    relabelled = objects_pb2.Pod()
    relabelled.CopyFrom(registry.pods.get("default", "stray"))
    relabelled.metadata.labels["app"] = "gone"
    await registry.pods.update(relabelled)
    await wait_until(lambda: len(pods_of(registry, rs)) == 2 and "stray" not in
                     {p.metadata.name for p in pods_of(registry, rs)})
    assert controller_of(registry.pods.get("default", "stray")) is None
    assert orphan.metadata.uid == registry.pods.get("default", "stray").metadata.uid


async def test_available_after_min_ready_seconds(registry, controller):
    rs = await registry.replica_sets.create(replica_set("slow", replicas=1, min_ready=1))
    await wait_until(lambda: len(pods_of(registry, rs)) == 1)
    await set_pod_state(registry, pods_of(registry, rs)[0], "Running", time.time())
    await wait_until(lambda: status(registry, "slow").ready_replicas == 1)
    assert status(registry, "slow").available_replicas == 0
    await wait_until(lambda: status(registry, "slow").available_replicas == 1, timeout=5)


async def test_failed_creates_set_replica_failure_and_back_off(registry, controller, monkeypatch):
    calls = []
    real_create = registry.pods.create

    async def refuse(pod):
        calls.append(pod.metadata.name)
        raise ValidationError("spec.containers[0].image", "Required value")

    monkeypatch.setattr(registry.pods, "create", refuse)
    await registry.replica_sets.create(replica_set("bad", replicas=4))

    def failure():
        return find_condition(status(registry, "bad").conditions, "ReplicaFailure")

    await wait_until(lambda: failure() is not None)
    cond = failure()
    assert (cond.status, cond.reason) == ("True", "FailedCreate")
    assert "spec.containers[0].image: Required value" in cond.message
    await wait_until(lambda: len(events(registry, "FailedCreate")) >= 1)
    assert events(registry, "FailedCreate")[0].message.startswith("Error creating: spec.containers[0].image")
    await asyncio.sleep(0.5)
    assert len(calls) < 15  # slow start (one per sync) and back-off: no tight loop
    monkeypatch.setattr(registry.pods, "create", real_create)
    await wait_until(lambda: status(registry, "bad").replicas == 4 and failure() is None, timeout=10)


async def test_replica_set_marked_for_deletion_is_not_managed(registry, controller):
    rs = await registry.replica_sets.create(replica_set("gone", replicas=2))
    await wait_until(lambda: len(pods_of(registry, rs)) == 2)
    await registry.replica_sets.delete_propagating("default", "gone", "Orphan")
    await registry.pods.delete("default", pods_of(registry, rs)[0].metadata.name)
    await asyncio.sleep(0.3)
    assert len(pods_of(registry, rs)) == 1  # no replacement while the ReplicaSet is going


# ---- pure helpers ----


def ranked_pod(name, node="", phase="Pending", ready_at=None, restarts=0, created=100):
    pod = bare_pod(name, {})
    pod.spec.node_name = node
    pod.status.phase = phase
    pod.metadata.creation_timestamp.seconds = created
    if ready_at is not None:
        pod.status.conditions.add(type="Ready", status="True", last_transition_time=timestamp(ready_at))
    pod.status.container_statuses.add(name="c", restart_count=restarts)
    return pod


@pytest.mark.parametrize("first, second", [
    (ranked_pod("unscheduled"), ranked_pod("scheduled", node="n1")),
    (ranked_pod("pending", node="n1"), ranked_pod("running", node="n2", phase="Running")),
    (ranked_pod("unknown", node="n1", phase="Unknown"), ranked_pod("running", node="n2", phase="Running")),
    (ranked_pod("not-ready", node="n1", phase="Running"),
     ranked_pod("ready", node="n2", phase="Running", ready_at=5)),
    (ranked_pod("ready-later", node="n1", phase="Running", ready_at=50),
     ranked_pod("ready-earlier", node="n2", phase="Running", ready_at=10)),
    (ranked_pod("restarts", node="n1", phase="Running", restarts=3),
     ranked_pod("steady", node="n2", phase="Running")),
    (ranked_pod("newer", node="n1", created=200), ranked_pod("older", node="n2", created=100)),
])
def test_deletion_order_puts_the_least_valuable_first(first, second):
    ordered = deletion_order([second, first])
    assert [p.metadata.name for p in ordered] == [first.metadata.name, second.metadata.name]


def test_deletion_order_prefers_pods_doubled_up_on_a_node():
    a, b, c = (ranked_pod(n, node=node, phase="Running")
               for n, node in (("a", "n1"), ("b", "n1"), ("c", "n2")))
    assert deletion_order([c, a, b])[-1].metadata.name == "c"


def test_generate_name_keeps_within_63_characters():
    name = generate_name("x" * 80 + "-")
    assert len(name) == 63 and name.startswith("x" * 58)


def test_availability_and_the_wait_for_it():
    pod = ranked_pod("p", phase="Running", ready_at=100)
    assert is_available(pod, 0, 100) and not is_available(pod, 10, 105) and is_available(pod, 10, 110)
    assert next_available_in([pod], 10, 104) == pytest.approx(6)
    assert next_available_in([pod], 10, 111) is None
