"""The tcpSocket, grpc and exec probes against local servers and the shared fake runtime, and the
dispatch from a probe spec to its handler (host defaulting to the pod IP, named ports)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from pykubelet.prober import exec_probe, grpc_probe, tcp_probe
from pykubelet.prober.results import ProbeType, Result
from pykubelet.prober.targets import ProbeTarget, run_probe, timeout_message
from pykubelet.runtime.base import ExecResult, RuntimeUnavailable
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime, container, pod_runtime


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


# ---- tcp ----

async def test_tcp_open_port_succeeds(listener):
    assert (await tcp_probe.probe("127.0.0.1", listener, 1)).result is Result.SUCCESS


async def test_tcp_closed_port_fails_like_the_kubelet():
    port = closed_port()
    outcome = await tcp_probe.probe("127.0.0.1", port, 1)
    assert (outcome.result, outcome.message) == (
        Result.FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )


async def test_tcp_timeout_message(monkeypatch):
    async def never(*args, **kwargs):
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_connection", never)
    start = time.monotonic()
    outcome = await tcp_probe.probe("10.0.0.5", 9000, 0.2)
    assert (outcome.result, outcome.message) == (Result.FAILURE, "dial tcp 10.0.0.5:9000: i/o timeout")
    assert time.monotonic() - start < 2


# ---- grpc ----

@pytest.fixture
async def health() -> AsyncIterator[tuple[int, HealthServicer]]:
    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield port, servicer
    await server.stop(None)


async def test_grpc_serving_succeeds(health):
    port, _ = health
    outcome = await grpc_probe.probe("127.0.0.1", port, "", 2)
    assert (outcome.result, outcome.message) == (Result.SUCCESS, "service healthy")


async def test_grpc_not_serving_fails(health):
    port, _ = health
    outcome = await grpc_probe.probe("127.0.0.1", port, "db", 2)
    assert outcome.result is Result.FAILURE
    assert outcome.message == 'service unhealthy (responded with "NOT_SERVING")'


async def test_grpc_unknown_service_fails(health):
    port, _ = health
    outcome = await grpc_probe.probe("127.0.0.1", port, "nope", 2)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith("error: health rpc probe failed: rpc error: code = NotFound desc = ")


async def test_grpc_server_without_health_service_fails():
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        outcome = await grpc_probe.probe("127.0.0.1", port, "", 2)
    finally:
        await server.stop(None)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith("error: this server does not implement the grpc health protocol")


async def test_grpc_nothing_listening_fails_at_the_timeout():
    port = closed_port()
    start = time.monotonic()
    outcome = await grpc_probe.probe("127.0.0.1", port, "", 0.5)
    assert outcome.result is Result.FAILURE
    assert outcome.message == (
        f'timeout: failed to connect service "127.0.0.1:{port}" within 0.5s: context deadline exceeded'
    )
    assert time.monotonic() - start < 3


# ---- exec ----

def exec_runtime(result: ExecResult | None = None) -> FakeRuntime:
    runtime = FakeRuntime()
    runtime.pods["u1"] = pod_runtime(container("c1"))
    if result is not None:
        runtime.exec_results["c1"] = result
    return runtime


async def test_exec_exit_zero_succeeds():
    runtime = exec_runtime(ExecResult(0, b"fine\n", b""))
    outcome = await exec_probe.probe(runtime, "c1", ["cat", "/tmp/healthy"], 1)
    assert (outcome.result, outcome.message) == (Result.SUCCESS, "fine")
    assert runtime.calls == [("exec", "c1", ("cat", "/tmp/healthy"))]


async def test_exec_failure_carries_the_output_capped():
    runtime = exec_runtime(ExecResult(1, b"out ", b"cat: can't open '/tmp/healthy'" + b"!" * 20000))
    outcome = await exec_probe.probe(runtime, "c1", ["cat", "/tmp/healthy"], 1)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith("out cat: can't open '/tmp/healthy'")
    assert len(outcome.message) == exec_probe.MAX_OUTPUT


async def test_exec_failure_without_output_names_the_exit_code():
    outcome = await exec_probe.probe(exec_runtime(ExecResult(2, b"", b"")), "c1", ["test", "-f", "/x"], 1)
    assert outcome.message == "command test -f /x exited with code 2"


async def test_exec_timeout_is_a_failure():
    outcome = await exec_probe.probe(exec_runtime(ExecResult(-1, b"", b"", True)), "c1", ["sleep", "9"], 1)
    assert (outcome.result, outcome.message) == (Result.FAILURE, 'command "sleep 9" timed out')


async def test_exec_the_engine_refusing_is_thrown_away():
    outcome = await exec_probe.probe(exec_runtime(), "gone", ["true"], 1)
    assert outcome.result is Result.UNKNOWN

    class Down(FakeRuntime):
        async def exec(self, *args, **kwargs):
            raise RuntimeUnavailable("engine down")

    assert (await exec_probe.probe(Down(), "c1", ["true"], 1)).result is Result.UNKNOWN


# ---- dispatch ----

def port_of(port: int | str) -> objects_pb2.IntOrString:
    if isinstance(port, int):
        return objects_pb2.IntOrString(int_value=port)
    return objects_pb2.IntOrString(str_value=port)


def target(probe: objects_pb2.Probe, pod_ip: str = "127.0.0.1") -> ProbeTarget:
    spec = objects_pb2.Container(name="app")
    spec.ports.add(name="web", container_port=8080)
    return ProbeTarget(ProbeType.READINESS, probe, spec, "c1", pod_ip)


async def test_dispatch_resolves_named_ports_and_the_pod_ip(listener):
    port = listener
    probe = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=port_of(port)))
    assert (await run_probe(FakeRuntime(), target(probe), 1)).result is Result.SUCCESS
    # The host field wins over the pod IP.
    probe.tcp_socket.host = "127.0.0.1"
    assert (await run_probe(FakeRuntime(), target(probe, pod_ip="192.0.2.99"), 1)).result is Result.SUCCESS
    named = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=port_of("web")))
    assert timeout_message(target(named, "10.0.0.5"), 1) == "dial tcp 10.0.0.5:8080: i/o timeout"


async def test_dispatch_unknown_port_name_is_a_failure():
    probe = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(port=port_of("admin")))
    outcome = await run_probe(FakeRuntime(), target(probe), 1)
    assert outcome.result is Result.FAILURE
    assert outcome.message == "port 'admin' not found in the ports of container app"


async def test_dispatch_without_a_pod_ip_is_thrown_away():
    probe = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(port=objects_pb2.IntOrString(int_value=80)))
    assert (await run_probe(FakeRuntime(), target(probe, pod_ip=""), 1)).result is Result.UNKNOWN
    assert (await run_probe(FakeRuntime(), target(objects_pb2.Probe()), 1)).result is Result.UNKNOWN


async def test_dispatch_timeout_messages_match_the_handlers():
    http = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(
        path="/healthz", port=objects_pb2.IntOrString(str_value="web")))
    assert timeout_message(target(http, "10.0.0.5"), 1) == (
        'Get "http://10.0.0.5:8080/healthz": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )
    grpc_spec = objects_pb2.Probe(grpc=objects_pb2.GRPCAction(port=50051))
    assert timeout_message(target(grpc_spec, "10.0.0.5"), 2) == (
        'timeout: failed to connect service "10.0.0.5:50051" within 2s: context deadline exceeded'
    )
    exec_spec = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["sh", "-c", "exit 1"]))
    assert timeout_message(target(exec_spec), 1) == 'command "sh -c exit 1" timed out'
