"""The embedded store: API objects in one SQLite file, served from memory.

Layout: table ``objects`` holds one row per object (kind, namespace, name, uid, resource_version,
data = the serialized protobuf message); table ``meta`` holds the cluster-wide resourceVersion
counter, so a delete consumes a resourceVersion too and the counter survives restarts even when
the newest object is gone.

Durability: WAL journal with synchronous=FULL, so a write that returned survives kill -9 and
power loss.

Privacy: pod specs hold env values and Secrets hold secrets: the database, its WAL and
shared-memory files and the lock file are readable by their owner only (0600), whatever the umask.
SQLite creates the -wal and -shm files with the database file's mode. A ``ValueTransformer``
(``pymaster.store.encryption``) turns each object's bytes into what is written and back, on the
writer thread: Secrets are encrypted there, so the file never holds their plaintext, while the
in-memory copy holds them as plain messages.

Concurrency: every SQLite call runs on one dedicated thread, so the event loop never waits on the
disk. An asyncio.Lock serializes writes: each takes the next resourceVersion, commits, updates the
in-memory copy and feeds the event log in that order, so readers and watchers see writes in
resourceVersion order and never a write that is not on disk. A write whose caller is cancelled
still completes (it may already be committed) before the next one starts.

Reads (get, list) and watches come from the in-memory copy loaded at open (``cache.ObjectCache``,
shared with other backends) and return copies, so callers can never change the cache.
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

from pymaster.api.errors import AlreadyExists, Conflict
from pymaster.api.kinds import KINDS
from pymaster.store.base import ADDED, DELETED, MODIFIED, ValueTransformer
from pymaster.store.cache import ObjectCache, copy_message
from pymaster.store.events import DEFAULT_HISTORY, DEFAULT_QUEUE_SIZE, EventLog, Watcher

log = logging.getLogger(__name__)

_T = TypeVar("_T")

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

@dataclass(slots=True)
class _Change:
    """A write decided under the lock, not yet committed."""

    type: str  # ADDED, MODIFIED or DELETED
    kind: str
    obj: Message  # the new state (for DELETED, the last one); owned by the store


class SQLiteStore:
    """The Store (pymaster.store.base.Store) on one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        history: int = DEFAULT_HISTORY,
        *,
        watch_queue_size: int = DEFAULT_QUEUE_SIZE,
        transformer: ValueTransformer | None = None,
    ):
        """Creates a closed store; call ``await open()`` before use.

        Args:
            path: The database file; its directory must exist.
            history: How many events the watch log keeps for watches to resume from.
            watch_queue_size: How many undelivered events a watcher may have before it is ended
                with TooOld.
            transformer: Turns objects' bytes into what is written and back (None: as they are).
        """
        self._path = os.fspath(path)
        self._transformer = transformer
        self._cache = ObjectCache(history, watch_queue_size)
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_file: TextIO | None = None

    @property
    def current_rv(self) -> int:
        """The resourceVersion of the latest write (0 for a new store)."""
        return self._cache.rv

    @property
    def event_log(self) -> EventLog:
        """The log behind watches (start and watcher count, for metrics)."""
        return self._cache.event_log

    async def open(self) -> None:
        """Opens (creating if needed) the database and loads every object into memory.

        Raises:
            ValueError: a stored object cannot be read back by the transformer (a wrong key ...).
        """
        if self._cache.is_open:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pykube-store")
        try:
            rows, rv = await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        count = self._cache.load(rows, rv)
        log.info("store opened path=%s objects=%d resource_version=%d", self._path, count, rv)

    async def close(self) -> None:
        """Waits for the write in flight, ends every watch and closes the database."""
        if not self._cache.is_open:
            return
        async with self._lock:
            self._cache.close()
            await self._run(self._close_sync)
        assert self._executor is not None
        self._executor.shutdown(wait=True)
        self._executor = None
        log.info("store closed path=%s resource_version=%d", self._path, self._cache.rv)

    # ---- reads (memory) ----

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """Returns a copy of one object.

        Raises:
            NotFound: no such object.
        """
        return self._cache.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        """Returns copies of the objects of ``kind`` sorted by (namespace, name), and current_rv.

        Args:
            kind: "pods", "nodes", ...
            namespace: Only this namespace; None for all.
        """
        return self._cache.list(kind, namespace)

    def watch(self, kind: str, resource_version: int) -> Watcher:
        """Watches every write of ``kind`` after ``resource_version``, in order.

        Raises:
            TooOld: the event log no longer reaches back to ``resource_version``; list again.
        """
        return self._cache.watch(kind, resource_version)

    # ---- writes ----

    async def create(self, kind: str, obj: Message) -> Message:
        """Stores a new object; the caller has set uid and creationTimestamp.

        Returns:
            A copy of the stored object, metadata.resourceVersion set (``obj`` is not changed).

        Raises:
            AlreadyExists: an object of that kind, namespace and name exists.
        """
        self._cache.check_type(kind, obj)

        def plan() -> _Change:
            meta = obj.metadata
            if meta.name in self._cache.by_kind(kind).get(meta.namespace, {}):
                raise AlreadyExists(f'{kind} "{meta.name}" already exists')
            return _Change(ADDED, kind, copy_message(obj))

        return await self._write(plan)

    async def update(self, kind: str, obj: Message) -> Message:
        """Replaces an object, provided obj.metadata.resourceVersion is the stored one.

        Returns:
            A copy of the stored object with its new resourceVersion (``obj`` is not changed).

        Raises:
            NotFound: no such object.
            Conflict: the object changed since the caller read it.
        """
        self._cache.check_type(kind, obj)

        def plan() -> _Change:
            meta = obj.metadata
            current = self._cache.stored(kind, meta.namespace, meta.name)
            if meta.resource_version != current.metadata.resource_version:
                raise Conflict(
                    f'{kind} "{meta.name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
            return _Change(MODIFIED, kind, copy_message(obj))

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
            new = fn(copy_message(self._cache.stored(kind, namespace, name)))
            if new is None:
                return None
            self._cache.check_type(kind, new)
            if (new.metadata.namespace, new.metadata.name) != (namespace, name):
                raise ValueError(f'{kind} "{name}": mutate must not change the namespace or name')
            return _Change(MODIFIED, kind, copy_message(new))

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
            current = self._cache.stored(kind, namespace, name)
            if uid is not None and uid != current.metadata.uid:
                raise Conflict(
                    f'{kind} "{name}": precondition failed: UID in precondition: {uid}, '
                    f"UID in object meta: {current.metadata.uid}"
                )
            return _Change(DELETED, kind, copy_message(current))

        return await self._write(plan)

    # ---- internals ----

    async def _write(self, plan: Callable[[], _Change | None]) -> Message | None:
        """Runs ``plan`` under the write lock and commits the change it returns.

        Returns a copy of the written object, or None when ``plan`` decided not to write.
        """
        self._cache.check_open()
        await self._lock.acquire()
        try:
            self._cache.check_open()  # close() may have run while this write waited for the lock
            change = plan()
        except BaseException:
            self._lock.release()
            raise
        if change is None:
            self._lock.release()
            return None
        rv = self._cache.rv + 1
        change.obj.metadata.resource_version = str(rv)
        # The commit runs as its own task holding the lock, so a cancelled caller cannot leave the
        # database ahead of memory or let the next write reuse this resourceVersion.
        commit = asyncio.get_running_loop().create_task(self._commit(rv, change))
        return await asyncio.shield(commit)

    async def _commit(self, rv: int, change: _Change) -> Message:
        try:
            data = change.obj.SerializeToString()
            await self._run(self._commit_sync, rv, change, data)
            self._cache.apply(change.type, change.kind, change.obj, rv)
            return copy_message(change.obj)
        finally:
            self._lock.release()

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- the writer thread: everything below touches SQLite ----

    def _open_sync(self) -> tuple[list[tuple[str, Message]], int]:
        self._lock_file = _lock_exclusively(f"{os.fspath(self._path)}.lock")
        for suffix in ("", "-wal", "-shm"):
            _owner_only(self._path + suffix, create=not suffix)
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode != "wal":
                # Some file systems (network mounts) cannot share memory for the WAL index.
                log.warning("sqlite WAL unavailable path=%s journal_mode=%s", self._path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            (rv,) = conn.execute("SELECT value FROM meta WHERE key = 'resource_version'").fetchone()
            rows: list[tuple[str, Message]] = []
            for kind, namespace, name, data in conn.execute(
                "SELECT kind, namespace, name, data FROM objects"
            ):
                if kind not in KINDS:
                    # Written by a newer pykube: keep the row, but this version cannot serve it.
                    log.warning("skipping object of unknown kind kind=%s namespace=%s name=%s",
                                kind, namespace, name)
                    continue
                if self._transformer is not None:
                    data = self._transformer.from_storage(kind, namespace, name, data)
                rows.append((kind, KINDS[kind].message.FromString(data)))
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
        if self._transformer is not None and change.type != DELETED:
            data = self._transformer.to_storage(change.kind, meta.namespace, meta.name, data)
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
    _owner_only(lock_path, create=True)
    lock_file = open(lock_path, "a")  # noqa: SIM115 (held open for the store's lifetime)
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise OSError(f"{lock_path} is held by another pymaster using the same --data-dir") from None
    return lock_file


def _owner_only(path: str, create: bool) -> None:
    """Makes ``path`` mode 0600, creating it empty first when ``create`` (an empty file is an empty
    SQLite database); a missing file is fine otherwise."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
