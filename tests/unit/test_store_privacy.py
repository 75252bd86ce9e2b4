"""The master's data stays its own: the data dir is 0700 and every file of the store (database,
WAL, shared memory, lock) 0600, whatever the umask, for a new store and for one made before."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from master_fixtures import start_master

from pymaster.api import objects_pb2
from pymaster.store.sqlite import SQLiteStore

STORE_FILES = ("pykube.db", "pykube.db-wal", "pykube.db-shm", "pykube.db.lock")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def node(name: str) -> objects_pb2.Node:
    n = objects_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    return n


async def test_store_files_are_owner_only_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SQLiteStore(tmp_path / "pykube.db")
        await store.open()
        try:
            await store.create("nodes", node("n1"))
            assert {name: mode(tmp_path / name) for name in STORE_FILES} == dict.fromkeys(STORE_FILES, 0o600)
        finally:
            await store.close()
    finally:
        os.umask(old)


async def test_a_world_readable_store_from_before_is_closed_up(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    await store.create("nodes", node("n1"))
    await store.close()
    for name in ("pykube.db", "pykube.db.lock"):
        (tmp_path / name).chmod(0o644)
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    try:
        assert mode(tmp_path / "pykube.db") == mode(tmp_path / "pykube.db.lock") == 0o600
        assert store.get("nodes", "", "n1").metadata.name == "n1"
    finally:
        await store.close()


async def test_the_data_dir_is_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    app = await start_master(data_dir)
    try:
        assert mode(data_dir) == 0o700
        assert all(mode(data_dir / name) == 0o600 for name in ("pykube.db", "admin.yaml", "token"))
    finally:
        await app.stop()
