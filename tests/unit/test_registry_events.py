"""The event registry (pymaster.registry.events) and the event TTL controller
(pymaster.controllers.event_ttl) over a real SQLite store in tmp_path, with a fake clock: folding
of repeats, who may report what, the per-node rate limit, validation, and expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from master_fixtures import event_manifest, eventually

from pymaster.api import objects_pb2
from pymaster.api.errors import Forbidden, MethodNotAllowed, NotFound, ValidationError
from pymaster.controllers.event_ttl import EventTTLController
from pymaster.registry import Registry
from pymaster.registry.events import EventRecorder, EventRegistry, reference
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

T0 = 1_700_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events(store, clock) -> EventRegistry:
    return EventRegistry(store, clock, rate=1.0, burst=3)


def stored(store: SQLiteStore) -> list[objects_pb2.Event]:
    return store.list("events")[0]


async def bound(store: SQLiteStore, name: str, node: str, uid: str = "") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.namespace, pod.metadata.name, pod.metadata.uid = "default", name, uid or f"uid-{name}"
    pod.spec.containers.add(name="app", image="busybox:1.35")
    pod.spec.node_name = node
    return await store.create("pods", pod)


# ---- folding ----


async def test_a_repeat_is_folded_into_the_stored_event(store, clock, events):
    assert await events.record([event_manifest("web", message="pulled busybox")]) == 1
    first = stored(store)[0]
    assert (first.count, first.first_timestamp.seconds, first.last_timestamp.seconds) == (1, T0, T0)
    assert first.metadata.name.startswith("web.") and first.metadata.uid
    assert (first.metadata.namespace, first.type) == ("default", "Normal")

    clock.now += 7
    assert await events.record([event_manifest("web", message="pulled busybox")]) == 1
    [folded] = stored(store)  # one stored object
    assert (folded.metadata.name, folded.metadata.uid) == (first.metadata.name, first.metadata.uid)
    assert folded.count == 2
    assert (folded.first_timestamp.seconds, folded.last_timestamp.seconds) == (T0, T0 + 7)


async def test_events_that_differ_are_not_folded(store, events):
    await events.record([event_manifest("web", message="pulled busybox")])
    await events.record([event_manifest("web", message="pulled nginx")])  # another message
    await events.record([event_manifest("web", reason="Killing", message="pulled busybox")])
    await events.record([event_manifest("db", message="pulled busybox")])  # another object
    warning = event_manifest("web", message="pulled busybox")
    warning.type = "Warning"
    await events.record([warning])
    assert sorted((e.involved_object.name, e.reason, e.message, e.type, e.count) for e in stored(store)) == [
        ("db", "Pulled", "pulled busybox", "Normal", 1),
        ("web", "Killing", "pulled busybox", "Normal", 1),
        ("web", "Pulled", "pulled busybox", "Normal", 1),
        ("web", "Pulled", "pulled busybox", "Warning", 1),
        ("web", "Pulled", "pulled nginx", "Normal", 1),
    ]


async def test_a_batch_folds_its_repeats_and_writes_the_rest_together(store, events):
    batch = [event_manifest("web"), event_manifest("db"), event_manifest("web"), event_manifest("web")]
    assert await events.record(batch) == 4
    assert sorted((e.involved_object.name, e.count) for e in stored(store)) == [("db", 1), ("web", 3)]


async def test_the_recorder_keeps_up_with_a_full_queue_by_writing_in_batches(store, events):
    """A component that queues events faster than one commit each (the scheduler binding hundreds
    of pods a second) loses none while the queue has room: the recorder writes what queued."""
    recorder = EventRecorder(events, "default-scheduler")
    writes: list[int] = []
    record = events.record

    async def counted(batch, node=None):
        writes.append(len(batch))
        return await record(batch, node)

    events.record = counted
    for i in range(EventRecorder.QUEUE_SIZE):
        recorder.record(reference(await bound(store, f"p{i}", "n1")), "Normal", "Scheduled", f"to n1 ({i})")
    recorder.start()

    async def count() -> int:
        return len(stored(store))

    try:
        await eventually(count, lambda n: n == EventRecorder.QUEUE_SIZE, 30)
    finally:
        await recorder.stop()
    assert (recorder.dropped, sum(writes)) == (0, EventRecorder.QUEUE_SIZE)
    assert len(writes) <= -(-EventRecorder.QUEUE_SIZE // EventRecorder.BATCH_SIZE)


async def test_a_repeat_of_an_event_deleted_meanwhile_starts_a_new_one(store, events):
    await events.record([event_manifest("web")])
    [first] = stored(store)
    await events.delete("default", first.metadata.name)
    await events.record([event_manifest("web")])
    [again] = stored(store)
    assert again.count == 1 and again.metadata.uid != first.metadata.uid


# ---- who may report what ----


async def test_a_node_records_about_itself_and_its_own_pods(store, events):
    await bound(store, "mine", "n1")
    about_pod = event_manifest("mine", host="n1")
    about_pod_by_uid = event_manifest("mine", host="n1", reason="Started", uid="uid-mine")
    about_node = event_manifest("n1", kind="Node", reason="NodeReady", host="n1")
    assert await events.record([about_pod, about_pod_by_uid, about_node], node="n1") == 3
    assert sorted((e.involved_object.kind, e.source.host) for e in stored(store)) == [
        ("Node", "n1"), ("Pod", "n1"), ("Pod", "n1"),
    ]


NOT_OWN = 'node "n1" may record events only about itself and the pods bound to it, not '


@pytest.mark.parametrize(
    "event, message",
    [
        (event_manifest("mine", host="n2"), 'node "n1" may not record events as source.host "n2"'),
        (event_manifest("mine"), 'node "n1" may not record events as source.host ""'),
        (event_manifest("theirs", host="n1"), NOT_OWN + "Pod default/theirs"),
        (event_manifest("pending", host="n1"), NOT_OWN + "Pod default/pending"),
        (event_manifest("gone", host="n1"), NOT_OWN + "Pod default/gone"),
        (event_manifest("mine", host="n1", uid="uid-of-an-older-mine"), NOT_OWN + "Pod default/mine"),
        (event_manifest("mine", host="n1", namespace="kube-system"), NOT_OWN + "Pod kube-system/mine"),
        (event_manifest("n2", kind="Node", host="n1"), NOT_OWN + "Node "),
        (event_manifest("mine", kind="Secret", host="n1"), NOT_OWN + "Secret "),
    ],
)
async def test_a_node_may_not_report_as_another_or_about_what_is_not_its_own(store, events, event, message):
    await bound(store, "mine", "n1")
    await bound(store, "theirs", "n2")
    await bound(store, "pending", "")
    with pytest.raises(Forbidden) as err:
        await events.record([event], node="n1")
    assert err.value.message.startswith(message)
    assert err.value.message.endswith(event.involved_object.name) or "source.host" in message
    assert stored(store) == []


async def test_a_refused_event_refuses_its_whole_batch(store, events):
    """Documented: a batch is judged whole first, so a retry never counts an event twice."""
    await bound(store, "mine", "n1")
    batch = [event_manifest("mine", host="n1", reason="A"), event_manifest("mine", host="n2", reason="B"),
             event_manifest("mine", host="n1", reason="C")]
    with pytest.raises(Forbidden):
        await events.record(batch, node="n1")
    assert stored(store) == []


async def test_the_master_itself_records_about_anything(store, events):
    assert await events.record([event_manifest("theirs"), event_manifest("n9", kind="Node")]) == 2


# ---- the per-node rate limit ----


async def test_a_node_is_limited_to_its_burst_then_refills_with_time(store, clock, events):
    await bound(store, "a", "n1")
    await bound(store, "b", "n2")

    def batch(about: str, host: str, n: int) -> list[objects_pb2.Event]:
        return [event_manifest(about, host=host, message=f"m{i}") for i in range(n)]

    assert await events.record(batch("a", "n1", 5), node="n1") == 3  # burst 3: two dropped
    assert events.dropped == 2
    assert len(stored(store)) == 3
    assert await events.record(batch("a", "n1", 1), node="n1") == 0  # nothing left, same instant
    assert await events.record(batch("b", "n2", 3), node="n2") == 3  # another node: its own bucket

    clock.now += 2  # rate 1/s: two more
    assert await events.record(batch("a", "n1", 3), node="n1") == 2
    clock.now += 3600  # refills up to the burst, never beyond
    assert await events.record(batch("a", "n1", 5), node="n1") == 3
    # A repeat that folds costs a token too: a node cannot hammer one event either.
    clock.now += 1
    assert await events.record([event_manifest("a", host="n1", message="m0")] * 2, node="n1") == 1
    assert events.dropped == 2 + 1 + 1 + 2 + 1
    # The master's own components are not limited.
    assert await events.record(batch("a", "", 10)) == 10


# ---- validation and the user verbs ----


def _with(change: Callable[[objects_pb2.Event], None]) -> objects_pb2.Event:
    event = event_manifest("web")
    change(event)
    return event


def _bad_involved_namespace(event: objects_pb2.Event) -> None:
    event.metadata.namespace = "default"  # else the event's namespace is the involved one's, judged first
    event.involved_object.namespace = "Not Valid"


@pytest.mark.parametrize(
    "event, field",
    [
        (_with(lambda e: e.ClearField("reason")), "reason: required"),
        (_with(lambda e: setattr(e.involved_object, "kind", "")), "involvedObject.kind: required"),
        (_with(_bad_involved_namespace), "involvedObject.namespace: "),
        (_with(lambda e: setattr(e, "type", "Catastrophic")), "type: "),
        (_with(lambda e: setattr(e, "count", -3)), "count: must be at least 1"),
        (_with(lambda e: setattr(e, "message", "x" * 100_000)), "message: "),
        (_with(lambda e: setattr(e, "reason", "r" * 200)), "reason: "),
        (_with(lambda e: setattr(e, "kind", "Pod")), "kind: "),
        (_with(lambda e: setattr(e.source, "host", "h" * 300)), "source.host: "),
    ],
)
async def test_invalid_events_are_refused_naming_the_field(store, events, event, field):
    with pytest.raises(ValidationError) as err:
        await events.record([event])
    assert err.value.message.startswith(field)
    with pytest.raises(ValidationError) as err:
        await events.create(event)
    assert err.value.message.startswith(field)
    assert stored(store) == []


async def test_an_event_about_nothing_is_refused_naming_involved_object_name(store, events):
    nameless = _with(lambda e: setattr(e.involved_object, "name", ""))
    for call in (lambda: events.record([nameless]), lambda: events.create(nameless)):
        with pytest.raises(ValidationError) as err:
            await call()
        assert err.value.message == "involvedObject.name: required"
    assert stored(store) == []


@pytest.mark.parametrize("field, attribute", [("firstTimestamp", "first_timestamp"),
                                              ("lastTimestamp", "last_timestamp")])
async def test_timestamps_rfc3339_cannot_express_are_refused(store, events, field, attribute):
    event = event_manifest("web")
    getattr(event, attribute).seconds = 253402300800  # 10000-01-01T00:00:00Z
    for call in (lambda: events.record([event]), lambda: events.create(event)):
        with pytest.raises(ValidationError) as err:
            await call()
        assert err.value.message.startswith(f"{field}: timestamp out of range")
    assert stored(store) == []


async def test_users_create_and_delete_but_never_apply_or_update(store, events):
    named = event_manifest("web")
    named.metadata.name = "web.manual"
    created = await events.create(named)
    assert created.metadata.name == "web.manual" and created.count == 1
    assert (await events.create(event_manifest("web"))).metadata.name.startswith("web.")
    with pytest.raises(MethodNotAllowed, match="events cannot be applied"):
        await events.apply(named)
    with pytest.raises(MethodNotAllowed, match="events cannot be updated: repeats are folded"):
        await events.update(created)
    await events.delete("", "web.manual")  # "": the default namespace
    with pytest.raises(NotFound):
        await events.delete("default", "web.manual")
    assert len(stored(store)) == 1


# ---- expiry ----


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def exists(store: SQLiteStore, name: str) -> bool:
    try:
        store.get("events", "default", name)
    except NotFound:
        return False
    return True


async def test_ttl_deletes_events_after_their_last_occurrence(store, clock):
    registry = Registry(store, NodeLeases(40), clock=clock)
    stale = await registry.events.create(event_manifest("old"))  # at T0, before the controller runs
    clock.now = T0 + 10
    # The controller sleeps until the next deadline (fake seconds, so at most 1.5 s of real time
    # here), then reads the clock again; the clock never passes a deadline before the test means it.
    controller = EventTTLController(registry, ttl=1.5, clock=clock)
    controller.start()
    try:
        await wait_for(lambda: not exists(store, stale.metadata.name))  # found by the first list

        await registry.events.record([event_manifest("folded")])  # lastTimestamp T0+10
        await registry.events.record([event_manifest("once")])  # T0+10 too
        clock.now = T0 + 11
        await registry.events.record([event_manifest("folded")])  # folded: lastTimestamp T0+11
        folded = next(e for e in stored(store) if e.involved_object.name == "folded")
        once = next(e for e in stored(store) if e.involved_object.name == "once")
        assert (folded.count, folded.last_timestamp.seconds) == (2, T0 + 11)

        clock.now = T0 + 12  # past both first occurrences' deadlines (T0+11.5), not the fold's
        await wait_for(lambda: not exists(store, once.metadata.name))
        # The first deadline of "folded" sorts before "once"'s: it was looked at, and kept.
        assert store.get("events", "default", folded.metadata.name).count == 2

        clock.now = T0 + 13  # past the fold's deadline (T0+12.5)
        await wait_for(lambda: not exists(store, folded.metadata.name))
    finally:
        await controller.stop()
