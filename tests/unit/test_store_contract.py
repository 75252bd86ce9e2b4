"""The Store contract, one suite run against every backend: SQLite (a file) and etcd (a real
single-member etcd on loopback, tests/etcd_fixture.py). CRUD with resourceVersion preconditions,
lists at one resourceVersion, watches from a resourceVersion with no gap and no duplicate, TooOld,
the value transformer (Secrets encrypted at rest), reopening; then what only etcd has: the key
layout read from etcd itself, compaction, and two stores (two masters) on one etcd.

resourceVersions are compared relative to the store's at the start of a test: on etcd they are
revisions of a cluster that earlier tests wrote to.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aetcd
import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import AlreadyExists, Conflict, NotFound, TooOld, Unavailable
from pymaster.store import open_store, sqlite_url
from pymaster.store.base import Store, ValueTransformer, WatchEvent
from pymaster.store.encryption import PREFIX as SEALED_PREFIX
from pymaster.store.encryption import SecretEncryption
from pymaster.store.etcd import PREFIX, object_key
from tests.etcd_fixture import EtcdCluster, running_etcd

DEADLINE = 10.0


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


def make_secret(value: bytes) -> objects_pb2.Secret:
    s = objects_pb2.Secret(data={"k": value})
    s.metadata.namespace, s.metadata.name, s.metadata.uid = "default", "db", "u1"
    return s


class Reverser:
    """A transformer writing every Secret's bytes reversed (and recording the calls)."""

    def __init__(self, refuse: bool = False):
        self.calls: list[tuple[str, str, str, str]] = []
        self.refuse = refuse

    def to_storage(self, kind: str, namespace: str, name: str, data: bytes) -> bytes:
        self.calls.append(("to", kind, namespace, name))
        return data[::-1] if kind == "secrets" else data

    def from_storage(self, kind: str, namespace: str, name: str, stored: bytes) -> bytes:
        self.calls.append(("from", kind, namespace, name))
        if self.refuse and kind == "secrets":
            raise ValueError(f"cannot read {kind} {namespace}/{name}")
        return stored[::-1] if kind == "secrets" else stored


