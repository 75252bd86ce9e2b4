"""Informer against a real SQLiteStore: list + watch, handlers, indexes kept right, the relist's
diff after the watch falls behind (TooOld), and the shared InformerFactory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.controllers.informer import (
    Informer,
    InformerFactory,
    by_controller_uid,
    by_namespace,
    by_node_name,
    by_owner_uids,
    object_key,
    split_key,
)
from pymaster.controllers.runtime import Controller
from pymaster.store.cache import copy_message
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 5.0
CM = "configmaps"


def config_map(name: str, namespace: str = "default", owners: tuple[tuple[str, bool], ...] = ()):
    cm = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = name
    cm.metadata.namespace = namespace
    cm.metadata.uid = f"uid-{namespace}-{name}"
    for uid, controller in owners:
        ref = cm.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name=uid, uid=uid)
        if controller:
            ref.controller = True
    return cm


def names(objects) -> list[str]:
    return sorted(object_key(obj) for obj in objects)


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "pykube.db")
    await s.open()
    yield s
    await s.close()


class Recorder:
    """A handler keeping (event, key, resourceVersion) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, old, new) -> None:
        if old is None:
            self.calls.append(("add", object_key(new), new.metadata.resource_version))
        elif new is None:
            self.calls.append(("delete", object_key(old), old.metadata.resource_version))
        else:
            assert object_key(old) == object_key(new)
            self.calls.append(("update", object_key(new), new.metadata.resource_version))

    def events(self) -> list[tuple[str, str]]:
        return [(event, key) for event, key, _ in self.calls]


def test_keys() -> None:
    assert object_key(config_map("a", "ns")) == "ns/a"
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    assert object_key(node) == "n1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("n1") == ("", "n1")


def test_common_indexers() -> None:
    cm = config_map("a", "ns", owners=(("u1", False), ("u2", True)))
    assert by_namespace(cm) == ["ns"]
    assert by_controller_uid(cm) == ["u2"]
    assert by_owner_uids(cm) == ["u1", "u2"]
    assert by_controller_uid(config_map("b", owners=(("u1", False),))) == []
    pod = objects_pb2.Pod()
    assert by_node_name(pod) == []
    pod.spec.node_name = "node-a"
    assert by_node_name(pod) == ["node-a"]


async def test_lists_then_follows_the_watch(store: SQLiteStore) -> None:
    await store.create(CM, config_map("a", "ns1"))
    await store.create(CM, config_map("b", "ns2"))
    informer = Informer(store, CM)
    seen = Recorder()
    informer.add_handler(seen)
    informer.start()
    try:
        assert informer.has_synced.is_set()
        assert seen.events() == [("add", "ns1/a"), ("add", "ns2/b")]
        assert names(informer.list()) == ["ns1/a", "ns2/b"]
        assert names(informer.list("ns1")) == ["ns1/a"]
        assert informer.list("nope") == []

        await store.create(CM, config_map("c", "ns1"))
        changed = copy_message(informer.get("ns1", "a"))
        changed.data["k"] = "v"
        updated = await store.update(CM, changed)
        await store.delete(CM, "ns2", "b")
        await wait_until(lambda: len(seen.calls) == 5)
        assert seen.events()[2:] == [("add", "ns1/c"), ("update", "ns1/a"), ("delete", "ns2/b")]
        assert informer.get("ns1", "a").data["k"] == "v"
        assert informer.get("ns1", "a").metadata.resource_version == updated.metadata.resource_version
        assert informer.get("ns2", "b") is None
        assert informer.get_by_key("ns1/c") is not None
        assert len(informer) == 2
    finally:
        await informer.stop()


async def test_indexes_follow_updates_and_deletes(store: SQLiteStore) -> None:
    informer = Informer(store, CM, {"controller": by_controller_uid, "owners": by_owner_uids})
    informer.start()
    try:
        a = await store.create(CM, config_map("a", owners=(("rs1", True),)))
        await store.create(CM, config_map("b", owners=(("rs1", True), ("x", False))))
        await wait_until(lambda: len(informer) == 2)
        assert names(informer.by_index("controller", "rs1")) == ["default/a", "default/b"]
        assert names(informer.by_index("owners", "x")) == ["default/b"]

        released = copy_message(a)
        del released.metadata.owner_references[:]
        released.metadata.owner_references.add(kind="ReplicaSet", name="rs2", uid="rs2", controller=True)
        await store.update(CM, released)
        await wait_until(lambda: names(informer.by_index("controller", "rs2")) == ["default/a"])
        assert names(informer.by_index("controller", "rs1")) == ["default/b"]

        await store.delete(CM, "default", "b")
        await wait_until(lambda: len(informer) == 1)
        assert informer.by_index("controller", "rs1") == []
        assert informer.by_index("owners", "x") == []

        informer.add_indexer("namespace", by_namespace)  # added late: indexes what is held
        assert names(informer.by_index("namespace", "default")) == ["default/a"]
        with pytest.raises(KeyError, match='no index "nodes"'):
            informer.by_index("nodes", "node-a")
    finally:
        await informer.stop()


