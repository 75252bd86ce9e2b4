"""The embedded store: API objects in one SQLite file, served from memory.

Layout: table ``objects`` holds one row per object (kind, namespace, name, uid, resource_version,
data = the serialized protobuf message); table ``meta`` holds the cluster-wide resourceVersion
counter, so a delete consumes a resourceVersion too and the counter survives restarts even when
the newest object is gone.

Durability: WAL journal with synchronous=FULL, so a write that returned survives kill -9 and
power loss.

Concurrency: every SQLite call runs on one dedicated thread, so the event loop never waits on the
disk. An asyncio.Lock serializes writes: each takes the next resourceVersion, commits, updates the
in-memory copy and feeds the event log in that order, so readers and watchers see writes in
resourceVersion order and never a write that is not on disk. A write whose caller is cancelled
still completes (it may already be committed) before the next one starts.

Reads (get, list) come from the in-memory copy loaded at open and return copies, so callers can
never change the cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO, TypeVar

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import AlreadyExists, Conflict, NotFound, Unavailable
from pymaster.store.base import ADDED, DELETED, MODIFIED, WatchEvent
from pymaster.store.events import DEFAULT_HISTORY, DEFAULT_QUEUE_SIZE, EventLog, Watcher

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# The message type of every kind the store accepts; a new kind only needs an entry here.
KINDS: dict[str, type[Message]] = {
    "pods": objects_pb2.Pod,
    "nodes": objects_pb2.Node,
    # Internal: which public key holds each node name (pymaster.server.bootstrap); never served.
    "identities": objects_pb2.NodeIdentity,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('resource_version', 0);
"""

# kind -> namespace -> name -> object. Stored messages are never changed in place, only replaced.
_Cache = dict[str, dict[str, dict[str, Message]]]


@dataclass(slots=True)
class _Change:
    """A write decided under the lock, not yet committed."""

    type: str  # ADDED, MODIFIED or DELETED
    kind: str
    obj: Message  # the new state (for DELETED, the last one); owned by the store


def _copy(obj: Message) -> Message:
    clone = type(obj)()
    clone.CopyFrom(obj)
    return clone


