"""The prober against the real engine: busybox pods started the way the agent starts them (infra +
app container through the Docker runtime's calls), then every probe kind run against the
pod's IP on the bridge (httpd on 8080, nc on 9000, exec in the container), and the probe manager
driving readiness and liveness of a running pod. Each test has its own node name; its containers
are removed by label when it ends."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest

from pykubelet.prober import ProbeManager
from pykubelet.prober.results import ProbeType, Result
from pykubelet.prober.targets import ProbeTarget, run_probe
from pykubelet.runtime.base import PodRuntime
from pykubelet.runtime.docker import DockerRuntime
from pymaster.api import objects_pb2

from .harness import BUSYBOX, free_port, wait_for

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

PAUSE = "pykube/pause:3.9"
# httpd serves /www (a healthz page), nc accepts on 9000, and the shell waits on both (the image
# has no /tmp: it is made for the exec probes' file).
SERVE = (
    "mkdir -p /tmp /www && echo ok > /www/healthz && "
    "{ httpd -f -p 8080 -h /www & nc -ll -p 9000 -e /bin/true & wait; }"
)


def int_port(port: int) -> objects_pb2.IntOrString:
    return objects_pb2.IntOrString(int_value=port)


def str_port(name: str) -> objects_pb2.IntOrString:
    return objects_pb2.IntOrString(str_value=name)


def make_pod(command: str = SERVE, **probes: objects_pb2.Probe) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=f"probed-{uuid.uuid4().hex[:6]}", namespace="default",
                                        uid=str(uuid.uuid4()))
    )
    pod.spec.restart_policy = "Always"
    pod.spec.termination_grace_period_seconds = 1
    app = pod.spec.containers.add(name="app", image=BUSYBOX, command=["sh", "-c", command],
                                  image_pull_policy="IfNotPresent")
    app.ports.add(name="http", container_port=8080)
    app.ports.add(name="nc", container_port=9000)
    for field, value in probes.items():
        getattr(app, f"{field}_probe").CopyFrom(value)
    return pod


async def start(rt: DockerRuntime, pod: objects_pb2.Pod, node: str) -> PodRuntime:
    """Starts the pod's infra container, then its app container in the infra's namespaces, with
    the Runtime calls the agent's executor makes; returns them once the app runs (and, off the
    host network, the sandbox has its IP)."""
    app = pod.spec.containers[0]
    await rt.ensure_image(app.image, app.image_pull_policy)
    infra = await rt.start_infra(pod, node, PAUSE)
    await rt.start_container(pod, app, node, infra, 0, [])

    async def running() -> PodRuntime | None:
        current = await rt.get_pod(node, pod.metadata.uid)
        latest = current.latest("app") if current is not None else None
        if latest is None or latest.state != "running":
            return None
        return current if pod.spec.host_network or current.infra.ip else None

    return await wait_for(running, 30, "the app container to run")


def target(pod: objects_pb2.Pod, observed: PodRuntime, probe: objects_pb2.Probe) -> ProbeTarget:
    return ProbeTarget(ProbeType.READINESS, probe, pod.spec.containers[0], observed.latest("app").id,
                       observed.infra.ip)


async def until(rt, pod, observed, probe, result: Result, timeout: float = 20):
    """Runs the probe until it gives ``result`` (a server may take a moment to listen)."""

    async def attempt():
        outcome = await run_probe(rt, target(pod, observed, probe), 2)
        return outcome if outcome.result is result else None

    return await wait_for(attempt, timeout, f"the probe to give {result.value}")


async def test_every_probe_kind_against_a_real_pod(runtime, clean_node):
    pod = make_pod()
    observed = await start(runtime, pod, clean_node)
    ip = observed.infra.ip

    http = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/healthz", port=int_port(8080)))
    await until(runtime, pod, observed, http, Result.SUCCESS)
    by_name = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/healthz", port=str_port("http")))
    assert (await run_probe(runtime, target(pod, observed, by_name), 2)).result is Result.SUCCESS
    missing = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/nope", port=int_port(8080)))
    outcome = await run_probe(runtime, target(pod, observed, missing), 2)
    assert (outcome.result, outcome.message) == (Result.FAILURE, "HTTP probe failed with statuscode: 404")
    refused = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/healthz", port=int_port(8081)))
    outcome = await run_probe(runtime, target(pod, observed, refused), 2)
    refused_message = f'Get "http://{ip}:8081/healthz": dial tcp {ip}:8081: connect: connection refused'
    assert outcome.message == refused_message

    tcp = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=str_port("nc")))
    await until(runtime, pod, observed, tcp, Result.SUCCESS)
    closed = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=int_port(9001)))
    outcome = await run_probe(runtime, target(pod, observed, closed), 2)
    assert outcome.result is Result.FAILURE
    assert outcome.message == f"dial tcp {ip}:9001: connect: connection refused"

    # nc accepts but speaks no HTTP/2: a gRPC probe fails (within its timeout), as does a closed port.
    for port in (9000, 9001):
        grpc_spec = objects_pb2.Probe(grpc=objects_pb2.GRPCAction(port=port))
        outcome = await run_probe(runtime, target(pod, observed, grpc_spec), 1)
        assert outcome.result is Result.FAILURE
        assert outcome.message.startswith(("timeout: failed to connect service", "error: "))

    ready = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["test", "-f", "/tmp/ready"]))
    outcome = await run_probe(runtime, target(pod, observed, ready), 2)
    assert outcome.result is Result.FAILURE
    assert outcome.message == "command test -f /tmp/ready exited with code 1"
    await runtime.exec(observed.latest("app").id, ["touch", "/tmp/ready"], 5)
    assert (await run_probe(runtime, target(pod, observed, ready), 2)).result is Result.SUCCESS
    noisy = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["sh", "-c", "echo not yet >&2; exit 3"]))
    outcome = await run_probe(runtime, target(pod, observed, noisy), 2)
    assert (outcome.result, outcome.message) == (Result.FAILURE, "not yet")
    slow = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["sleep", "5"]))
    begun = time.monotonic()
    outcome = await run_probe(runtime, target(pod, observed, slow), 1)
    assert (outcome.result, outcome.message) == (Result.FAILURE, 'command "sleep 5" timed out')
    assert time.monotonic() - begun < 4  # safety bound: the timeout is 1 s


async def test_manager_readiness_and_liveness_on_a_real_pod(runtime, clean_node):
    ready_file = objects_pb2.Probe(exec=objects_pb2.ExecAction(command=["test", "-f", "/tmp/ready"]),
                                   period_seconds=1, timeout_seconds=2, failure_threshold=1)
    alive = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/healthz", port=int_port(8080)),
                              period_seconds=1, timeout_seconds=1, failure_threshold=2)
    pod = make_pod(readiness=ready_file, liveness=alive)
    observed = await start(runtime, pod, clean_node)
    changes: list[str] = []
    uid = pod.metadata.uid
    manager = ProbeManager(runtime, "127.0.0.1", changes.append)
    try:
        manager.sync(pod, observed)
        await asyncio.sleep(0)
        assert not manager.readiness(pod.metadata.uid, "app")
        app_id = observed.latest("app").id
        await runtime.exec(app_id, ["touch", "/tmp/ready"], 5)
        await wait_for(lambda: manager.readiness(uid, "app"), 15, "the container to be ready")
        assert uid in changes
        await runtime.exec(app_id, ["rm", "/tmp/ready"], 5)
        await wait_for(lambda: not manager.readiness(uid, "app"), 15, "the container to be unready")
        assert manager.liveness_failures(pod.metadata.uid) == {}
        # httpd's page goes: two failed liveness attempts ask for a restart.
        await runtime.exec(app_id, ["rm", "/www/healthz"], 5)
        failures = await wait_for(lambda: manager.liveness_failures(uid), 15, "a liveness failure")
        assert failures == {"app": "Container app failed liveness probe, will be restarted"}
        # The pod worker kills it: the failure goes with the container.
        await runtime.stop_container(app_id, 1)
        manager.sync(pod, await runtime.get_pod(clean_node, pod.metadata.uid))
        assert manager.liveness_failures(pod.metadata.uid) == {}
    finally:
        await manager.stop()


async def test_readiness_within_delay_plus_period_of_the_start(runtime, clean_node):
    """The issue's timing target: Ready within initialDelaySeconds + periodSeconds + 0.5 s of the
    container's start, with one httpGet readiness probe of period 1 s."""
    delay, period = 1, 1
    probe = objects_pb2.Probe(http_get=objects_pb2.HTTPGetAction(path="/healthz", port=int_port(8080)),
                              initial_delay_seconds=delay, period_seconds=period)
    pod = make_pod(readiness=probe)
    ready_at: list[datetime] = []
    manager = ProbeManager(runtime, "127.0.0.1", lambda uid: ready_at.append(datetime.now(UTC)))
    try:
        observed = await start(runtime, pod, clean_node)
        manager.sync(pod, observed)
        await wait_for(lambda: manager.readiness(pod.metadata.uid, "app"), 15, "the container to be ready")
        took = (ready_at[0] - observed.latest("app").started_at).total_seconds()
        log.info("readiness after start seconds=%.3f", took)
        assert took < delay + period + 0.5
    finally:
        await manager.stop()


async def test_host_network_pod_is_probed_at_the_node_address(runtime, clean_node):
    port = free_port()
    probe = objects_pb2.Probe(tcp_socket=objects_pb2.TCPSocketAction(port=int_port(port)), period_seconds=1)
    pod = make_pod(f"nc -ll -p {port} -e /bin/true", readiness=probe)
    pod.spec.host_network = True
    pod.spec.containers[0].ClearField("ports")
    observed = await start(runtime, pod, clean_node)
    manager = ProbeManager(runtime, "127.0.0.1", lambda uid: None)
    try:
        manager.sync(pod, observed)
        await wait_for(lambda: manager.readiness(pod.metadata.uid, "app"), 15, "the pod to be ready")
    finally:
        await manager.stop()
