"""What only the SQLite backend has: resourceVersions counted from 1, group commit with cancelled
writers, the data dir's lock, WAL, durability across kill -9, slow watchers. The contract every
backend keeps (CRUD, watches, TooOld, reopen, transformer) is tests/unit/test_store_contract.py."""

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
from pymaster.api.errors import TooOld
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
    [
        "sqlite://relative/pykube.db", "sqlite:relative.db", "etcd://127.0.0.1", "etcd://h:1/path",
        "/plain/path",
    ],
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


async def test_an_open_refused_by_the_transformer_releases_the_lock(tmp_path: Path) -> None:
    class Refuse:
        def to_storage(self, kind: str, namespace: str, name: str, data: bytes) -> bytes:
            return data

        def from_storage(self, kind: str, namespace: str, name: str, stored: bytes) -> bytes:
            raise ValueError(f"cannot read {kind} {namespace}/{name}")

    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    await store.create("nodes", make_node("n1"))
    await store.close()
    with pytest.raises(ValueError, match="^cannot read nodes /n1$"):
        await SQLiteStore(tmp_path / "pykube.db", transformer=Refuse()).open()
    again = SQLiteStore(tmp_path / "pykube.db")
    await again.open()
    await again.close()
