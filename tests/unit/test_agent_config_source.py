"""The desired pod set from the master's bound-pods stream: snapshots replace, changes update."""

from __future__ import annotations

import asyncio

import pytest

from pykubelet.config_source import ConfigSource, apply_event
from pymaster.api import errors, objects_pb2, services_pb2

Type = services_pb2.BoundPodsEvent.Type


def pod(uid: str, rv: str = "1") -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.uid, p.metadata.name, p.metadata.resource_version = uid, f"pod-{uid}", rv
    return p


def event(kind: int, *pods: objects_pb2.Pod) -> services_pb2.BoundPodsEvent:
    return services_pb2.BoundPodsEvent(type=kind, pods=list(pods))


@pytest.mark.parametrize(
    ("before", "ev", "after", "changed"),
    [
        ({}, event(Type.SNAPSHOT), {}, set()),
        ({}, event(Type.SNAPSHOT, pod("a"), pod("b")), {"a": "1", "b": "1"}, {"a", "b"}),
        # A snapshot after a gap: a (unchanged) stays quiet, b changed, c vanished, d is new.
        (
            {"a": "1", "b": "1", "c": "1"},
            event(Type.SNAPSHOT, pod("a"), pod("b", "2"), pod("d")),
            {"a": "1", "b": "2", "d": "1"},
            {"b", "c", "d"},
        ),
        ({"a": "1"}, event(Type.UPSERT, pod("a", "2")), {"a": "2"}, {"a"}),
        ({"a": "1"}, event(Type.UPSERT, pod("b")), {"a": "1", "b": "1"}, {"b"}),
        ({"a": "1", "b": "1"}, event(Type.REMOVED, pod("a")), {"b": "1"}, {"a"}),
        ({"a": "1"}, event(Type.REMOVED, pod("zz")), {"a": "1"}, {"zz"}),
    ],
)
def test_apply_event(
    before: dict[str, str], ev: services_pb2.BoundPodsEvent, after: dict[str, str], changed: set[str]
) -> None:
    pods = {uid: pod(uid, rv) for uid, rv in before.items()}
    assert apply_event(pods, ev) == changed
    assert {uid: p.metadata.resource_version for uid, p in pods.items()} == after


class FakeClient:
    """Streams scripted sessions; each session is a list of events, then an error or the end."""

    def __init__(self, sessions: list[list[services_pb2.BoundPodsEvent | BaseException]]):
        self.sessions = sessions
        self.opened = 0

    async def watch_bound_pods(self, node_name: str):
        self.opened += 1
        if not self.sessions:
            await asyncio.Event().wait()  # the last session stays open
        for item in self.sessions.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


async def test_reconnects_and_the_next_snapshot_is_authoritative() -> None:
    client = FakeClient([
        [errors.Unavailable("master down")],
        [event(Type.SNAPSHOT, pod("a"), pod("b")), event(Type.UPSERT, pod("c"))],
        [event(Type.SNAPSHOT, pod("a"), pod("c"))],
    ])
    changes: list[str] = []
    source = ConfigSource(client, "n1", changes.append)  # type: ignore[arg-type]
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), 5)
        async with asyncio.timeout(10):
            while client.opened < 4:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert set(source.pods) == {"a", "c"}
    assert sorted(changes) == ["a", "b", "b", "c"]


async def test_cancelling_the_loop_stops_it() -> None:
    client = FakeClient([[event(Type.SNAPSHOT, pod("a"))]])
    source = ConfigSource(client, "n1", lambda uid: None)  # type: ignore[arg-type]
    task = asyncio.create_task(source.run())
    await asyncio.wait_for(source.synced.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
