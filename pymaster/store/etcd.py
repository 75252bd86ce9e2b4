"""The store on etcd (v3, through ``aetcd``): what several masters share.

Layout, as kube-apiserver's: one key per object, ``/registry/<kind>/<namespace>/<name>``
(cluster-scoped kinds: ``/registry/<kind>/<name>``), whose value is the serialized protobuf message
after the ``ValueTransformer`` (Secrets sealed exactly as on SQLite), stored without its
resourceVersion: an object's resourceVersion is its key's ``mod_revision``, and the store's is the
etcd revision its in-memory copy has reached.

Writes are compare-and-swap transactions: create puts only if the key's ``create_revision`` is 0;
update only if its ``mod_revision`` is the caller's resourceVersion (else Conflict); mutate and
delete compare with the ``mod_revision`` they read and, on a lost compare, take the current value
the failed transaction returned and try again (kube-apiserver's GuaranteedUpdate), so ``fn`` may
run more than once. ``mutate_many`` sends one transaction per item, all at once: etcd gives every
key of one transaction the same revision, while watchers need one resourceVersion per write.

The in-memory copy (``cache.ObjectCache``, shared with SQLite) is fed only by etcd: a list of
``/registry/`` at one revision, then a watch from the next revision, so writes of this master and
of every other master on the same etcd reach it in revision order, with no gap and no duplicate.
A write returns once the copy has seen its revision (read-your-writes). If the etcd watch breaks,
it resumes from the revision after the last one seen; if etcd compacted that revision away, the
copy is listed again and every watch of it ends with TooOld, so its clients list again too.

Kinds with a TTL (``ttls``: the master gives events ``--event-ttl``) are written with an etcd
lease, as kube-apiserver writes events: etcd deletes them on its own once their TTL has passed
since their last write, whether or not a master runs; one lease serves every write of the kind for
a reuse window (``LEASE_REUSE_SECONDS`` at most, kube-apiserver's), granted for the TTL plus that
window, so the number of leases stays small. The master's event TTL controller still runs (it is
what SQLite has), whichever comes first deletes. Node leases stay in the master's memory, as with
SQLite.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
from aetcd import exceptions as etcd_errors
from aetcd import rpc
from google.protobuf.message import Message

from pymaster.api.errors import AlreadyExists, ApiError, Conflict, NotFound, Unavailable
from pymaster.api.kinds import KINDS
from pymaster.store.base import ADDED, DELETED, MODIFIED, ValueTransformer
from pymaster.store.cache import ObjectCache, copy_message
from pymaster.store.etcd_client import EtcdClient, EtcdTLS, parse_endpoints
from pymaster.store.events import DEFAULT_HISTORY, DEFAULT_QUEUE_SIZE, EventLog, Watcher

log = logging.getLogger(__name__)

# How long one etcd lease serves the writes of a kind with a TTL (kube-apiserver's reuse window).
LEASE_REUSE_SECONDS = 60.0

PREFIX = b"/registry/"
# The end of the range of every key under PREFIX ("/registry0": "/" + 1).
_PREFIX_END = PREFIX[:-1] + bytes([PREFIX[-1] + 1])
# How long to wait before watching again after the etcd watch broke (not compaction).
_REWATCH_DELAY = 0.5


def object_key(kind: str, namespace: str, name: str) -> bytes:
    """The etcd key of an object: ``/registry/<kind>/<namespace>/<name>``, without the namespace
    part for cluster-scoped objects (namespace "")."""
    path = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
    return PREFIX + path.encode()


# Keys under the prefix that are not objects of the API: the leader election's lease
# (pymaster.leader), where Kubernetes keeps its Leases.
NOT_OBJECTS = frozenset({"leases"})


def _kind_of(key: bytes) -> str:
    return key[len(PREFIX):].split(b"/", 1)[0].decode()


def _conflict(kind: str, name: str) -> Conflict:
    return Conflict(
        f'{kind} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


class EtcdStore:
    """The Store (pymaster.store.base.Store) on an etcd cluster."""

    def __init__(
        self,
        url: str,
        history: int = DEFAULT_HISTORY,
        *,
        watch_queue_size: int = DEFAULT_QUEUE_SIZE,
        transformer: ValueTransformer | None = None,
        tls: EtcdTLS | None = None,
        ttls: Mapping[str, float] | None = None,
    ):
        """Creates a closed store; call ``await open()`` before use.

        Args:
            url: ``etcd://HOST:PORT[,HOST:PORT...]``, the members' client URLs.
            history: How many events the watch log keeps for watches to resume from.
            watch_queue_size: How many undelivered events a watcher may have before it is ended.
            transformer: Turns objects' bytes into what is written and back (None: as they are).
            tls: TLS files for the connection to etcd (None: plain text).
            ttls: Seconds objects of a kind live after their last write ({"events": 3600}).

        Raises:
            ValueError: a malformed URL.
        """
        self._url = url
        self._client = EtcdClient(parse_endpoints(url), tls)
        self._transformer = transformer
        self._cache = ObjectCache(history, watch_queue_size)
        self._follower: asyncio.Task | None = None
        # Writers waiting for the copy to reach their revision: (revision, seq, future).
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._ttls = dict(ttls or {})
        self._leases: dict[str, tuple[int, float]] = {}  # kind -> (lease id, monotonic grant time)

    @property
    def current_rv(self) -> int:
        """The etcd revision of the latest write the in-memory copy has seen."""
        return self._cache.rv

    @property
    def event_log(self) -> EventLog:
        """The log behind watches (start and watcher count, for metrics)."""
        return self._cache.event_log

    async def open(self) -> None:
        """Connects, lists every object at one revision and follows etcd from the next one.

        Raises:
            Unavailable: no etcd member answered.
            ValueError: a stored object cannot be read back by the transformer (a wrong key ...).
        """
        if self._cache.is_open:
            return
        await self._client.connect()
        try:
            count = await self._list()
        except (etcd_errors.ClientError, grpc.aio.AioRpcError) as err:
            # The list is a raw Range call: gRPC's own error when no member answers.
            await self._client.close()
            detail = err.details() if isinstance(err, grpc.aio.AioRpcError) else err
            raise Unavailable(f"etcd {self._url}: {detail}") from err
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="etcd-watch")
        log.info("store opened url=%s objects=%d resource_version=%d", self._url, count, self._cache.rv)

    async def close(self) -> None:
        """Ends every watch and the connection (a write in flight fails with Unavailable)."""
        if not self._cache.is_open:
            return
        self._cache.close()
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        for _, _, future in self._waiters:
            if not future.done():
                future.set_exception(Unavailable("store is closed"))
        self._waiters.clear()
        await self._client.close()
        log.info("store closed url=%s resource_version=%d", self._url, self._cache.rv)

    # ---- reads (memory) ----

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """Returns a copy of one object. Raises NotFound."""
        return self._cache.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        """Copies of the objects of ``kind`` sorted by (namespace, name), and current_rv."""
        return self._cache.list(kind, namespace)

    def watch(self, kind: str, resource_version: int) -> Watcher:
        """Every write of ``kind`` after ``resource_version``, in order. Raises TooOld."""
        return self._cache.watch(kind, resource_version)

    # ---- writes ----

    async def create(self, kind: str, obj: Message) -> Message:
        """Stores a new object (uid and creationTimestamp set by the caller).

        Raises:
            AlreadyExists: an object of that kind, namespace and name exists.
        """
        self._cache.check_type(kind, obj)
        self._cache.check_open()
        meta = obj.metadata
        key = object_key(kind, meta.namespace, meta.name)
        compare = rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE,
                              create_revision=0)
        lease = await self._lease_for(kind)
        succeeded, revision, _ = await self._txn(compare, self._put(kind, key, obj, lease), key)
        if not succeeded:
            raise AlreadyExists(f'{kind} "{meta.name}" already exists')
        return await self._written(obj, revision)

    async def update(self, kind: str, obj: Message) -> Message:
        """Replaces an object whose metadata.resourceVersion is its key's mod_revision.

        Raises:
            NotFound: no such object.
            Conflict: the object changed since the caller read it.
        """
        self._cache.check_type(kind, obj)
        self._cache.check_open()
        meta = obj.metadata
        key = object_key(kind, meta.namespace, meta.name)
        if not meta.resource_version.isdigit():
            # Never a mod_revision: only the existence check remains to choose the error.
            self._cache.stored(kind, meta.namespace, meta.name)
            raise _conflict(kind, meta.name)
        lease = await self._lease_for(kind)
        succeeded, revision, current = await self._txn(
            self._mod_equals(key, int(meta.resource_version)), self._put(kind, key, obj, lease), key
        )
        if not succeeded:
            if current is None:
                raise NotFound(f'{kind} "{meta.name}" not found')
            raise _conflict(kind, meta.name)
        return await self._written(obj, revision)

    async def mutate(
        self, kind: str, namespace: str, name: str, fn: Callable[[Message], Message | None]
    ) -> Message:
        """Read-modify-write, retried on a lost compare, so no Conflict reaches the caller.

        Args:
            fn: Gets a copy of the current object; returns the new state or None to write nothing.
                It may run more than once (after another writer won); it must not change the name
                or namespace. If it raises, nothing is written and the exception propagates.

        Raises:
            NotFound: no such object.
        """
        self._cache.check_open()
        key = object_key(kind, namespace, name)
        current = self._cache.stored(kind, namespace, name)
        while True:
            new = fn(copy_message(current))
            if new is None:
                return copy_message(current)
            self._cache.check_type(kind, new)
            if (new.metadata.namespace, new.metadata.name) != (namespace, name):
                raise ValueError(f'{kind} "{name}": mutate must not change the namespace or name')
            lease = await self._lease_for(kind)
            succeeded, revision, fresh = await self._txn(
                self._mod_equals(key, int(current.metadata.resource_version)),
                self._put(kind, key, new, lease), key,
            )
            if succeeded:
                return await self._written(new, revision)
            if fresh is None:
                raise NotFound(f'{kind} "{name}" not found')
            current = fresh

    async def mutate_many(
        self, kind: str, items: Sequence[tuple[str, str, Callable[[Message], Message | None]]]
    ) -> list[Message | Exception]:
        """Several ``mutate``s, one transaction each, sent together (see the module docstring).

        Returns:
            Per item, a copy of the object after the write (or as it is, when ``fn`` returned
            None), or the ApiError/ValueError it raised.
        """
        self._cache.check_open()

        async def one(namespace: str, name: str, fn: Callable[[Message], Message | None]):
            try:
                return await self.mutate(kind, namespace, name, fn)
            except (ApiError, ValueError) as err:
                return err

        return list(await asyncio.gather(*(one(*item) for item in items)))

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> Message:
        """Removes an object; returns its last state with the deletion's resourceVersion.

        Raises:
            NotFound: no such object.
            Conflict: ``uid`` is given and differs from the stored object's.
        """
        self._cache.check_open()
        key = object_key(kind, namespace, name)
        current = self._cache.stored(kind, namespace, name)
        while True:
            if uid is not None and uid != current.metadata.uid:
                raise Conflict(
                    f'{kind} "{name}": precondition failed: UID in precondition: {uid}, '
                    f"UID in object meta: {current.metadata.uid}"
                )
            succeeded, revision, fresh = await self._txn(
                self._mod_equals(key, int(current.metadata.resource_version)),
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key)), key,
            )
            if succeeded:
                return await self._written(current, revision)
            if fresh is None:
                raise NotFound(f'{kind} "{name}" not found')
            current = fresh

    # ---- internals ----

    @staticmethod
    def _mod_equals(key: bytes, revision: int) -> rpc.Compare:
        return rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                           mod_revision=revision)

    async def _lease_for(self, kind: str) -> int:
        """The etcd lease a write of ``kind`` goes with (0: none, the kind has no TTL)."""
        ttl = self._ttls.get(kind)
        if not ttl:
            return 0
        reuse = min(LEASE_REUSE_SECONDS, ttl)
        now = time.monotonic()
        held = self._leases.get(kind)
        if held is not None and now - held[1] < reuse:
            return held[0]
        lease = await self._client.lease(math.ceil(ttl + reuse))
        self._leases[kind] = (lease.id, now)
        return lease.id

    def _put(self, kind: str, key: bytes, obj: Message, lease: int = 0) -> rpc.RequestOp:
        """The put of ``obj`` (stored without its resourceVersion, which is the mod_revision),
        bound to the etcd ``lease`` when not 0."""
        bare = copy_message(obj)
        bare.metadata.resource_version = ""
        data = bare.SerializeToString()
        if self._transformer is not None:
            meta = obj.metadata
            data = self._transformer.to_storage(kind, meta.namespace, meta.name, data)
        return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=data, lease=lease))

    async def _txn(
        self, compare: rpc.Compare, success: rpc.RequestOp, key: bytes
    ) -> tuple[bool, int, Message | None]:
        """One compare-and-swap: (succeeded, revision, the current object when it failed)."""
        request = rpc.TxnRequest(
            compare=[compare], success=[success],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )
        try:
            # Shielded: a cancelled caller cannot leave the outcome of a sent write unknown to us.
            response = await asyncio.shield(self._client.kvstub.Txn(request))
        except rpc.AioRpcError as err:
            raise Unavailable(f"etcd: {err.details()}") from err
        current = None
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            current = self._decode(_kind_of(key), kvs[0]) if kvs else None
        return response.succeeded, response.header.revision, current

    def _decode(self, kind: str, kv: rpc.KeyValue) -> Message:
        data = kv.value
        if self._transformer is not None:
            namespace, _, name = kv.key[len(PREFIX) + len(kind) + 1:].decode().rpartition("/")
            data = self._transformer.from_storage(kind, namespace, name, data)
        obj = KINDS[kind].message.FromString(data)
        obj.metadata.resource_version = str(kv.mod_revision)
        return obj

    async def _written(self, obj: Message, revision: int) -> Message:
        """Waits until the in-memory copy has seen ``revision``; ``obj`` as written there."""
        if self._cache.rv < revision:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (revision, next(self._seq), future))
            await asyncio.shield(future)
        written = copy_message(obj)
        written.metadata.resource_version = str(revision)
        return written

    def _release_waiters(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._cache.rv:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    async def _list(self) -> int:
        """Loads the copy from a list of every key under PREFIX at one revision."""
        response = await self._client.kvstub.Range(rpc.RangeRequest(key=PREFIX, range_end=_PREFIX_END))
        objects = []
        for kv in response.kvs:
            kind = _kind_of(kv.key)
            if kind in NOT_OBJECTS:
                continue
            if kind not in KINDS:
                # Written by a newer pykube: keep the key, but this version cannot serve it.
                log.warning("skipping object of unknown kind key=%s", kv.key.decode(errors="replace"))
                continue
            objects.append((kind, self._decode(kind, kv)))
        count = self._cache.load(objects, response.header.revision)
        self._release_waiters()
        return count

    async def _follow(self) -> None:
        """Applies etcd's events to the copy from the revision after it, for ever."""
        while True:
            try:
                watch = await self._client.watch(
                    PREFIX, range_end=_PREFIX_END, start_revision=self._cache.rv + 1
                )
                async for event in watch:
                    try:
                        self._apply(event)
                    except ValueError as err:
                        # Sealed with another key (a master with another data dir): it cannot be
                        # served here, but must not stop this master from following the others.
                        log.error("cannot read object from etcd key=%s error=%s",
                                  event.kv.key.decode(errors="replace"), err)
                log.warning("etcd watch ended; watching again resource_version=%d", self._cache.rv)
                await asyncio.sleep(_REWATCH_DELAY)
            except etcd_errors.RevisionCompactedError as err:
                log.warning("etcd compacted past the store's revision; listing again "
                            "resource_version=%d compacted=%d", self._cache.rv, err.compacted_revision)
                await self._relist()
            except etcd_errors.ClientError as err:
                log.warning("etcd watch broke; watching again resource_version=%d error=%s",
                            self._cache.rv, err)
                await asyncio.sleep(_REWATCH_DELAY)

    async def _relist(self) -> None:
        """Lists again after compaction; watches of the old copy end with TooOld."""
        while True:
            try:
                self._expire_watches()
                await self._list()
                return
            except (etcd_errors.ClientError, grpc.aio.AioRpcError) as err:
                log.warning("etcd list failed error=%s", err)
                await asyncio.sleep(_REWATCH_DELAY)

    def _expire_watches(self) -> None:
        self._cache.event_log.expire(f"etcd compacted past resourceVersion {self._cache.rv}; list again")

    def _apply(self, event) -> None:
        """One etcd watch event into the copy (and its watchers), then wakes the writers."""
        kv = event.kv
        kind = _kind_of(kv.key)
        if kind not in KINDS:
            return
        if event.kind == "DELETE":
            path = kv.key[len(PREFIX) + len(kind) + 1:].decode()
            namespace, _, name = path.rpartition("/")
            try:
                obj = copy_message(self._cache.stored(kind, namespace, name))
            except NotFound:
                return  # never seen (an unknown object): nothing to remove
            obj.metadata.resource_version = str(kv.mod_revision)
            self._cache.apply(DELETED, kind, obj, kv.mod_revision)
        else:
            obj = self._decode(kind, kv)
            event_type = ADDED if kv.create_revision == kv.mod_revision else MODIFIED
            self._cache.apply(event_type, kind, obj, kv.mod_revision)
        self._release_waiters()
