"""The status manager: pushes only changed statuses, from its own task, retrying failures; and
confirms terminated pods after their last status."""

from __future__ import annotations

import asyncio

import pytest

from pykubelet.status import StatusManager, status_differs
from pymaster.api import errors, objects_pb2


def status(
    phase: str = "Running", probe_second: int = 0, transition_second: int = 0
) -> objects_pb2.PodStatus:
    s = objects_pb2.PodStatus(phase=phase, pod_ip="172.17.0.2")
    c = s.conditions.add(type="Ready", status="True")
    c.last_probe_time.seconds = probe_second
    c.last_transition_time.seconds = transition_second
    return s


@pytest.mark.parametrize(
    ("old", "new", "differs"),
    [
        (None, status(), True),
        (status(), status(), False),
        (status(probe_second=1), status(probe_second=99), False),  # lastProbeTime is noise
        (status(), status(phase="Succeeded"), True),
        (status(transition_second=1), status(transition_second=2), True),
    ],
)
def test_status_differs(old: objects_pb2.PodStatus | None, new: objects_pb2.PodStatus, differs: bool) -> None:
    assert status_differs(old, new) is differs


def pod(uid: str = "u1") -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.uid, p.metadata.name, p.metadata.namespace = uid, "web", "default"
    return p


class FakeClient:
    def __init__(
        self, failures: list[Exception] | None = None, confirm_failures: list[Exception] | None = None
    ):
        self.failures = failures or []
        self.confirm_failures = confirm_failures or []
        self.pushed: list[tuple[str, str, str, str]] = []
        self.calls = 0

    async def confirm_pod_terminated(self, namespace: str, name: str, uid: str) -> None:
        self.calls += 1
        if self.confirm_failures:
            raise self.confirm_failures.pop(0)
        self.pushed.append((namespace, name, uid, "terminated"))

    async def update_pod_status(self, namespace: str, name: str, uid: str, st: objects_pb2.PodStatus):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.pushed.append((namespace, name, uid, st.phase))
        return objects_pb2.Pod()


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_pushes_only_changes() -> None:
    client = FakeClient()
    manager = StatusManager(client)  # type: ignore[arg-type]
    task = asyncio.create_task(manager.run())
    try:
        assert manager.set_status(pod(), status())
        assert not manager.set_status(pod(), status(probe_second=5))
        await wait_for(lambda: manager.pending() == 0)
        assert manager.set_status(pod(), status("Succeeded"))
        await wait_for(lambda: manager.pending() == 0)
    finally:
        task.cancel()
    assert client.pushed == [("default", "web", "u1", "Running"), ("default", "web", "u1", "Succeeded")]
    assert manager.get("u1").phase == "Succeeded"


async def test_retries_unavailable_and_drops_not_found() -> None:
    client = FakeClient([errors.Unavailable("down"), errors.NotFound("pod gone")])
    manager = StatusManager(client)  # type: ignore[arg-type]
    task = asyncio.create_task(manager.run())
    try:
        manager.set_status(pod(), status())
        await wait_for(lambda: manager.pending() == 0)
    finally:
        task.cancel()
    assert client.calls == 2 and client.pushed == []


async def test_forget_drops_pending_and_cache() -> None:
    manager = StatusManager(FakeClient())  # type: ignore[arg-type]
    manager.set_status(pod(), status())
    manager.forget("u1")
    assert manager.pending() == 0 and manager.get("u1") is None
    assert manager.set_status(pod(), status())


async def test_termination_is_confirmed_after_the_last_status_and_retried() -> None:
    client = FakeClient(confirm_failures=[errors.Unavailable("master down")])
    manager = StatusManager(client)  # type: ignore[arg-type]
    manager.set_status(pod(), status("Failed"))
    manager.terminated(pod())
    manager.forget("u1")  # the worker ends; the confirmation is still owed
    assert manager.pending() == 1
    task = asyncio.create_task(manager.run())
    try:
        await wait_for(lambda: manager.pending() == 0)
    finally:
        task.cancel()
    assert client.pushed == [("default", "web", "u1", "terminated")]
    assert client.calls == 2


async def test_confirmation_waits_for_a_pending_status() -> None:
    client = FakeClient()
    manager = StatusManager(client)  # type: ignore[arg-type]
    manager.set_status(pod(), status("Failed"))
    manager.terminated(pod())
    task = asyncio.create_task(manager.run())
    try:
        await wait_for(lambda: manager.pending() == 0)
    finally:
        task.cancel()
    assert client.pushed == [("default", "web", "u1", "Failed"), ("default", "web", "u1", "terminated")]