class SQLiteStore:
    """The Store (pymaster.store.base.Store) on one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        history: int = DEFAULT_HISTORY,
        *,
        watch_queue_size: int = DEFAULT_QUEUE_SIZE,
    ):
        """Creates a closed store; call ``await open()`` before use.

        Args:
            path: The database file; its directory must exist.
            history: How many events the watch log keeps for watches to resume from.
            watch_queue_size: How many undelivered events a watcher may have before it is ended
                with TooOld.
        """
        self._path = os.fspath(path)
        self._log = EventLog(history, watch_queue_size)
        self._objects: _Cache = {kind: {} for kind in KINDS}
        self._rv = 0
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_file: TextIO | None = None
        self._open = False

    @property
    def current_rv(self) -> int:
        """The resourceVersion of the latest write (0 for a new store)."""
        return self._rv

    @property
    def event_log(self) -> EventLog:
        """The log behind watches (start and watcher count, for metrics)."""
        return self._log

    async def open(self) -> None:
        """Opens (creating if needed) the database and loads every object into memory."""
        if self._open:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pykube-store")
        try:
            rows, rv = await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._objects = {kind: {} for kind in KINDS}
        for kind, namespace, name, obj in rows:
            self._objects[kind].setdefault(namespace, {})[name] = obj
        self._rv = rv
        self._log.reset(rv)
        self._open = True
        log.info("store opened path=%s objects=%d resource_version=%d", self._path, len(rows), rv)

    async def close(self) -> None:
        """Waits for the write in flight, ends every watch and closes the database."""
        if not self._open:
            return
        async with self._lock:
            self._open = False
            self._log.close()
            await self._run(self._close_sync)
        assert self._executor is not None
        self._executor.shutdown(wait=True)
        self._executor = None
        log.info("store closed path=%s resource_version=%d", self._path, self._rv)

    # ---- reads (memory) ----

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """Returns a copy of one object.

        Raises:
            NotFound: no such object.
        """
        return _copy(self._stored(kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        """Returns copies of the objects of ``kind`` sorted by (namespace, name), and current_rv.

        Args:
            kind: "pods", "nodes", ...
            namespace: Only this namespace; None for all.
        """
        self._check_open()
        by_namespace = self._by_kind(kind)
        namespaces = sorted(by_namespace) if namespace is None else [namespace]
        items: list[Message] = []
        for ns in namespaces:
            by_name = by_namespace.get(ns, {})
            items.extend(_copy(by_name[name]) for name in sorted(by_name))
        return items, self._rv

    def watch(self, kind: str, resource_version: int) -> Watcher:
        """Watches every write of ``kind`` after ``resource_version``, in order.

        Raises:
            TooOld: the event log no longer reaches back to ``resource_version``; list again.
        """
        self._by_kind(kind)
        self._check_open()
        return self._log.watch(kind, resource_version)

    # ---- writes ----

    async def create(self, kind: str, obj: Message) -> Message:
        """Stores a new object; the caller has set uid and creationTimestamp.

        Returns:
            A copy of the stored object, metadata.resourceVersion set (``obj`` is not changed).

        Raises:
            AlreadyExists: an object of that kind, namespace and name exists.
        """
        self._check_type(kind, obj)

        def plan() -> _Change:
            meta = obj.metadata
            if meta.name in self._by_kind(kind).get(meta.namespace, {}):
                raise AlreadyExists(f'{kind} "{meta.name}" already exists')
            return _Change(ADDED, kind, _copy(obj))

        return await self._write(plan)

    async def update(self, kind: str, obj: Message) -> Message:
        """Replaces an object, provided obj.metadata.resourceVersion is the stored one.

        Returns:
            A copy of the stored object with its new resourceVersion (``obj`` is not changed).

        Raises:
            NotFound: no such object.
            Conflict: the object changed since the caller read it.
        """
        self._check_type(kind, obj)

        def plan() -> _Change:
            meta = obj.metadata
            current = self._stored(kind, meta.namespace, meta.name)
            if meta.resource_version != current.metadata.resource_version:
                raise Conflict(
                    f'{kind} "{meta.name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
            return _Change(MODIFIED, kind, _copy(obj))

        return await self._write(plan)

    async def mutate(
        self, kind: str, namespace: str, name: str, fn: Callable[[Message], Message | None]
    ) -> Message:
        """Read-modify-write under the write lock, so no Conflict is possible.

        Args:
            fn: Gets a copy of the stored object; returns the new state (usually that copy,
                changed) or None to write nothing. It must not change the name or namespace.
                If it raises, nothing is written and the exception propagates.

        Returns:
            A copy of the stored object after the write (or as it is, when ``fn`` returned None).

        Raises:
            NotFound: no such object.
        """

        def plan() -> _Change | None:
            new = fn(_copy(self._stored(kind, namespace, name)))
            if new is None:
                return None
            self._check_type(kind, new)
            if (new.metadata.namespace, new.metadata.name) != (namespace, name):
                raise ValueError(f'{kind} "{name}": mutate must not change the namespace or name')
            return _Change(MODIFIED, kind, _copy(new))

        written = await self._write(plan)
        # No await since the lock was released, so this is the state fn saw.
        return written if written is not None else self.get(kind, namespace, name)

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> Message:
        """Removes an object.

        Args:
            uid: If given, delete only if the stored object has this uid (and not a newer object
                that reuses the name).

        Returns:
            The object's last state, metadata.resourceVersion set to the deletion's.

        Raises:
            NotFound: no such object.
            Conflict: ``uid`` is given and differs from the stored object's.
        """

        def plan() -> _Change:
            current = self._stored(kind, namespace, name)
            if uid is not None and uid != current.metadata.uid:
                raise Conflict(
                    f'{kind} "{name}": precondition failed: UID in precondition: {uid}, '
                    f"UID in object meta: {current.metadata.uid}"
                )
            return _Change(DELETED, kind, _copy(current))

        return await self._write(plan)

    # ---- internals ----

    async def _write(self, plan: Callable[[], _Change | None]) -> Message | None:
        """Runs ``plan`` under the write lock and commits the change it returns.

        Returns a copy of the written object, or None when ``plan`` decided not to write.
        """
        self._check_open()
        await self._lock.acquire()
        try:
            self._check_open()  # close() may have run while this write waited for the lock
            change = plan()
        except BaseException:
            self._lock.release()
            raise
        if change is None:
            self._lock.release()
            return None
        rv = self._rv + 1
        change.obj.metadata.resource_version = str(rv)
        # The commit runs as its own task holding the lock, so a cancelled caller cannot leave the
        # database ahead of memory or let the next write reuse this resourceVersion.
        commit = asyncio.get_running_loop().create_task(self._commit(rv, change))
        return await asyncio.shield(commit)

    async def _commit(self, rv: int, change: _Change) -> Message:
        try:
            data = change.obj.SerializeToString()
            await self._run(self._commit_sync, rv, change, data)
            self._apply(rv, change)
            return _copy(change.obj)
        finally:
            self._lock.release()

    def _apply(self, rv: int, change: _Change) -> None:
        meta = change.obj.metadata
        by_namespace = self._objects[change.kind]
        if change.type == DELETED:
            by_name = by_namespace[meta.namespace]
            del by_name[meta.name]
            if not by_name:
                del by_namespace[meta.namespace]
        else:
            by_namespace.setdefault(meta.namespace, {})[meta.name] = change.obj
        self._rv = rv
        # The log gets its own copy: a watcher that changes its event cannot reach the cache.
        self._log.append(change.kind, WatchEvent(change.type, _copy(change.obj), rv))

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _stored(self, kind: str, namespace: str, name: str) -> Message:
        self._check_open()
        obj = self._by_kind(kind).get(namespace, {}).get(name)
        if obj is None:
            raise NotFound(f'{kind} "{name}" not found')
        return obj

    def _by_kind(self, kind: str) -> dict[str, dict[str, Message]]:
        try:
            return self._objects[kind]
        except KeyError:
            raise ValueError(f'unknown kind "{kind}"; known: {", ".join(KINDS)}') from None

    def _check_type(self, kind: str, obj: Message) -> None:
        self._by_kind(kind)
        if not isinstance(obj, KINDS[kind]):
            raise TypeError(f"{kind} must be {KINDS[kind].__name__}, not {type(obj).__name__}")

    def _check_open(self) -> None:
        if not self._open:
            raise Unavailable("store is closed")

    # ---- the writer thread: everything below touches SQLite ----

    def _open_sync(self) -> tuple[list[tuple[str, str, str, Message]], int]:
        self._lock_file = _lock_exclusively(f"{os.fspath(self._path)}.lock")
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode != "wal":
                # Some file systems (network mounts) cannot share memory for the WAL index.
                log.warning("sqlite WAL unavailable path=%s journal_mode=%s", self._path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            (rv,) = conn.execute("SELECT value FROM meta WHERE key = 'resource_version'").fetchone()
            rows: list[tuple[str, str, str, Message]] = []
            for kind, namespace, name, data in conn.execute(
                "SELECT kind, namespace, name, data FROM objects"
            ):
                if kind not in KINDS:
                    # Written by a newer pykube: keep the row, but this version cannot serve it.
                    log.warning("skipping object of unknown kind kind=%s namespace=%s name=%s",
                                kind, namespace, name)
                    continue
                rows.append((kind, namespace, name, KINDS[kind].FromString(data)))
        except BaseException:
            conn.close()
            self._unlock()
            raise
        self._conn = conn
        return rows, rv

    def _commit_sync(self, rv: int, change: _Change, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        meta = change.obj.metadata
        conn.execute("BEGIN IMMEDIATE")
        try:
            if change.type == DELETED:
                conn.execute(
                    "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                    (change.kind, meta.namespace, meta.name),
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, uid, resource_version, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (change.kind, meta.namespace, meta.name, meta.uid, rv, data),
                )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'resource_version'", (rv,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None


def _lock_exclusively(lock_path: str) -> TextIO:
    """Takes the data dir's lock, so two masters never hand out the same resourceVersions from
    one database. The kernel drops it when the process dies, even by kill -9.

    Raises:
        OSError: another process (or store) holds it.
    """
    lock_file = open(lock_path, "a")  # noqa: SIM115 (held open for the store's lifetime)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise OSError(f"{lock_path} is held by another pymaster using the same --data-dir") from None
    return lock_file
