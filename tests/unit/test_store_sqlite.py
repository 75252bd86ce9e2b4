"""SQLiteStore against real SQLite files: CRUD, resourceVersions, watches and durability."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import AlreadyExists, Conflict, NotFound, TooOld, Unavailable
from pymaster.store import open_store, sqlite_url
from pymaster.store.base import WatchEvent
from pymaster.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 5.0


def make_pod(name: str, namespace: str = "default", uid: str = "", image: str = "busybox") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.metadata.uid = uid or f"uid-{namespace}-{name}"
    pod.spec.containers.add(name="c", image=image)
    return pod


def make_node(name: str) -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.uid = f"uid-node-{name}"
    return node


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "pykube.db")
    await s.open()
    yield s
    await s.close()


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def next_event(watch) -> WatchEvent:
    return await asyncio.wait_for(anext(watch), DEADLINE)


async def take(watch, n: int) -> list[tuple[str, str, int]]:
    events = [await next_event(watch) for _ in range(n)]
    return [(e.type, e.object.metadata.name, e.resource_version) for e in events]


async def test_create_get_list(store: SQLiteStore) -> None:
    pod = make_pod("web")
    created = await store.create("pods", pod)

    assert created.metadata.resource_version == "1"
    assert pod.metadata.resource_version == ""  # the argument is not changed
    assert store.current_rv == 1
    got = store.get("pods", "default", "web")
    assert got == created

    # Reads are copies: changing them does not reach the store.
    got.spec.containers[0].image = "changed"
    created.metadata.labels["x"] = "y"
    assert store.get("pods", "default", "web").spec.containers[0].image == "busybox"
    assert "x" not in store.get("pods", "default", "web").metadata.labels

    await store.create("pods", make_pod("api", namespace="prod"))
    await store.create("pods", make_pod("db"))
    items, rv = store.list("pods")
    assert [(p.metadata.namespace, p.metadata.name) for p in items] == [
        ("default", "db"), ("default", "web"), ("prod", "api"),
    ]
    assert rv == 3
    items, _ = store.list("pods", "prod")
    assert [p.metadata.name for p in items] == ["api"]
    assert store.list("pods", "nowhere") == ([], 3)
    assert store.list("nodes") == ([], 3)


async def test_create_existing_raises_already_exists(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("web"))
    with pytest.raises(AlreadyExists, match='pods "web" already exists'):
        await store.create("pods", make_pod("web"))
    # Same name in another namespace, or another kind, is a different object.
    await store.create("pods", make_pod("web", namespace="other"))
    await store.create("nodes", make_node("web"))
    assert store.current_rv == 3


@pytest.mark.parametrize(
    "operation",
    ["get", "update", "mutate", "delete"],
)
async def test_missing_object_raises_not_found(store: SQLiteStore, operation: str) -> None:
    with pytest.raises(NotFound, match='pods "ghost" not found'):
        if operation == "get":
            store.get("pods", "default", "ghost")
        elif operation == "update":
            await store.update("pods", make_pod("ghost"))
        elif operation == "mutate":
            await store.mutate("pods", "default", "ghost", lambda pod: pod)
        else:
            await store.delete("pods", "default", "ghost")
    assert store.current_rv == 0


async def test_update_checks_resource_version(store: SQLiteStore) -> None:
    created = await store.create("pods", make_pod("web"))
    created.metadata.labels["app"] = "web"
    updated = await store.update("pods", created)
    assert updated.metadata.resource_version == "2"
    assert store.get("pods", "default", "web").metadata.labels["app"] == "web"

    # `created` still carries resourceVersion 1: a stale write.
    created.metadata.labels["app"] = "stale"
    with pytest.raises(Conflict, match='pods "web": the object has been modified; please apply'):
        await store.update("pods", created)
    assert store.get("pods", "default", "web").metadata.labels["app"] == "web"
    assert store.current_rv == 2


async def test_mutate(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("web"))

    def bind(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = "node-1"
        return pod

    bound = await store.mutate("pods", "default", "web", bind)
    assert bound.spec.node_name == "node-1"
    assert bound.metadata.resource_version == "2"
    assert store.get("pods", "default", "web") == bound


async def test_mutate_returning_none_writes_nothing(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("web"))

    def look_only(pod: objects_pb2.Pod) -> None:
        pod.spec.node_name = "changed-on-a-copy"

    current = await store.mutate("pods", "default", "web", look_only)
    assert current.spec.node_name == ""
    assert current.metadata.resource_version == "1"
    assert store.current_rv == 1


async def test_mutate_that_raises_writes_nothing(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("web"))

    def fail(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = "node-1"
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await store.mutate("pods", "default", "web", fail)
    assert store.get("pods", "default", "web").spec.node_name == ""
    assert store.current_rv == 1
    # The write lock was released.
    assert (await store.mutate("pods", "default", "web", lambda p: p)).metadata.resource_version == "2"


async def test_concurrent_mutates_do_not_lose_updates(store: SQLiteStore) -> None:
    created = await store.create("pods", make_pod("web"))

    def add_label(i: int):
        def fn(pod: objects_pb2.Pod) -> objects_pb2.Pod:
            pod.metadata.labels[f"l{i}"] = "x"
            return pod
        return fn

    results = await asyncio.gather(*(store.mutate("pods", "default", "web", add_label(i)) for i in range(20)))
    assert sorted(int(r.metadata.resource_version) for r in results) == list(range(2, 22))
    assert len(store.get("pods", "default", "web").metadata.labels) == 20
    assert created.metadata.uid == store.get("pods", "default", "web").metadata.uid


async def test_delete(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("web", uid="u1"))
    with pytest.raises(Conflict, match="UID in precondition: u2"):
        await store.delete("pods", "default", "web", uid="u2")

    deleted = await store.delete("pods", "default", "web", uid="u1")
    assert deleted.metadata.name == "web"
    assert deleted.metadata.resource_version == "2"
    assert store.current_rv == 2
    with pytest.raises(NotFound):
        store.get("pods", "default", "web")
    assert store.list("pods") == ([], 2)

    # The name is free again.
    assert (await store.create("pods", make_pod("web"))).metadata.resource_version == "3"


async def test_wrong_kind_or_type_is_rejected(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match='unknown kind "statefulsets"'):
        store.list("statefulsets")
    with pytest.raises(TypeError, match="pods must be Pod, not Node"):
        await store.create("pods", make_node("n1"))
    assert store.current_rv == 0


async def test_resource_versions_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "pykube.db"
    store = SQLiteStore(path)
    await store.open()
    rvs = [
        (await store.create("pods", make_pod("a"))).metadata.resource_version,
        (await store.create("nodes", make_node("n1"))).metadata.resource_version,
        (await store.create("pods", make_pod("b"))).metadata.resource_version,
        (await store.mutate("nodes", "", "n1", lambda n: n)).metadata.resource_version,
        (await store.delete("pods", "default", "b")).metadata.resource_version,
    ]
    assert rvs == ["1", "2", "3", "4", "5"]
    pod_a = store.get("pods", "default", "a")
    await store.close()
    with pytest.raises(Unavailable):
        store.get("pods", "default", "a")

    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        # The delete consumed rv 5 although the newest surviving object has rv 4.
        assert reopened.current_rv == 5
        assert reopened.get("pods", "default", "a") == pod_a
        assert reopened.get("nodes", "", "n1").metadata.resource_version == "4"
        assert [p.metadata.name for p in reopened.list("pods")[0]] == ["a"]
        assert (await reopened.create("pods", make_pod("c"))).metadata.resource_version == "6"
    finally:
        await reopened.close()


async def test_watch_replays_then_follows_in_order(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("a"))  # rv 1
    await store.create("pods", make_pod("b"))  # rv 2
    await store.create("nodes", make_node("n1"))  # rv 3: another kind, not in the pods watch
    await store.mutate("pods", "default", "a", lambda p: p)  # rv 4

    watch = store.watch("pods", 1)
    await store.delete("pods", "default", "b")  # rv 5
    await store.create("pods", make_pod("c"))  # rv 6

    assert await take(watch, 4) == [
        ("ADDED", "b", 2), ("MODIFIED", "a", 4), ("DELETED", "b", 5), ("ADDED", "c", 6),
    ]
    watch.close()


async def test_watch_deleted_event_carries_deletion_rv(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("a"))
    watch = store.watch("pods", store.current_rv)
    await store.delete("pods", "default", "a")
    event = await next_event(watch)
    assert (event.type, event.resource_version, event.object.metadata.resource_version) == ("DELETED", 2, "2")
    assert event.object.spec.containers[0].image == "busybox"
    watch.close()


async def test_watch_from_current_rv_gets_only_new_events(store: SQLiteStore) -> None:
    await store.create("pods", make_pod("a"))
    watch = store.watch("pods", store.current_rv)
    await store.create("pods", make_pod("b"))
    assert await take(watch, 1) == [("ADDED", "b", 2)]
    watch.close()


async def test_watch_close_ends_iteration(store: SQLiteStore) -> None:
    watch = store.watch("pods", 0)
    received: list[str] = []

    async def consume() -> None:
        async for event in watch:
            received.append(event.object.metadata.name)

    consumer = asyncio.ensure_future(consume())
    await store.create("pods", make_pod("a"))
    # Once it has the event, the consumer's only way on is to wait on the (now empty) watch.
    await wait_until(lambda: received == ["a"])
    assert not consumer.done()
    watch.close()
    await asyncio.wait_for(consumer, DEADLINE)  # the iteration ended, without an error
    assert received == ["a"]
    assert store.event_log.watcher_count() == 0


async def test_store_close_ends_watches(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    watch = store.watch("nodes", 0)
    await store.close()
    assert [event async for event in watch] == []
    with pytest.raises(Unavailable):
        store.watch("nodes", 0)


@pytest.mark.parametrize(
    ("history", "writes", "watch_from", "too_old"),
    [
        (3, 5, 1, True),
        (3, 5, 2, False),  # events 3, 4, 5 are all in the ring
        (3, 5, 5, False),
        (10, 5, 0, False),
    ],
)
async def test_watch_too_old_when_history_is_gone(
    tmp_path: Path, history: int, writes: int, watch_from: int, too_old: bool
) -> None:
    store = SQLiteStore(tmp_path / "pykube.db", history=history)
    await store.open()
    try:
        for i in range(writes):
            await store.create("pods", make_pod(f"p{i}"))
        if too_old:
            expected = rf"resourceVersion {watch_from} is too old \(oldest available 2\); list again"
            with pytest.raises(TooOld, match=expected):
                store.watch("pods", watch_from)
        else:
            watch = store.watch("pods", watch_from)
            assert [rv for _, _, rv in await take(watch, writes - watch_from)] == list(
                range(watch_from + 1, writes + 1)
            )
            watch.close()
    finally:
        await store.close()


async def test_watch_too_old_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "pykube.db"
    store = SQLiteStore(path)
    await store.open()
    for i in range(3):
        await store.create("pods", make_pod(f"p{i}"))
    await store.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        with pytest.raises(TooOld, match=r"resourceVersion 2 is too old \(oldest available 3\); list again"):
            store.watch("pods", 2)
        watch = store.watch("pods", 3)
        await store.create("pods", make_pod("p3"))
        assert await take(watch, 1) == [("ADDED", "p3", 4)]
        watch.close()
    finally:
        await store.close()


async def test_slow_watcher_overflows_with_too_old(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "pykube.db", watch_queue_size=2)
    await store.open()
    try:
        slow = store.watch("pods", 0)
        fast = store.watch("pods", 0)
        for i in range(4):
            # Writers never wait for the slow watcher.
            await asyncio.wait_for(store.create("pods", make_pod(f"p{i}")), DEADLINE)
            assert (await take(fast, 1))[0][2] == i + 1
        with pytest.raises(TooOld, match="fell behind"):
            await next_event(slow)
        with pytest.raises(TooOld):
            await next_event(slow)
        assert store.event_log.watcher_count() == 1
        fast.close()
    finally:
        await store.close()


async def test_cancelled_writer_still_commits_in_order(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the first commit on the writer thread, so the caller is cancelled mid-commit.
    committing, release = threading.Event(), threading.Event()
    commit_sync = store._commit_batch_sync

    def held_commit(*args: object) -> None:
        committing.set()
        assert release.wait(DEADLINE)
        commit_sync(*args)

    monkeypatch.setattr(store, "_commit_batch_sync", held_commit)
    write = asyncio.ensure_future(store.create("pods", make_pod("a")))
    assert await asyncio.to_thread(committing.wait, DEADLINE)
    write.cancel()
    second = asyncio.ensure_future(store.create("pods", make_pod("b")))
    release.set()
    created = await asyncio.wait_for(second, DEADLINE)
    assert write.cancelled()
    assert created.metadata.resource_version == "2"
    assert store.get("pods", "default", "a").metadata.resource_version == "1"


async def test_open_store_creates_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "master"
    store = open_store(sqlite_url(data_dir))
    await store.open()
    try:
        await store.create("nodes", make_node("n1"))
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(data_dir / "pykube.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    "url",
    ["sqlite://relative/pykube.db", "sqlite:relative.db", "etcd://127.0.0.1:2379", "/plain/path"],
)
def test_open_store_refuses_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        open_store(url)


def test_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "pykube.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from pymaster.api import objects_pb2
        from pymaster.store.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore({str(path)!r})
            await store.open()
            pod = objects_pb2.Pod()
            pod.metadata.name = "survivor"
            pod.metadata.namespace = "default"
            await store.create("pods", pod)
            print("ok", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
    assert result.returncode == -9

    async def check() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            assert store.get("pods", "default", "survivor").metadata.resource_version == "1"
            assert store.current_rv == 1
        finally:
            await store.close()

    asyncio.run(check())


async def test_second_store_on_the_same_file_is_refused(tmp_path):
    first = SQLiteStore(tmp_path / "pykube.db")
    await first.open()
    second = SQLiteStore(tmp_path / "pykube.db")
    with pytest.raises(OSError, match="held by another pymaster"):
        await second.open()
    await first.close()
    await second.open()  # released on close
    await second.close()
