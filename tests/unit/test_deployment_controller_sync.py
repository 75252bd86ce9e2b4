"""The Deployment controller against a real SQLite store and registry, with no ReplicaSet
controller: the tests play its part by writing the ReplicaSets' status (how many pods exist and
are available), so each step of a rollout is under their control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.errors import NotFound
from pymaster.controllers.deployment import DeploymentController
from pymaster.controllers.deployment_util import POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION
from pymaster.controllers.informer import InformerFactory
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 10.0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Registry, DeploymentController]]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    registry = Registry(store, NodeLeases(40))
    factory = InformerFactory(store)
    controller = DeploymentController(registry, factory)
    await controller.start()
    yield registry, controller
    await controller.stop()
    await factory.stop()
    await store.close()


def manifest(name: str, replicas: int = 3, image: str = "busybox:1", **strategy) -> objects_pb2.Deployment:
    d = objects_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = name, "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="c", image=image)
    if strategy.get("type") == "Recreate":
        d.spec.strategy.type = "Recreate"
    elif "surge" in strategy:
        d.spec.strategy.type = "RollingUpdate"
        d.spec.strategy.rolling_update.max_surge.int_value = strategy["surge"]
        d.spec.strategy.rolling_update.max_unavailable.int_value = strategy["unavailable"]
    if "history" in strategy:
        d.spec.revision_history_limit = strategy["history"]
    return d


def replica_sets(registry: Registry, deployment: str) -> dict[str, objects_pb2.ReplicaSet]:
    items, _ = registry.store.list("replicasets", "default")
    return {rs.metadata.name: rs for rs in items if rs.metadata.name.startswith(deployment + "-")}


async def eventually(check: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except NotFound:
            pass
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def run_pods(registry: Registry, rs: objects_pb2.ReplicaSet, available: int | None = None) -> None:
    """Plays the ReplicaSet controller and the kubelets: spec.replicas pods exist, ``available``
    of them (default all) available."""
    count = rs.spec.replicas if available is None else available

    def change(obj: objects_pb2.ReplicaSet) -> bool:
        obj.status.replicas = obj.spec.replicas
        obj.status.ready_replicas = obj.status.available_replicas = min(count, obj.spec.replicas)
        obj.status.observed_generation = obj.metadata.generation
        return True

    try:
        await registry.replica_sets.update_status("default", rs.metadata.name, rs.metadata.uid, change)
    except NotFound:
        pass  # the controller deleted it (history clean-up)


def condition(registry: Registry, name: str, type_: str) -> tuple[str, str]:
    found = find_condition(registry.deployments.get("default", name).status.conditions, type_)
    return (found.status, found.reason) if found else ("", "")


async def test_a_new_deployment_gets_a_hashed_replica_set_and_becomes_available(env) -> None:
    registry, _ = env
    await registry.deployments.create(manifest("web"))
    sets = await eventually(lambda: replica_sets(registry, "web"), "the replica set")
    (rs,) = sets.values()
    pod_hash = rs.metadata.labels[POD_TEMPLATE_HASH_LABEL]
    assert rs.metadata.name == f"web-{pod_hash}"
    assert rs.spec.replicas == 3 and rs.metadata.annotations[REVISION_ANNOTATION] == "1"
    assert rs.spec.selector.match_labels == {"app": "web", POD_TEMPLATE_HASH_LABEL: pod_hash}
    assert rs.spec.template.metadata.labels[POD_TEMPLATE_HASH_LABEL] == pod_hash
    assert rs.metadata.owner_references[0].kind == "Deployment" and rs.metadata.owner_references[0].controller
    await run_pods(registry, rs)
    await eventually(lambda: condition(registry, "web", "Progressing") == ("True", "NewReplicaSetAvailable"),
                     "the rollout to complete")
    d = registry.deployments.get("default", "web")
    assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas) == (3, 3, 3)
    assert condition(registry, "web", "Available") == ("True", "MinimumReplicasAvailable")
    assert find_condition(d.status.conditions, "Progressing").message == (
        f'ReplicaSet "{rs.metadata.name}" has successfully progressed.')
    events, _ = registry.store.list("events", "default")
    assert f"Scaled up replica set {rs.metadata.name} from 0 to 3" in [e.message for e in events]


async def test_rolling_update_steps_and_undo_reuses_the_old_replica_set(env) -> None:
    registry, _ = env
    await registry.deployments.create(manifest("roll", 4, surge=1, unavailable=1))
    (first,) = (await eventually(lambda: replica_sets(registry, "roll"), "the first rs")).values()
    await run_pods(registry, first)
    await eventually(lambda: condition(registry, "roll", "Progressing")[1] == "NewReplicaSetAvailable",
                     "the first rollout")
    await registry.deployments.update(manifest("roll", 4, image="busybox:2", surge=1, unavailable=1))
    # Play the pods: every RS's pods exist; the new ones become available one step at a time.
    for _ in range(100):
        sets = replica_sets(registry, "roll")
        total = sum(rs.spec.replicas for rs in sets.values())
        available = sum(rs.status.available_replicas for rs in sets.values())
        assert total <= 5 and available >= 3, (total, available)
        new = [rs for name, rs in sets.items() if name != first.metadata.name]
        if new and new[0].spec.replicas == 4 and new[0].status.available_replicas == 4 \
                and sets[first.metadata.name].spec.replicas == 0:
            break
        for rs in sets.values():
            if rs.status.replicas != rs.spec.replicas or rs.status.available_replicas < rs.spec.replicas:
                await run_pods(registry, rs, min(rs.status.available_replicas + 1, rs.spec.replicas))
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"rollout did not finish: {replica_sets(registry, 'roll')}")
    (second,) = new
    assert second.metadata.annotations[REVISION_ANNOTATION] == "2"
    # Undo: the first template again; the first ReplicaSet comes back with revision 3.
    await registry.deployments.update(manifest("roll", 4, surge=1, unavailable=1))
    await eventually(lambda: replica_sets(registry, "roll")[first.metadata.name].metadata.annotations[
        REVISION_ANNOTATION] == "3", "the old replica set to be reused")
    await eventually(lambda: replica_sets(registry, "roll")[first.metadata.name].spec.replicas > 0,
                     "the old replica set to scale up")
    assert len(replica_sets(registry, "roll")) == 2


async def test_recreate_waits_for_the_old_pods_before_the_new_replica_set(env) -> None:
    registry, _ = env
    await registry.deployments.create(manifest("re", 2, type="Recreate"))
    (first,) = (await eventually(lambda: replica_sets(registry, "re"), "the first rs")).values()
    await run_pods(registry, first)
    await registry.deployments.update(manifest("re", 2, image="busybox:2", type="Recreate"))
    await eventually(lambda: replica_sets(registry, "re")[first.metadata.name].spec.replicas == 0,
                     "the old replica set scaled down")
    await asyncio.sleep(0.2)  # a chance to do the wrong thing: the old pods still exist
    assert len(replica_sets(registry, "re")) == 1
    await run_pods(registry, replica_sets(registry, "re")[first.metadata.name])  # the old pods are gone
    sets = await eventually(lambda: len(replica_sets(registry, "re")) == 2 and replica_sets(registry, "re"),
                            "the new replica set")
    (new,) = [rs for name, rs in sets.items() if name != first.metadata.name]
    assert new.spec.replicas == 2


async def test_paused_deployment_does_not_roll_out_but_scales(env) -> None:
    registry, _ = env
    await registry.deployments.create(manifest("pause", 2))
    (first,) = (await eventually(lambda: replica_sets(registry, "pause"), "the first rs")).values()
    paused = manifest("pause", 2, image="busybox:2")
    paused.spec.paused = True
    await registry.deployments.update(paused)
    await eventually(lambda: condition(registry, "pause", "Progressing") == ("Unknown", "DeploymentPaused"),
                     "the paused condition")
    paused.spec.replicas = 5
    await registry.deployments.update(paused)
    await eventually(lambda: replica_sets(registry, "pause")[first.metadata.name].spec.replicas == 5,
                     "scaling")
    assert len(replica_sets(registry, "pause")) == 1
    paused.spec.paused = False
    await registry.deployments.update(paused)
    await eventually(lambda: len(replica_sets(registry, "pause")) == 2, "the rollout after resume")


async def test_history_beyond_the_limit_is_deleted(env) -> None:
    registry, _ = env
    await registry.deployments.create(manifest("hist", 1, history=1))
    for image in ("busybox:2", "busybox:3"):
        sets = await eventually(lambda: replica_sets(registry, "hist"), "replica sets")
        for rs in sets.values():
            await run_pods(registry, rs)
        await registry.deployments.update(manifest("hist", 1, image=image, history=1))
        await eventually(lambda img=image: any(rs.spec.template.spec.containers[0].image == img
                                               for rs in replica_sets(registry, "hist").values()), image)
    for _ in range(50):  # play the pods until the rollout ends
        for rs in replica_sets(registry, "hist").values():
            await run_pods(registry, rs)
        if len(replica_sets(registry, "hist")) == 2:
            break
        await asyncio.sleep(0.05)
    left = replica_sets(registry, "hist").values()
    images = sorted(rs.spec.template.spec.containers[0].image for rs in left)
    assert images == ["busybox:2", "busybox:3"]


async def test_an_orphan_replica_set_that_matches_is_adopted(env) -> None:
    registry, _ = env
    orphan = objects_pb2.ReplicaSet()
    orphan.metadata.name, orphan.metadata.namespace = "adopt-x", "default"
    orphan.metadata.labels["app"] = "adopt"
    orphan.spec.replicas = 0
    orphan.spec.selector.match_labels["app"] = "adopt"
    orphan.spec.template.metadata.labels["app"] = "adopt"
    orphan.spec.template.spec.containers.add(name="c", image="old")
    await registry.replica_sets.create(orphan)
    created = await registry.deployments.create(manifest("adopt"))
    await eventually(lambda: [ref.uid for ref in replica_sets(registry, "adopt")["adopt-x"].metadata
                              .owner_references] == [created.metadata.uid], "adoption")


async def test_a_rollout_without_progress_exceeds_its_deadline(env) -> None:
    registry, _ = env
    stuck = manifest("stuck", 2)
    stuck.spec.progress_deadline_seconds = 1
    await registry.deployments.create(stuck)
    await eventually(lambda: replica_sets(registry, "stuck"), "the replica set")
    # No pod ever becomes available: the controller comes back by itself after the deadline.
    deadline = time.monotonic() + DEADLINE
    while condition(registry, "stuck", "Progressing") != ("False", "ProgressDeadlineExceeded"):
        assert time.monotonic() < deadline, condition(registry, "stuck", "Progressing")
        await asyncio.sleep(0.05)
    d = registry.deployments.get("default", "stuck")
    rs_name = next(iter(replica_sets(registry, "stuck")))
    assert find_condition(d.status.conditions, "Progressing").message == (
        f'ReplicaSet "{rs_name}" has timed out progressing.')
    assert condition(registry, "stuck", "Available") == ("False", "MinimumReplicasUnavailable")