async def test_a_relist_after_too_old_gives_handlers_the_diff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A watcher may hold one undelivered event: a transaction of several writes overflows it, the
    # watch ends with TooOld, and the informer must relist.
    store = SQLiteStore(tmp_path / "pykube.db", watch_queue_size=1)
    await store.open()
    try:
        for name in ("a", "b", "c", "keep"):
            await store.create(CM, config_map(name))
        informer = Informer(store, CM, {"controller": by_controller_uid})
        seen = Recorder()
        informer.add_handler(seen)
        informer.start()
        seen.calls.clear()

        def own(cm):
            cm.metadata.owner_references.add(kind="ReplicaSet", name="rs", uid="rs", controller=True)
            return cm

        with caplog.at_level(logging.INFO, "pymaster.controllers.informer"):
            await asyncio.gather(
                store.delete(CM, "default", "a"),
                store.create(CM, config_map("d")),
                store.mutate_many(CM, [("default", "b", own), ("default", "c", own)]),
            )
            await wait_until(lambda: len(seen.calls) >= 4 and len(informer) == 4)
            await asyncio.sleep(0.05)  # no late duplicates either
        assert "informer relisting resource=configmaps" in caplog.text
        assert sorted(seen.events()) == [
            ("add", "default/d"), ("delete", "default/a"), ("update", "default/b"), ("update", "default/c"),
        ]
        assert names(informer.list()) == ["default/b", "default/c", "default/d", "default/keep"]
        assert names(informer.by_index("controller", "rs")) == ["default/b", "default/c"]
        for key in ("default/b", "default/c", "default/d", "default/keep"):
            assert informer.get_by_key(key).metadata.resource_version == store.get(
                CM, *split_key(key)).metadata.resource_version

        # After the relist the informer follows the watch again.
        await store.delete(CM, "default", "keep")
        await wait_until(lambda: ("delete", "default/keep") in seen.events())
        await informer.stop()
    finally:
        await store.close()


async def test_a_failing_handler_does_not_stop_the_others(store: SQLiteStore) -> None:
    informer = Informer(store, CM)

    def broken(old, new) -> None:
        raise RuntimeError("handler bug")

    seen = Recorder()
    informer.add_handler(broken)
    informer.add_handler(seen)
    informer.start()
    try:
        await store.create(CM, config_map("a"))
        await store.create(CM, config_map("b"))
        await wait_until(lambda: len(seen.calls) == 2)
    finally:
        await informer.stop()


async def test_run_returns_when_the_store_closes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    informer = Informer(store, CM)
    task = asyncio.ensure_future(informer.run())
    await wait_until(informer.has_synced.is_set)
    await store.close()
    await asyncio.wait_for(task, DEADLINE)


async def test_the_factory_shares_one_informer_per_kind_and_replays_to_late_handlers(
    store: SQLiteStore,
) -> None:
    await store.create(CM, config_map("a", owners=(("rs1", True),)))
    factory = InformerFactory(store)
    first = factory.informer(CM, {"controller": by_controller_uid})
    assert factory.informer(CM, {"owners": by_owner_uids}) is first
    with pytest.raises(ValueError, match='index "controller" already exists'):
        factory.informer(CM, {"controller": by_owner_uids})
    factory.start()
    try:
        assert names(first.by_index("owners", "rs1")) == ["default/a"]
        late = Recorder()
        first.add_handler(late)
        assert late.events() == [("add", "default/a")]
    finally:
        await factory.stop()


async def test_a_controller_syncs_the_keys_its_informer_reports(store: SQLiteStore) -> None:
    await store.create(CM, config_map("before"))

    class Mirror(Controller):
        """Records, per sync, the key and whether its informer holds the object."""

        name = "mirror"

        def __init__(self) -> None:
            super().__init__(store=store)
            self.maps = self.informer(CM)
            self.maps.add_handler(lambda old, new: self.enqueue(new or old))
            self.synced: list[tuple[str, bool]] = []

        async def sync(self, key: str) -> None:
            self.synced.append((key, self.maps.get_by_key(key) is not None))

    controller = Mirror()
    await controller.start()
    try:
        await wait_until(lambda: controller.synced == [("default/before", True)])
        await store.create(CM, config_map("after"))
        await wait_until(lambda: ("default/after", True) in controller.synced)
        await store.delete(CM, "default", "before")
        await wait_until(lambda: ("default/before", False) in controller.synced)
    finally:
        await controller.stop()
    assert not controller.maps.running  # its private informer stopped with it
