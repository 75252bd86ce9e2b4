"""The garbage collector against a real SQLiteStore and registry (no agent: a pod bound to a
registered node stays terminating until the test confirms its end, as an agent would):
background, foreground (the owner waits for its dependents, down a Deployment -> ReplicaSet ->
pod chain) and orphan deletion, partly gone owners, owners of unknown kinds, and the check of
every object at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.api.workloads import controller_reference
from pymaster.controllers.garbage_collector import GarbageCollector, item_key, split_item
from pymaster.controllers.informer import InformerFactory
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.registry.workloads import FOREGROUND_FINALIZER
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 5.0


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def exists(registry: Registry, resource: str, name: str) -> bool:
    try:
        registry.of(resource).get("default", name)
    except NotFound:
        return False
    return True


def replica_set(name: str, owner: objects_pb2.Deployment | None = None) -> objects_pb2.ReplicaSet:
    rs = objects_pb2.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.namespace = "default"
    rs.spec.replicas = 1
    rs.spec.selector.match_labels["app"] = name
    rs.spec.template.metadata.labels["app"] = name
    rs.spec.template.spec.containers.add(name="c", image="pykube/busybox:1.35")
    if owner is not None:
        rs.metadata.owner_references.append(controller_reference(owner))
    return rs


def deployment(name: str) -> objects_pb2.Deployment:
    d = objects_pb2.Deployment()
    d.metadata.name = name
    d.metadata.namespace = "default"
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="c", image="pykube/busybox:1.35")
    return d


def pod(name: str, *owners: objects_pb2.OwnerReference) -> objects_pb2.Pod:
    p = objects_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = "default"
    p.metadata.owner_references.extend(owners)
    p.spec.containers.add(name="c", image="pykube/busybox:1.35")
    return p


def config_map(name: str, *owners: objects_pb2.OwnerReference) -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = name
    cm.metadata.namespace = "default"
    cm.metadata.owner_references.extend(owners)
    return cm


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield Registry(store, NodeLeases(40.0))
    await store.close()


@pytest.fixture
async def start_gc(registry: Registry):
    started: list[tuple[GarbageCollector, InformerFactory]] = []

    async def start() -> GarbageCollector:
        factory = InformerFactory(registry.store)
        gc = GarbageCollector(registry, factory)
        factory.start()
        await gc.start()
        started.append((gc, factory))
        return gc

    yield start
    for gc, factory in started:
        await gc.stop()
        await factory.stop()


async def bound_pod(registry: Registry, name: str, owner) -> objects_pb2.Pod:
    """A pod bound to a registered node: its deletion waits for the "agent" (the test)."""
    try:
        registry.nodes.get("", "node-a")
    except NotFound:
        node = objects_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = "node-a"
        await registry.store.create("nodes", node)
    created = await registry.pods.create(pod(name, controller_reference(owner)))
    return await registry.pods.bind(created, "node-a")


async def terminate(registry: Registry, name: str) -> None:
    """What the agent does once a pod marked for deletion stopped."""
    p = registry.pods.get("default", name)
    assert p.metadata.HasField("deletion_timestamp")
    assert await registry.pods.confirm_terminated("default", name, p.metadata.uid)


def test_item_keys_round_trip():
    cm = config_map("x")
    assert split_item(item_key("configmaps", cm)) == ("configmaps", "default", "x")


async def test_background_deletion_collects_dependents(registry, start_gc):
    await start_gc()
    rs = await registry.replica_sets.create(replica_set("bg"))
    await registry.pods.create(pod("bg-1", controller_reference(rs)))
    await registry.config_maps.create(config_map("bg-cm", controller_reference(rs)))
    await registry.replica_sets.delete_propagating("default", "bg", "Background")
    await wait_until(lambda: not exists(registry, "pods", "bg-1")
                     and not exists(registry, "configmaps", "bg-cm"))


async def test_foreground_deletion_waits_for_dependents_down_the_chain(registry, start_gc):
    await start_gc()
    d = await registry.deployments.create(deployment("fg"))
    rs = await registry.replica_sets.create(replica_set("fg-rs", owner=d))
    await bound_pod(registry, "fg-pod", rs)
    await registry.deployments.delete_propagating("default", "fg", "Foreground")
    # The ReplicaSet is deleted Foreground in turn; its pod is terminating.
    await wait_until(lambda: registry.pods.get("default", "fg-pod").metadata.HasField("deletion_timestamp"))
    marked = registry.replica_sets.get("default", "fg-rs")
    assert marked.metadata.HasField("deletion_timestamp")
    assert list(marked.metadata.finalizers) == [FOREGROUND_FINALIZER]
    await asyncio.sleep(0.2)
    assert exists(registry, "deployments", "fg") and exists(registry, "replicasets", "fg-rs")
    await terminate(registry, "fg-pod")
    await wait_until(lambda: not exists(registry, "replicasets", "fg-rs")
                     and not exists(registry, "deployments", "fg"))


async def test_orphan_deletion_removes_references_and_keeps_dependents(registry, start_gc):
    await start_gc()
    rs = await registry.replica_sets.create(replica_set("or"))
    other = await registry.replica_sets.create(replica_set("other"))
    await registry.pods.create(pod("or-1", controller_reference(rs)))
    second = controller_reference(other, block_owner_deletion=False)
    second.controller = False
    await registry.config_maps.create(config_map("or-cm", controller_reference(rs), second))
    await registry.replica_sets.delete_propagating("default", "or", "Orphan")
    await wait_until(lambda: not exists(registry, "replicasets", "or"))
    assert not registry.pods.get("default", "or-1").metadata.owner_references
    refs = registry.config_maps.get("default", "or-cm").metadata.owner_references
    assert [ref.name for ref in refs] == ["other"]


async def test_only_the_references_to_gone_owners_are_removed(registry, start_gc):
    await start_gc()
    a = await registry.replica_sets.create(replica_set("a"))
    b = await registry.replica_sets.create(replica_set("b"))
    ref_a = controller_reference(a)
    ref_b = controller_reference(b)
    ref_b.controller = False
    await registry.config_maps.create(config_map("shared", ref_a, ref_b))
    await registry.replica_sets.delete("default", "a")

    def owners() -> list[str]:
        return [r.name for r in registry.config_maps.get("default", "shared").metadata.owner_references]

    await wait_until(lambda: owners() == ["b"])
    await registry.replica_sets.delete("default", "b")
    await wait_until(lambda: not exists(registry, "configmaps", "shared"))


async def test_a_recreated_owner_with_another_uid_counts_as_gone(registry, start_gc):
    await start_gc()
    old = await registry.replica_sets.create(replica_set("again"))
    await registry.replica_sets.delete("default", "again")
    await registry.replica_sets.create(replica_set("again"))
    await registry.config_maps.create(config_map("stale", controller_reference(old)))
    await wait_until(lambda: not exists(registry, "configmaps", "stale"))
    assert exists(registry, "replicasets", "again")


async def test_owners_of_unknown_kinds_leave_the_dependent_alone(registry, start_gc):
    await start_gc()
    foreign = objects_pb2.OwnerReference(api_version="example.com/v1", kind="Widget", name="w", uid="u-1")
    await registry.config_maps.create(config_map("kept", foreign))
    gone = objects_pb2.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="nope", uid="u-2")
    await registry.config_maps.create(config_map("collected", gone))
    await wait_until(lambda: not exists(registry, "configmaps", "collected"))
    assert exists(registry, "configmaps", "kept")


async def test_every_object_is_checked_at_start(registry, start_gc):
    gone = objects_pb2.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="nope", uid="u-3",
                                      controller=True)
    await registry.config_maps.create(config_map("left-over", gone))
    rs = await registry.replica_sets.create(replica_set("pending-fg"))
    await registry.replica_sets.delete_propagating("default", "pending-fg", "Foreground")
    assert exists(registry, "replicasets", "pending-fg") and rs.metadata.uid
    await start_gc()
    await wait_until(lambda: not exists(registry, "configmaps", "left-over")
                     and not exists(registry, "replicasets", "pending-fg"))
