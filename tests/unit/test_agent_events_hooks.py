"""The agent's event recorder (pykubelet.events: never waits, batches, retries while the master
is away, drops what the master refuses) and the lifecycle hook runner (pykubelet.lifecycle:
exec through the runtime, tcpSocket and httpGet to the pod's address, sleep, named ports)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from agent_builders import make_pod
from google.protobuf import json_format

from pykubelet import events as agent_events
from pykubelet.lifecycle import run_hook
from pykubelet.runtime.base import ExecResult
from pymaster.api import errors, objects_pb2
from tests.fakes import FakeRuntime


class FakeClient:
    """The master's RecordEvents: fails with ``failures`` in turn, then accepts."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.batches: list[list[objects_pb2.Event]] = []
        self.sent = asyncio.Event()

    async def record_events(self, batch: list[objects_pb2.Event]) -> int:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(batch)
        self.sent.set()
        return len(batch)


async def _run_until_sent(recorder: agent_events.EventRecorder, client: FakeClient) -> None:
    task = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(10):
            await client.sent.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pod_events_name_the_container_and_go_in_one_batch() -> None:
    client = FakeClient(errors.Unavailable("master restarting"))  # retried, not lost
    recorder = agent_events.EventRecorder(client, "n1")  # type: ignore[arg-type]
    pod = make_pod("web")
    pod.spec.init_containers.add(name="setup", image="busybox")
    recorder.pod_event(pod, "Normal", "Pulled", "already present", "setup")
    recorder.pod_event(pod, "Warning", "BackOff", "back-off", "web")
    recorder.node_event("Normal", "NodeReady", "ready")
    assert recorder.pending() == 3  # queued: recording never waits for the master
    await _run_until_sent(recorder, client)
    (batch,) = client.batches
    paths = [(e.involved_object.kind, e.involved_object.field_path, e.reason) for e in batch]
    assert paths == [
        ("Pod", "spec.initContainers{setup}", "Pulled"),
        ("Pod", "spec.containers{web}", "BackOff"),
        ("Node", "", "NodeReady"),
    ]
    assert {(e.source.component, e.source.host) for e in batch} == {("kubelet", "n1")}
    assert batch[0].first_timestamp == batch[0].last_timestamp and batch[0].first_timestamp.seconds > 0


async def test_refused_batches_are_dropped_and_counted() -> None:
    client = FakeClient(errors.Forbidden("not your pod"))
    dropped: list[int] = []
    recorder = agent_events.EventRecorder(
        client, "n1", on_dropped=dropped.append  # type: ignore[arg-type]
    )
    recorder.pod_event(make_pod(), "Normal", "Started", "Started container app", "app")
    recorder.pod_event(make_pod(), "Normal", "Killing", "Stopping container app", "app")
    await _run_until_sent_or_drained(recorder)
    assert dropped == [2] and recorder.dropped == 2 and client.batches == []


async def _run_until_sent_or_drained(recorder: agent_events.EventRecorder) -> None:
    task = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(10):
            while recorder.pending() or not recorder.dropped:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_full_queue_drops_instead_of_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_events, "QUEUE_SIZE", 2)

    async def record() -> agent_events.EventRecorder:
        recorder = agent_events.EventRecorder(FakeClient(), "n1")  # type: ignore[arg-type]
        for i in range(5):
            recorder.node_event("Normal", "Test", str(i))
        return recorder

    recorder = asyncio.run(record())
    assert (recorder.pending(), recorder.dropped) == (2, 3)


# ---- lifecycle hooks ----


def _handler(**fields: object) -> objects_pb2.LifecycleHandler:
    return json_format.ParseDict(fields, objects_pb2.LifecycleHandler())


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A local HTTP/TCP server: records each request's first line, answers 200 (500 for /fail)."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        seen.append(line)
        if line:
            status = b"500 Internal Server Error" if b"/fail" in line else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()
    await server.wait_closed()


async def test_exec_hook_runs_in_the_container() -> None:
    runtime = FakeRuntime()
    pod = make_pod()
    spec = pod.spec.containers[0]
    info = await runtime.start_container(pod, spec, "n1", await runtime.start_infra(pod, "n1", "p"), 0)
    touch = _handler(exec={"command": ["touch", "/ready"]})
    ok = await run_hook(runtime, touch, spec, info.id, "10.0.0.5", 5)
    assert ok.ok and ("exec", info.id, ("touch", "/ready")) in runtime.calls
    runtime.exec_results[info.id] = ExecResult(4, b"", b"no such file\n")
    failed = await run_hook(runtime, _handler(exec={"command": ["false"]}), spec, info.id, "10.0.0.5", 5)
    assert not failed.ok and "no such file" in failed.message


async def test_network_hooks_reach_the_pod_address_and_named_ports(listener) -> None:
    port, seen = listener
    container = objects_pb2.Container(name="app")
    container.ports.add(name="admin", container_port=port)
    runtime = FakeRuntime()
    http = await run_hook(runtime, _handler(httpGet={"path": "/drain", "port": {"strValue": "admin"}}),
                          container, "c1", "127.0.0.1", 5)
    assert http.ok and seen[-1].startswith(b"GET /drain HTTP/1.1")
    failing = await run_hook(runtime, _handler(httpGet={"path": "/fail", "port": {"intValue": port}}),
                             container, "c1", "127.0.0.1", 5)
    assert not failing.ok and "500" in failing.message
    tcp = await run_hook(
        runtime, _handler(tcpSocket={"port": {"intValue": port}}), container, "c1", "127.0.0.1", 5
    )
    assert tcp.ok
    unnamed = await run_hook(runtime, _handler(tcpSocket={"port": {"strValue": "nope"}}), container, "c1",
                             "127.0.0.1", 5)
    assert not unnamed.ok and "nope" in unnamed.message


async def test_sleep_hook_is_cut_at_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    hook = _handler(sleep={"seconds": 30})
    result = await run_hook(FakeRuntime(), hook, objects_pb2.Container(), "c1", "", 0.2)
    assert result.ok and loop.time() - began < 5
