"""Filtered lists and watches (pymaster.registry.watch): namespaces, selectors and what a
filtered watcher sees when objects enter or leave its selection; the events a watcher has ready
(pymaster.store.events) going out together, in batches of a limited size."""

from __future__ import annotations

import asyncio

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import TooOld, ValidationError
from pymaster.registry.watch import ObjectFilter, parse_resource_version, watch_batches, watch_event_type
from pymaster.store import open_store, sqlite_url
from pymaster.store.base import WatchEvent
from pymaster.store.events import EventLog


def make_pod(node: str, labels: dict[str, str], phase: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "default", "uid-1"
    pod.metadata.labels.update(labels)
    pod.spec.node_name = node
    pod.status.phase = phase
    return pod


@pytest.mark.parametrize(
    ("namespace", "labels", "fields", "expected"),
    [
        ("", "", "", True),
        ("default", "", "", True),
        ("kube-system", "", "", False),
        ("", "app=web", "", True),
        ("", "app!=web", "", False),
        ("", "", "spec.nodeName=n1", True),
        ("", "", "status.phase=Running", False),
        ("default", "app in (web,db)", "metadata.name=web", True),
    ],
)
def test_object_filter_pods(namespace, labels, fields, expected):
    pod = make_pod(node="n1", labels={"app": "web"}, phase="Pending")
    selection = ObjectFilter("pods", namespace, labels, fields)
    assert selection.matches(pod) is expected
    assert selection.has_selectors is bool(labels or fields)


def test_object_filter_nodes_ignore_request_namespace():
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    assert ObjectFilter("nodes", "default", "", "spec.unschedulable=false").matches(node)


@pytest.mark.parametrize(
    ("labels", "fields", "field"),
    [("app in web", "", "labelSelector"), ("", "spec.image=x", "fieldSelector")],
)
def test_object_filter_rejects_bad_selectors(labels, fields, field):
    with pytest.raises(ValidationError) as err:
        ObjectFilter("pods", "", labels, fields)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("store_type", "matches", "was_matched", "expected"),
    [
        ("ADDED", True, False, "ADDED"),
        ("ADDED", False, False, None),
        ("MODIFIED", True, True, "MODIFIED"),
        ("MODIFIED", True, False, "ADDED"),  # entered the selection
        ("MODIFIED", False, True, "DELETED"),  # left the selection
        ("MODIFIED", False, False, None),
        ("DELETED", True, True, "DELETED"),
        ("DELETED", False, True, "DELETED"),
        ("DELETED", False, False, None),
    ],
)
def test_watch_event_type(store_type, matches, was_matched, expected):
    assert watch_event_type(store_type, matches, was_matched) == expected


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("42", True), ("-1", False), ("abc", False)])
def test_parse_resource_version(value, ok):
    if ok:
        assert parse_resource_version(value) == int(value)
    else:
        with pytest.raises(ValidationError) as err:
            parse_resource_version(value)
        assert err.value.field == "resourceVersion"


# ---- batches: the events that were ready together ----


def pod_event(name: str, rv: int, labels: dict[str, str] | None = None) -> WatchEvent:
    pod = make_pod("", labels or {"app": "web"}, "Pending")
    pod.metadata.name = name
    return WatchEvent("ADDED", pod, rv)


def test_a_watcher_hands_over_what_is_ready_without_waiting():
    log = EventLog()
    watch = log.watch("pods", 0)
    for rv, name in enumerate("abcd", start=1):
        log.append("pods", pod_event(name, rv))
    assert [e.object.metadata.name for e in watch.ready(3)] == ["a", "b", "c"]
    assert [e.object.metadata.name for e in watch.ready(3)] == ["d"]
    assert watch.ready(3) == []
    # A watch resumed from the log: its backlog first.
    resumed = log.watch("pods", 2)
    log.append("pods", pod_event("e", 5))
    assert [e.object.metadata.name for e in resumed.ready(10)] == ["c", "d", "e"]


async def test_a_watcher_that_fell_behind_ends_after_what_ready_took():
    log = EventLog(queue_size=2)
    watch = log.watch("pods", 0)
    for rv, name in enumerate("abc", start=1):  # the third overflows the queue of two
        log.append("pods", pod_event(name, rv))
    assert watch.ready(10) == []  # dropped: the watcher must list again
    with pytest.raises(TooOld):
        await anext(watch)
    closed = log.watch("pods", 3)
    closed.close()
    assert closed.ready(10) == []
    with pytest.raises(StopAsyncIteration):
        await anext(closed)


async def test_watch_batches_hold_the_ready_events_that_match(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    await store.open()
    try:
        selection = ObjectFilter("pods", "default", "app=web")
        batches = watch_batches(store, "pods", selection, str(store.current_rv), limit=3)
        for name, app in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "web"), ("e", "web")]:
            pod = make_pod("", {"app": app}, "Pending")
            pod.metadata.name = name
            await store.create("pods", pod)

        def names(batch: list) -> list[tuple[str, str]]:
            return [(event_type, obj.metadata.name) for event_type, obj in batch]

        # Three store events at most a batch (a, b, c); b is not selected.
        assert names(await anext(batches)) == [("ADDED", "a"), ("ADDED", "c")]
        assert names(await anext(batches)) == [("ADDED", "d"), ("ADDED", "e")]
        next_batch = asyncio.ensure_future(anext(batches))
        await store.mutate("pods", "default", "a", lambda p: p)
        assert names(await asyncio.wait_for(next_batch, 10)) == [("MODIFIED", "a")]
        await batches.aclose()
    finally:
        await store.close()
