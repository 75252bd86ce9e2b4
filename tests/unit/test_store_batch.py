"""SQLiteStore.mutate_many: several read-modify-writes in one transaction, each with its own
resourceVersion and watch event, per-item errors that do not stop the others, and durability
(the batch is on disk when the call returns)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import AlreadyExists, NotFound
from pymaster.store.sqlite import SQLiteStore


def make_pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = name, "default", f"uid-{name}"
    pod.spec.containers.add(name="c", image="busybox")
    return pod


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "pykube.db")
    await s.open()
    yield s
    await s.close()


def bind_to(node: str):
    def bind(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = node
        return pod

    return bind


def refuse(pod: objects_pb2.Pod) -> objects_pb2.Pod:
    raise ValueError("no")


async def test_batch_writes_each_item_with_its_own_version(store: SQLiteStore, tmp_path: Path):
    for name in ("a", "b", "c", "d"):
        await store.create("pods", make_pod(name))
    before = store.current_rv
    watch = store.watch("pods", before)
    results = await store.mutate_many("pods", [
        ("default", "a", bind_to("n1")),
        ("default", "missing", bind_to("n1")),
        ("default", "b", refuse),
        ("default", "c", lambda pod: None),  # nothing to write
        ("default", "d", bind_to("n2")),
    ])
    assert results[0].spec.node_name == "n1" and results[0].metadata.resource_version == str(before + 1)
    assert isinstance(results[1], NotFound)
    assert isinstance(results[2], ValueError)
    assert results[3].metadata.name == "c" and not results[3].spec.node_name
    assert results[4].spec.node_name == "n2" and results[4].metadata.resource_version == str(before + 2)
    assert store.current_rv == before + 2
    events = [await asyncio.wait_for(anext(watch), 5) for _ in range(2)]
    assert [(e.type, e.object.metadata.name, e.resource_version) for e in events] == [
        ("MODIFIED", "a", before + 1), ("MODIFIED", "d", before + 2)]
    watch.close()
    # Durable: a fresh store on the same file reads the batch back.
    await store.close()
    reopened = SQLiteStore(tmp_path / "pykube.db")
    await reopened.open()
    try:
        assert reopened.get("pods", "default", "a").spec.node_name == "n1"
        assert reopened.get("pods", "default", "d").spec.node_name == "n2"
        assert reopened.current_rv == before + 2
    finally:
        await reopened.close()
        await store.open()  # the fixture closes it again


async def test_batch_with_nothing_to_write(store: SQLiteStore):
    await store.create("pods", make_pod("a"))
    rv = store.current_rv
    results = await store.mutate_many("pods", [("default", "a", lambda pod: None)])
    assert results[0].metadata.name == "a" and store.current_rv == rv
    assert await store.mutate_many("pods", []) == []


async def test_concurrent_writes_share_group_commits(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch):
    groups: list[int] = []
    commit = store._commit_batch_sync

    def counted(batch) -> None:
        groups.append(len(batch))
        commit(batch)

    monkeypatch.setattr(store, "_commit_batch_sync", counted)
    created = await asyncio.gather(*(store.create("pods", make_pod(f"p{i}")) for i in range(50)))
    assert sorted(int(p.metadata.resource_version) for p in created) == list(range(1, 51))
    assert sum(groups) == 50 and len(groups) < 50  # writes decided during a commit share the next
    # A decision sees the writes decided before it, committed or not.
    results = await asyncio.gather(store.create("pods", make_pod("x")), store.create("pods", make_pod("x")),
                                   return_exceptions=True)
    assert sum(isinstance(r, AlreadyExists) for r in results) == 1


async def test_failed_commit_fails_its_group_and_later_decisions(store: SQLiteStore,
                                                                 monkeypatch: pytest.MonkeyPatch):
    await store.create("pods", make_pod("a"))

    def broken(batch) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_commit_batch_sync", broken)
    results = await asyncio.gather(store.create("pods", make_pod("b")), store.create("pods", make_pod("c")),
                                   return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    monkeypatch.undo()
    again = await store.create("pods", make_pod("b"))  # nothing of the failed group is left
    assert again.metadata.resource_version == "2"
    with pytest.raises(NotFound):
        store.get("pods", "default", "c")