class Backend:
    """Opens stores of one backend at one place, and reads what the backend wrote there."""

    def __init__(self, name: str, url: str, tmp_path: Path):
        self.name = name
        self.url = url
        self.tmp_path = tmp_path
        self.opened: list[Store] = []

    async def open(self, history: int = 10_000, transformer: ValueTransformer | None = None) -> Store:
        store = open_store(self.url, history=history, transformer=transformer)
        await store.open()
        self.opened.append(store)
        return store

    async def raw(self, kind: str, namespace: str, name: str) -> bytes | None:
        """The bytes stored for one object, read past the store (None: no such object)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.tmp_path / "pykube.db") as conn:
                row = conn.execute("SELECT data FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                                   (kind, namespace, name)).fetchone()
            return None if row is None else row[0]
        async with etcd_client(self.url) as client:
            got = await client.get(object_key(kind, namespace, name))
            return None if got is None else got.value

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


def etcd_client(url: str) -> aetcd.Client:
    host, port = url.removeprefix("etcd://").split(",")[0].rsplit(":", 1)
    return aetcd.Client(host=host, port=int(port))


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with running_etcd() as cluster:
        yield cluster


async def wipe(url: str) -> None:
    """Removes every object of earlier tests from the shared etcd."""
    async with etcd_client(url) as client:
        await client.delete_range(PREFIX, PREFIX[:-1] + b"0")


@pytest.fixture(params=["sqlite", "etcd"])
async def backend(request, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", sqlite_url(tmp_path), tmp_path)
    else:
        cluster = request.getfixturevalue("etcd")
        await wipe(cluster.url)
        b = Backend("etcd", cluster.url, tmp_path)
    yield b
    await b.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def next_event(watch) -> WatchEvent:
    return await asyncio.wait_for(anext(watch), DEADLINE)


async def take(watch, n: int, base: int) -> list[tuple[str, str, int]]:
    """n events as (type, name, resourceVersion - base)."""
    events = [await next_event(watch) for _ in range(n)]
    return [(e.type, e.object.metadata.name, e.resource_version - base) for e in events]


def rv_of(obj) -> int:
    return int(obj.metadata.resource_version)


async def test_create_get_list(store: Store) -> None:
    base = store.current_rv
    pod = make_pod("web")
    created = await store.create("pods", pod)

    assert rv_of(created) == base + 1 == store.current_rv
    assert pod.metadata.resource_version == ""  # the argument is not changed
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
    assert rv == base + 3
    items, _ = store.list("pods", "prod")
    assert [p.metadata.name for p in items] == ["api"]
    assert store.list("pods", "nowhere") == ([], base + 3)
    assert store.list("nodes") == ([], base + 3)


async def test_create_existing_raises_already_exists(store: Store) -> None:
    base = store.current_rv
    await store.create("pods", make_pod("web"))
    with pytest.raises(AlreadyExists, match='pods "web" already exists'):
        await store.create("pods", make_pod("web"))
    # Same name in another namespace, or another kind, is a different object.
    await store.create("pods", make_pod("web", namespace="other"))
    await store.create("nodes", make_node("web"))
    assert store.current_rv == base + 3


@pytest.mark.parametrize("operation", ["get", "update", "mutate", "delete"])
async def test_missing_object_raises_not_found(store: Store, operation: str) -> None:
    base = store.current_rv
    with pytest.raises(NotFound, match='pods "ghost" not found'):
        if operation == "get":
            store.get("pods", "default", "ghost")
        elif operation == "update":
            await store.update("pods", make_pod("ghost"))
        elif operation == "mutate":
            await store.mutate("pods", "default", "ghost", lambda pod: pod)
        else:
            await store.delete("pods", "default", "ghost")
    assert store.current_rv == base


async def test_update_checks_resource_version(store: Store) -> None:
    created = await store.create("pods", make_pod("web"))
    created.metadata.labels["app"] = "web"
    updated = await store.update("pods", created)
    assert rv_of(updated) == rv_of(created) + 1
    assert store.get("pods", "default", "web").metadata.labels["app"] == "web"

    # `created` still carries the first resourceVersion: a stale write.
    created.metadata.labels["app"] = "stale"
    with pytest.raises(Conflict, match='pods "web": the object has been modified; please apply'):
        await store.update("pods", created)
    assert store.get("pods", "default", "web").metadata.labels["app"] == "web"
    assert store.current_rv == rv_of(updated)


async def test_mutate(store: Store) -> None:
    created = await store.create("pods", make_pod("web"))

    def bind(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = "node-1"
        return pod

    bound = await store.mutate("pods", "default", "web", bind)
    assert bound.spec.node_name == "node-1"
    assert rv_of(bound) == rv_of(created) + 1
    assert store.get("pods", "default", "web") == bound


async def test_mutate_returning_none_or_raising_writes_nothing(store: Store) -> None:
    created = await store.create("pods", make_pod("web"))

    def look_only(pod: objects_pb2.Pod) -> None:
        pod.spec.node_name = "changed-on-a-copy"

    current = await store.mutate("pods", "default", "web", look_only)
    assert current.spec.node_name == "" and current == created

    def fail(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = "node-1"
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await store.mutate("pods", "default", "web", fail)
    assert store.get("pods", "default", "web").spec.node_name == ""
    assert store.current_rv == rv_of(created)
    assert rv_of(await store.mutate("pods", "default", "web", lambda p: p)) == rv_of(created) + 1


async def test_concurrent_mutates_do_not_lose_updates(store: Store) -> None:
    created = await store.create("pods", make_pod("web"))

    def add_label(i: int):
        def fn(pod: objects_pb2.Pod) -> objects_pb2.Pod:
            pod.metadata.labels[f"l{i}"] = "x"
            return pod
        return fn

    results = await asyncio.gather(*(store.mutate("pods", "default", "web", add_label(i)) for i in range(20)))
    base = rv_of(created)
    assert sorted(rv_of(r) for r in results) == list(range(base + 1, base + 21))
    assert len(store.get("pods", "default", "web").metadata.labels) == 20


async def test_mutate_many_writes_each_item_with_its_own_version(store: Store) -> None:
    base = store.current_rv
    for name in ("a", "b"):
        await store.create("pods", make_pod(name))

    def bind(pod: objects_pb2.Pod) -> objects_pb2.Pod:
        pod.spec.node_name = "n1"
        return pod

    results = await store.mutate_many("pods", [("default", "a", bind), ("default", "ghost", bind),
                                               ("default", "b", bind)])
    assert isinstance(results[1], NotFound)
    assert sorted(rv_of(r) for r in (results[0], results[2])) == [base + 3, base + 4]
    assert [p.spec.node_name for p in store.list("pods")[0]] == ["n1", "n1"]


async def test_delete(store: Store) -> None:
    created = await store.create("pods", make_pod("web", uid="u1"))
    with pytest.raises(Conflict, match="UID in precondition: u2"):
        await store.delete("pods", "default", "web", uid="u2")

    deleted = await store.delete("pods", "default", "web", uid="u1")
    assert deleted.metadata.name == "web"
    assert rv_of(deleted) == rv_of(created) + 1 == store.current_rv
    with pytest.raises(NotFound):
        store.get("pods", "default", "web")
    assert store.list("pods") == ([], rv_of(deleted))
    # The name is free again.
    assert rv_of(await store.create("pods", make_pod("web"))) == rv_of(deleted) + 1


async def test_wrong_kind_or_type_is_rejected(store: Store) -> None:
    base = store.current_rv
    with pytest.raises(ValueError, match='unknown kind "statefulsets"'):
        store.list("statefulsets")
    with pytest.raises(TypeError, match="pods must be Pod, not Node"):
        await store.create("pods", make_node("n1"))
    assert store.current_rv == base


async def test_reopen_keeps_everything(backend: Backend) -> None:
    store = await backend.open()
    base = store.current_rv
    rvs = [
        rv_of(await store.create("pods", make_pod("a"))),
        rv_of(await store.create("nodes", make_node("n1"))),
        rv_of(await store.create("pods", make_pod("b"))),
        rv_of(await store.mutate("nodes", "", "n1", lambda n: n)),
        rv_of(await store.delete("pods", "default", "b")),
    ]
    assert [rv - base for rv in rvs] == [1, 2, 3, 4, 5]
    pod_a = store.get("pods", "default", "a")
    await store.close()
    with pytest.raises(Unavailable):
        store.get("pods", "default", "a")

    reopened = await backend.open()
    # The delete consumed a resourceVersion although the newest surviving object is older.
    assert reopened.current_rv == base + 5
    assert reopened.get("pods", "default", "a") == pod_a
    assert rv_of(reopened.get("nodes", "", "n1")) == base + 4
    assert [p.metadata.name for p in reopened.list("pods")[0]] == ["a"]
    # Only a watch from exactly there resumes: the event log starts empty.
    with pytest.raises(TooOld, match=rf"resourceVersion {base + 4} is too old"):
        reopened.watch("pods", base + 4)
    watch = reopened.watch("pods", base + 5)
    assert rv_of(await reopened.create("pods", make_pod("c"))) == base + 6
    assert await take(watch, 1, base) == [("ADDED", "c", 6)]
    watch.close()


async def test_watch_replays_then_follows_in_order(store: Store) -> None:
    base = store.current_rv
    await store.create("pods", make_pod("a"))  # +1
    await store.create("pods", make_pod("b"))  # +2
    await store.create("nodes", make_node("n1"))  # +3: another kind, not in the pods watch
    await store.mutate("pods", "default", "a", lambda p: p)  # +4

    watch = store.watch("pods", base + 1)
    await store.delete("pods", "default", "b")  # +5
    await store.create("pods", make_pod("c"))  # +6

    assert await take(watch, 4, base) == [
        ("ADDED", "b", 2), ("MODIFIED", "a", 4), ("DELETED", "b", 5), ("ADDED", "c", 6),
    ]
    watch.close()


async def test_watch_deleted_event_carries_deletion_rv_and_last_state(store: Store) -> None:
    await store.create("pods", make_pod("a"))
    watch = store.watch("pods", store.current_rv)
    deleted = await store.delete("pods", "default", "a")
    event = await next_event(watch)
    assert (event.type, event.resource_version) == ("DELETED", rv_of(deleted))
    assert event.object.metadata.resource_version == deleted.metadata.resource_version
    assert event.object.spec.containers[0].image == "busybox"
    watch.close()


async def test_watch_close_and_store_close_end_iteration(backend: Backend) -> None:
    store = await backend.open()
    watch = store.watch("pods", store.current_rv)
    received: list[str] = []

    async def consume() -> None:
        async for event in watch:
            received.append(event.object.metadata.name)

    consumer = asyncio.ensure_future(consume())
    await store.create("pods", make_pod("a"))
    await wait_until(lambda: received == ["a"])
    assert not consumer.done()
    watch.close()
    await asyncio.wait_for(consumer, DEADLINE)  # the iteration ended, without an error
    assert store.event_log.watcher_count() == 0

    other = store.watch("nodes", store.current_rv)
    await store.close()
    assert [event async for event in other] == []
    with pytest.raises(Unavailable):
        store.watch("nodes", 0)


@pytest.mark.parametrize(("history", "watch_from", "too_old"), [(3, 1, True), (3, 2, False), (10, 0, False)])
async def test_watch_too_old_when_the_log_is_exceeded(
    backend: Backend, history: int, watch_from: int, too_old: bool
) -> None:
    store = await backend.open(history=history)
    base = store.current_rv
    for i in range(5):
        await store.create("pods", make_pod(f"p{i}"))
    if too_old:
        expected = rf"resourceVersion {base + watch_from} is too old \(oldest available {base + 2}\)"
        with pytest.raises(TooOld, match=expected):
            store.watch("pods", base + watch_from)
    else:
        watch = store.watch("pods", base + watch_from)
        assert [rv for _, _, rv in await take(watch, 5 - watch_from, base)] == list(range(watch_from + 1, 6))
        watch.close()


async def test_values_go_through_the_transformer(backend: Backend) -> None:
    transformer = Reverser()
    store = await backend.open(transformer=transformer)
    await store.create("secrets", make_secret(b"plain-value-123"))
    assert store.get("secrets", "default", "db").data["k"] == b"plain-value-123"  # memory: plain
    raw = await backend.raw("secrets", "default", "db")
    assert raw is not None and b"plain-value-123" not in raw and b"plain-value-123"[::-1] in raw
    await store.close()

    reopened = await backend.open(transformer=Reverser())
    assert reopened.get("secrets", "default", "db").data["k"] == b"plain-value-123"
    await reopened.close()
    with pytest.raises(ValueError, match="^cannot read secrets default/db$"):
        await backend.open(transformer=Reverser(refuse=True))


async def test_secrets_are_encrypted_at_rest(backend: Backend, tmp_path: Path) -> None:
    encryption = SecretEncryption(tmp_path / "encryption-key")
    encryption.load()
    encryption.ensure_key()
    store = await backend.open(transformer=encryption)
    await store.create("secrets", make_secret(b"s3cret-value"))
    cm = objects_pb2.ConfigMap(data={"visible": "config-value-in-clear"})
    cm.metadata.namespace, cm.metadata.name = "default", "cfg"
    await store.create("configmaps", cm)

    sealed = await backend.raw("secrets", "default", "db")
    assert sealed is not None and sealed.startswith(SEALED_PREFIX) and b"s3cret-value" not in sealed
    assert b"config-value-in-clear" in (await backend.raw("configmaps", "default", "cfg") or b"")
    await store.close()
    again = SecretEncryption(tmp_path / "encryption-key")
    again.load()
    reopened = await backend.open(transformer=again)
    assert reopened.get("secrets", "default", "db").data["k"] == b"s3cret-value"


# ---- etcd only ----


@pytest.fixture
async def etcd_backend(etcd: EtcdCluster, tmp_path: Path) -> AsyncIterator[Backend]:
    await wipe(etcd.url)
    b = Backend("etcd", etcd.url, tmp_path)
    yield b
    await b.close_all()


async def test_etcd_key_layout_and_values(etcd_backend: Backend) -> None:
    store = await etcd_backend.open()
    pod = await store.create("pods", make_pod("web", namespace="prod"))
    node = await store.create("nodes", make_node("n1"))
    async with etcd_client(etcd_backend.url) as client:
        listed = await client.get_prefix(b"/registry/")
        keys = {kv.key: (kv.mod_revision, kv) for kv in listed.kvs}
    assert set(keys) == {b"/registry/pods/prod/web", b"/registry/nodes/n1"}
    mod_revision, kv = keys[b"/registry/pods/prod/web"]
    assert mod_revision == rv_of(pod)
    stored = objects_pb2.Pod.FromString(kv.value)
    assert stored.metadata.resource_version == ""  # the resourceVersion is the key's mod_revision
    stored.metadata.resource_version = pod.metadata.resource_version
    assert stored == pod
    assert keys[b"/registry/nodes/n1"][0] == rv_of(node)


async def test_etcd_two_stores_see_each_others_writes(etcd_backend: Backend) -> None:
    first = await etcd_backend.open()
    second = await etcd_backend.open()
    watch = second.watch("pods", second.current_rv)
    created = await first.create("pods", make_pod("a"))
    assert (await next_event(watch)).resource_version == rv_of(created)
    assert second.get("pods", "default", "a") == created

    # A write based on what the other store wrote over it is refused; mutate retries and wins.
    await second.mutate("pods", "default", "a", lambda p: (p.metadata.labels.update(by="second"), p)[1])
    with pytest.raises(Conflict):
        await first.update("pods", created)
    await wait_until(lambda: first.current_rv == second.current_rv)
    done = await first.mutate("pods", "default", "a", lambda p: (p.metadata.labels.update(x="1"), p)[1])
    assert dict(done.metadata.labels) == {"by": "second", "x": "1"}
    await wait_until(lambda: second.get("pods", "default", "a") == done)


async def test_etcd_mutate_on_a_stale_copy_retries_with_the_current_value(etcd_backend: Backend) -> None:
    first = await etcd_backend.open()
    second = await etcd_backend.open()
    await first.create("pods", make_pod("a"))
    await wait_until(lambda: second.current_rv == first.current_rv)
    second_watch = second.watch("pods", second.current_rv)
    await first.mutate("pods", "default", "a", lambda p: (p.metadata.labels.update(one="1"), p)[1])
    calls: list[dict] = []

    def add(pod):
        calls.append(dict(pod.metadata.labels))
        pod.metadata.labels["two"] = "2"
        return pod

    # Races the watch: either second saw "one" already, or its compare fails and it retries.
    done = await second.mutate("pods", "default", "a", add)
    assert dict(done.metadata.labels) == {"one": "1", "two": "2"}
    assert calls[-1] == {"one": "1"}
    second_watch.close()


async def test_etcd_compaction_ends_watches_with_too_old_and_relists(etcd_backend: Backend) -> None:
    store = await etcd_backend.open()
    follower = await etcd_backend.open()
    await store.create("pods", make_pod("a"))
    await wait_until(lambda: follower.current_rv == store.current_rv)
    watch = follower.watch("pods", follower.current_rv)
    # The follower stops hearing from etcd (its watch is paused by cancelling its task) while
    # writes happen and etcd compacts them away.
    follower._follower.cancel()  # noqa: SLF001 (simulates a long disconnection)
    await asyncio.gather(follower._follower, return_exceptions=True)  # noqa: SLF001
    await store.create("pods", make_pod("b"))
    await store.delete("pods", "default", "a")
    async with etcd_client(etcd_backend.url) as client:
        await client.compact(store.current_rv, physical=True)
    follower._follower = asyncio.get_running_loop().create_task(follower._follow())  # noqa: SLF001

    with pytest.raises(TooOld):
        await next_event(watch)
    await wait_until(lambda: follower.current_rv >= store.current_rv)
    assert [p.metadata.name for p in follower.list("pods")[0]] == ["b"]
    with pytest.raises(TooOld):
        follower.watch("pods", rv_of(store.get("pods", "default", "b")) - 1)
    relisted = follower.watch("pods", follower.current_rv)
    created = await store.create("pods", make_pod("c"))
    assert (await next_event(relisted)).resource_version == rv_of(created)
    relisted.close()


async def test_etcd_objects_with_a_ttl_expire_by_their_lease(etcd_backend: Backend) -> None:
    store = open_store(etcd_backend.url, ttls={"events": 1.0})
    await store.open()
    try:
        event = objects_pb2.Event(api_version="v1", kind="Event", reason="Checked")
        event.metadata.name, event.metadata.namespace = "web.1", "default"
        await store.create("events", event)
        await store.create("pods", make_pod("stays"))
        async with etcd_client(etcd_backend.url) as client:
            leases = {kv.key: kv.lease for kv in (await client.get_prefix(b"/registry/")).kvs}
        assert leases[object_key("events", "default", "web.1")] != 0
        assert leases[object_key("pods", "default", "stays")] == 0
        # etcd deletes it (no master's TTL controller runs here); the copy follows the watch.
        await wait_until(lambda: not store.list("events", "default")[0], timeout=20)
        assert store.get("pods", "default", "stays").metadata.name == "stays"
    finally:
        await store.close()
