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
disk. Writes are decided one at a time on the event loop (each takes the next resourceVersion,
seeing the writes decided before it, committed or not) and committed in groups: the writes
decided while one transaction is on its way to disk all go into the next transaction, one fsync
for all of them (group commit, as databases do), so many concurrent writers cost one fsync per
group, not one each. Only once a group is on disk does it reach the in-memory copy and the event
log, in resourceVersion order, and do its writers return: readers and watchers never see a write
that is not on disk. A write whose caller is cancelled still completes. If a commit fails, its
group and every write decided after it fail with the error.

Reads (get, list) and watches come from the in-memory copy loaded at open (``cache.ObjectCache``,
shared with other backends) and return copies, so callers can never change the cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO, TypeVar

from google.protobuf.message import Message

from pymaster.api.errors import AlreadyExists, ApiError, Conflict, NotFound, Unavailable
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

_MISSING = object()


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
        # Writes decided but not on disk yet: (kind, namespace, name) -> the object's new state
        # (None: deleted), which the next decisions see, and the queue the committer drains.
        self._overlay: dict[tuple[str, str, str], Message | None] = {}
        self._pending: list[tuple[int, _Change, asyncio.Future[Message]]] = []
        self._next_rv = 0
        self._committer: asyncio.Task | None = None
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
        self._next_rv = rv + 1
        log.info("store opened path=%s objects=%d resource_version=%d", self._path, count, rv)

    async def close(self) -> None:
        """Waits for the write in flight, ends every watch and closes the database."""
        if not self._cache.is_open:
            return
        if self._committer is not None:
            await asyncio.gather(asyncio.shield(self._committer), return_exceptions=True)
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
            if self._exists(kind, meta.namespace, meta.name):
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
            current = self._decided(kind, meta.namespace, meta.name)
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
            new = fn(copy_message(self._decided(kind, namespace, name)))
            if new is None:
                return None
            self._cache.check_type(kind, new)
            if (new.metadata.namespace, new.metadata.name) != (namespace, name):
                raise ValueError(f'{kind} "{name}": mutate must not change the namespace or name')
            return _Change(MODIFIED, kind, copy_message(new))

        written = await self._write(plan)
        # No await since the decision, so this is the state fn saw.
        return written if written is not None else copy_message(self._decided(kind, namespace, name))

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
            current = self._decided(kind, namespace, name)
            if uid is not None and uid != current.metadata.uid:
                raise Conflict(
                    f'{kind} "{name}": precondition failed: UID in precondition: {uid}, '
                    f"UID in object meta: {current.metadata.uid}"
                )
            return _Change(DELETED, kind, copy_message(current))

        return await self._write(plan)

    async def mutate_many(
        self, kind: str, items: Sequence[tuple[str, str, Callable[[Message], Message | None]]]
    ) -> list[Message | Exception]:
        """Several ``mutate``s in one transaction (one fsync): the scheduler's batched binds.

        Each (namespace, name, fn) is planned in order under the write lock, as ``mutate`` would;
        an item whose object is missing or whose ``fn`` raises an ``ApiError`` or ValueError gets
        that exception in its place of the result (the others are still written). Every write
        takes its own resourceVersion, so watchers see ordinary MODIFIED events.

        Returns:
            Per item, a copy of the object after the write (or as it is, when ``fn`` returned
            None), or the exception it raised.
        """
        self._cache.check_open()
        results: list[Message | Exception | asyncio.Future[Message]] = []
        for namespace, name, fn in items:
            try:
                new = fn(copy_message(self._decided(kind, namespace, name)))
                if new is not None:
                    self._cache.check_type(kind, new)
                    if (new.metadata.namespace, new.metadata.name) != (namespace, name):
                        raise ValueError(f'{kind} "{name}": mutate must not change the namespace or name')
            except (ApiError, ValueError) as err:
                results.append(err)
                continue
            if new is None:
                results.append(copy_message(self._decided(kind, namespace, name)))
            else:
                results.append(self._decide(_Change(MODIFIED, kind, copy_message(new))))
        futures = [r for r in results if isinstance(r, asyncio.Future)]
        if futures:
            await asyncio.shield(asyncio.gather(*futures))
        return [r.result() if isinstance(r, asyncio.Future) else r for r in results]

    # ---- internals ----

    def _decided(self, kind: str, namespace: str, name: str) -> Message:
        """The object as the writes decided so far leave it (committed or not). Raises NotFound."""
        key = (kind, namespace, name)
        if key in self._overlay:
            obj = self._overlay[key]
            if obj is None:
                raise NotFound(f'{kind} "{name}" not found')
            return obj
        return self._cache.stored(kind, namespace, name)

    def _exists(self, kind: str, namespace: str, name: str) -> bool:
        key = (kind, namespace, name)
        if key in self._overlay:
            return self._overlay[key] is not None
        return name in self._cache.by_kind(kind).get(namespace, {})

    async def _write(self, plan: Callable[[], _Change | None]) -> Message | None:
        """Decides a write with ``plan`` and waits until its group is committed.

        Returns a copy of the written object, or None when ``plan`` decided not to write.
        """
        self._cache.check_open()
        change = plan()
        if change is None:
            return None
        # Shielded: a cancelled caller cannot take its write out of a group on its way to disk.
        return await asyncio.shield(self._decide(change))

    def _decide(self, change: _Change) -> asyncio.Future[Message]:
        """Gives ``change`` the next resourceVersion and queues it for the next group commit."""
        rv = self._next_rv
        self._next_rv += 1
        change.obj.metadata.resource_version = str(rv)
        meta = change.obj.metadata
        state = None if change.type == DELETED else change.obj
        self._overlay[(change.kind, meta.namespace, meta.name)] = state
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        self._pending.append((rv, change, future))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_groups(), name="store-commit")
        return future

    async def _commit_groups(self) -> None:
        """Commits the pending writes, a group at a time, until none is left."""
        while self._pending:
            group, self._pending = self._pending, []
            batch = [(rv, change, change.obj.SerializeToString()) for rv, change, _ in group]
            try:
                await self._run(self._commit_batch_sync, batch)
            except BaseException as err:
                # Later writes were decided on top of these: they fail too.
                failed, self._pending = [*group, *self._pending], []
                self._overlay.clear()
                self._next_rv = self._cache.rv + 1
                error = err if isinstance(err, Exception) else Unavailable("store closed")
                for _, _, future in failed:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(err, Exception):
                    raise
                continue
            for rv, change, future in group:
                meta = change.obj.metadata
                key = (change.kind, meta.namespace, meta.name)
                if self._overlay.get(key, _MISSING) is (None if change.type == DELETED else change.obj):
                    del self._overlay[key]  # no later decision on this object
                self._cache.apply(change.type, change.kind, change.obj, rv)
                if not future.done():
                    future.set_result(copy_message(change.obj))

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

    def _commit_batch_sync(self, batch: list[tuple[int, _Change, bytes]]) -> None:
        """Writes the changes (resourceVersion, change, serialized object) in one transaction."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for rv, change, data in batch:
                meta = change.obj.metadata
                if change.type == DELETED:
                    conn.execute(
                        "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                        (change.kind, meta.namespace, meta.name),
                    )
                    continue
                if self._transformer is not None:
                    data = self._transformer.to_storage(change.kind, meta.namespace, meta.name, data)
                conn.execute(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, uid, resource_version, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (change.kind, meta.namespace, meta.name, meta.uid, rv, data),
                )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'resource_version'", (batch[-1][0],))
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
