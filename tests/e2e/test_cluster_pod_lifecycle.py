"""Pod manifests from the Kubernetes documentation behave as on Kubernetes, end to end (a real
pymaster and pykubelet, the real Docker Engine): probes flip readiness and restart containers,
init containers run in order before the app, sidecars outlive a finished app and are stopped
after it, lifecycle hooks run at the right moment, termination messages and activeDeadlineSeconds
reach the status, shareProcessNamespace shares one PID namespace, and what happens is recorded as
events (``pyctl get events``).

One single-node cluster serves the module; every test makes its own pods and waits for the
evidence of what it claims (a status, a log line, an event), never for a state that held before.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as grpc_health

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    pyctl,
    running_cluster,
    unique,
    wait_event,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hooks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hooks")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, hooks_dir: Path) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("lifecycle"), prefixes=("node-l",),
        master_extra=["--allowed-host-path", str(hooks_dir), "--allow-host-network"],
        agent_extra=["--allowed-host-path", str(hooks_dir), "--allow-host-network"],
    ) as c:
        yield c


def _pod(name: str, spec: str) -> objects_pb2.Pod:
    """A pod named ``name`` with the ``spec`` YAML (BUSYBOX: the test image); a grace period of
    1 s unless the spec says otherwise."""
    spec = textwrap.dedent(spec).replace("BUSYBOX", BUSYBOX)
    if "terminationGracePeriodSeconds" not in spec:
        spec = "terminationGracePeriodSeconds: 1\n" + spec
    manifest = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n" + textwrap.indent(spec, "  ")
    return load_pods(manifest)[0]


async def _wait(client: Client, name: str, check, what: str, timeout: float = 60) -> objects_pb2.Pod:
    async def reached() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        return pod if check(pod) else None

    return await wait_for(reached, timeout, f"pod {name}: {what}")


def _condition(pod: objects_pb2.Pod, kind: str) -> str:
    return next((c.status for c in pod.status.conditions if c.type == kind), "")


def _status(pod: objects_pb2.Pod, name: str) -> objects_pb2.ContainerStatus:
    statuses = [*pod.status.init_container_statuses, *pod.status.container_statuses]
    return next(s for s in statuses if s.name == name)


def _restarted(container: str):
    return lambda pod: _status(pod, container).restart_count >= 1


async def test_readiness_probe_gates_ready_and_liveness_restarts(cluster: Cluster) -> None:
    name = unique("probes")
    pod = _pod(name, """\
        containers:
          - name: web
            image: BUSYBOX
            # Serves after 3 s; its liveness file disappears after 8 s.
            command: ["sh", "-c", "touch /tmp/alive; sleep 3; mkdir -p /www; echo ok > /www/index.html;
                      httpd -p 8080 -h /www; sleep 5; rm /tmp/alive; sleep 3600"]
            ports: [{name: http, containerPort: 8080}]
            readinessProbe:
              httpGet: {path: /index.html, port: http}
              periodSeconds: 1
            livenessProbe:
              exec: {command: [test, -f, /tmp/alive]}
              periodSeconds: 1
              failureThreshold: 2
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        running = await _wait(client, name, lambda p: p.status.phase == "Running", "Running")
        # Running but not serving yet: not ready (reported by the kubelet, not assumed).
        assert not running.status.container_statuses[0].ready or _condition(running, "Ready") != "True"
        ready = await _wait(client, name, lambda p: _condition(p, "Ready") == "True", "Ready")
        assert ready.status.container_statuses[0].ready
        assert ready.status.container_statuses[0].started
        # The liveness file goes: the container is killed and restarted, readiness drops meanwhile.
        restarted = await _wait(
            client, name, lambda p: p.status.container_statuses[0].restart_count >= 1, "restarted"
        )
        assert restarted.status.container_statuses[0].last_state.HasField("terminated")
        await wait_event(client, name, "Unhealthy", "Liveness probe failed")
        await wait_event(client, name, "Killing", "web")
        await delete_pods(client, name)


async def test_readiness_within_initial_delay_plus_one_period(cluster: Cluster) -> None:
    name = unique("ready")
    pod = _pod(name, """\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sh", "-c", "touch /tmp/ready; sleep 3600"]
            readinessProbe:
              exec: {command: [cat, /tmp/ready]}
              initialDelaySeconds: 1
              periodSeconds: 1
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        ready = await _wait(client, name, lambda p: _condition(p, "Ready") == "True", "Ready", timeout=30)
        seen = time.time()
        started = ready.status.container_statuses[0].state.running.started_at.ToDatetime().timestamp()
        # initialDelay + period + 0.5 s on the node; the status push and this poll add under 2 s.
        assert seen - started < 1 + 1 + 0.5 + 2, f"Ready {seen - started:.2f}s after the start"
        await delete_pods(client, name)


async def test_init_containers_run_in_order_before_the_app(cluster: Cluster) -> None:
    name = unique("init")
    pod = _pod(name, """\
        volumes: [{name: work, emptyDir: {}}]
        initContainers:
          - name: first
            image: BUSYBOX
            command: ["sh", "-c", "sleep 2; echo first $(date +%s) >> /work/order"]
            volumeMounts: [{name: work, mountPath: /work}]
          - name: second
            image: BUSYBOX
            command: ["sh", "-c", "echo second $(date +%s) >> /work/order"]
            volumeMounts: [{name: work, mountPath: /work}]
        containers:
          - name: app
            image: BUSYBOX
            command: ["sh", "-c", "echo app $(date +%s) >> /work/order; cat /work/order; sleep 3600"]
            volumeMounts: [{name: work, mountPath: /work}]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        pending = await _wait(
            client, name, lambda p: len(p.status.init_container_statuses) == 2, "init statuses"
        )
        assert pending.status.phase == "Pending"
        assert _condition(pending, "Initialized") == "False"
        listed = pyctl(cluster.master, "get", "pod", name)
        assert "Init:0/2" in listed.stdout or "PodInitializing" in listed.stdout, listed.stdout
        running = await _wait(client, name, lambda p: p.status.phase == "Running", "Running")
        assert _condition(running, "Initialized") == "True"
        for init in running.status.init_container_statuses:
            assert init.state.terminated.reason == "Completed" and init.state.terminated.exit_code == 0
        first, second = (_status(running, n).state.terminated for n in ("first", "second"))
        assert first.finished_at.ToDatetime() <= second.started_at.ToDatetime()
        app_started = _status(running, "app").state.running.started_at.ToDatetime()
        assert second.finished_at.ToDatetime() <= app_started
        logs = await wait_for(lambda: _logs(client, name, "app", "app "), 30, "the app's log")
        # What each wrote to the shared emptyDir, with the time it wrote it: in order, one
        # after the other (the first slept 2 s before writing).
        lines = [line.split() for line in logs.splitlines()]
        assert [who for who, _ in lines] == ["first", "second", "app"]
        times = [int(t) for _, t in lines]
        assert times == sorted(times)
        await delete_pods(client, name)


async def _logs(client: Client, name: str, container: str, until: str) -> str | None:
    text = b"".join([chunk async for chunk in client.pod_logs(name, container=container)]).decode()
    return text if until in text else None


async def test_failing_init_container_crash_loops_and_never_starts_the_app(cluster: Cluster) -> None:
    name = unique("initfail")
    pod = _pod(name, """\
        initContainers:
          - name: setup
            image: BUSYBOX
            command: ["sh", "-c", "echo setup failed; exit 3"]
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        failed = await _wait(
            client, name, lambda p: any(s.restart_count >= 1 for s in p.status.init_container_statuses),
            "init restarted",
        )
        assert failed.status.phase == "Pending"
        assert not failed.status.container_statuses[0].state.HasField("running")
        listed = pyctl(cluster.master, "get", "pod", name).stdout
        assert "Init:Error" in listed or "Init:CrashLoopBackOff" in listed, listed
        await delete_pods(client, name)

        # restartPolicy Never: one failure fails the pod.
        never = unique("initnever")
        pod.metadata.name = never
        pod.spec.restart_policy = "Never"
        await client.create_pod(pod)
        done = await _wait(client, never, lambda p: p.status.phase == "Failed", "Failed")
        assert _status(done, "setup").state.terminated.exit_code == 3
        await delete_pods(client, never)


async def test_sidecar_runs_beside_the_app_and_stops_after_it(cluster: Cluster) -> None:
    name = unique("sidecar")
    pod = _pod(name, """\
        restartPolicy: Never
        initContainers:
          - name: logger
            image: BUSYBOX
            restartPolicy: Always
            command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
        containers:
          - name: job
            image: BUSYBOX
            command: ["sh", "-c", "sleep 3; echo done"]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        both = await _wait(
            client, name,
            lambda p: p.status.phase == "Running" and _status(p, "job").state.HasField("running"),
            "app running",
        )
        assert _status(both, "logger").state.HasField("running")
        done = await _wait(client, name, lambda p: p.status.phase == "Succeeded", "Succeeded")
        job = _status(done, "job").state.terminated
        logger = _status(done, "logger").state.terminated
        assert job.exit_code == 0
        # The sidecar ran until the app finished, then was stopped.
        assert logger.finished_at.ToDatetime() >= job.finished_at.ToDatetime()
        await delete_pods(client, name)

        # restartPolicy Always: the app completes and is restarted; the sidecar stays as it was.
        again = unique("sidecar")
        pod.metadata.name = again
        pod.spec.restart_policy = "Always"
        await client.create_pod(pod)
        first = await _wait(client, again, lambda p: _status(p, "logger").state.HasField("running"), "up")
        sidecar_id = _status(first, "logger").container_id
        restarted = await _wait(client, again, _restarted("job"), "app restarted")
        assert _status(restarted, "job").last_state.terminated.exit_code == 0
        assert _status(restarted, "logger").container_id == sidecar_id
        assert _status(restarted, "logger").restart_count == 0
        assert _status(restarted, "logger").state.HasField("running")
        await delete_pods(client, again)


async def test_pre_stop_runs_before_sigterm_and_post_start_failure_kills(
    cluster: Cluster, hooks_dir: Path
) -> None:
    name = unique("hooks")
    trace = hooks_dir / name
    trace.mkdir()
    pod = _pod(name, f"""\
        terminationGracePeriodSeconds: 10
        volumes: [{{name: trace, hostPath: {{path: {trace}, type: Directory}}}}]
        containers:
          - name: app
            image: BUSYBOX
            command: ["sh", "-c",
                      "trap 'echo TERM >> /trace/log; exit 0' TERM; while true; do sleep 0.1; done"]
            volumeMounts: [{{name: trace, mountPath: /trace}}]
            lifecycle:
              postStart: {{exec: {{command: [sh, -c, "echo START >> /trace/log"]}}}}
              preStop: {{exec: {{command: [sh, -c, "echo PRESTOP >> /trace/log; sleep 1"]}}}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await _wait(client, name, lambda p: p.status.phase == "Running", "Running")
        await delete_pods(client, name)
        assert (trace / "log").read_text() == "START\nPRESTOP\nTERM\n"

        broken = unique("poststart")
        pod.metadata.name = broken
        pod.spec.containers[0].lifecycle.post_start.exec.command[:] = ["sh", "-c", "exit 7"]
        await client.create_pod(pod)
        await wait_event(client, broken, "FailedPostStartHook")
        await _wait(client, broken, lambda p: p.status.container_statuses[0].restart_count >= 1, "restarted")
        await delete_pods(client, broken)


async def test_termination_messages_and_crash_loop_events(cluster: Cluster) -> None:
    name = unique("term")
    pod = _pod(name, """\
        containers:
          - name: file
            image: BUSYBOX
            command: ["sh", "-c", "echo -n 'disk full' > /dev/termination-log; exit 2"]
          - name: logs
            image: BUSYBOX
            terminationMessagePolicy: FallbackToLogsOnError
            command: ["sh", "-c", "echo last words; exit 1"]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)

        def terminated(p: objects_pb2.Pod, container: str) -> objects_pb2.ContainerStateTerminated | None:
            status = _status(p, container)
            for state in (status.state, status.last_state):
                if state.HasField("terminated"):
                    return state.terminated
            return None

        both = await _wait(
            client, name, lambda p: terminated(p, "file") is not None and terminated(p, "logs") is not None,
            "both terminated",
        )
        assert terminated(both, "file").message == "disk full"
        assert terminated(both, "file").exit_code == 2
        assert terminated(both, "logs").message == "last words\n"
        # Crash-looping: the kubelet's events repeat, folded into one with a count.
        await wait_event(client, name, "Started", "file", count=2)
        await wait_event(client, name, "BackOff", "file")
        described = pyctl(cluster.master, "get", "events", "--field-selector", f"involvedObject.name={name}")
        assert "BackOff" in described.stdout and "Started" in described.stdout, described.stdout
        await delete_pods(client, name)


async def test_active_deadline_fails_the_pod(cluster: Cluster) -> None:
    name = unique("deadline")
    pod = _pod(name, """\
        activeDeadlineSeconds: 3
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await _wait(client, name, lambda p: p.status.phase == "Running", "Running")
        failed = await _wait(client, name, lambda p: p.status.phase == "Failed", "Failed", timeout=30)
        assert failed.status.reason == "DeadlineExceeded"
        assert failed.status.container_statuses[0].state.HasField("terminated")
        await wait_event(client, name, "DeadlineExceeded")
        await delete_pods(client, name)


async def test_share_process_namespace(cluster: Cluster) -> None:
    name = unique("sharepid")
    pod = _pod(name, """\
        shareProcessNamespace: true
        containers:
          - name: server
            image: BUSYBOX
            command: ["sleep", "3601"]
          - name: shell
            image: BUSYBOX
            command: ["sh", "-c",
                      "while ! ps | grep -q 'sleep 360[1]'; do sleep 0.2; done; echo seen; sleep 3600"]
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await wait_for(lambda: _logs(client, name, "shell", "seen"), 60, "the server's process seen")
        await delete_pods(client, name)


async def test_tcp_probes_gate_ready_and_restart(cluster: Cluster) -> None:
    name = unique("tcp")
    pod = _pod(name, """\
        containers:
          - name: db
            image: BUSYBOX
            # 9000 answers after 2 s; 9001 answers for 6 s only.
            command: ["sh", "-c", "nc -ll -p 9001 -e true & live=$!; sleep 2; nc -ll -p 9000 -e true &
                      sleep 4; kill $live; sleep 3600"]
            ports: [{name: sql, containerPort: 9000}]
            readinessProbe:
              tcpSocket: {port: sql}
              periodSeconds: 1
            livenessProbe:
              tcpSocket: {port: 9001}
              periodSeconds: 1
              failureThreshold: 1
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await wait_event(client, name, "Unhealthy", "Readiness probe failed")
        await _wait(client, name, lambda p: _condition(p, "Ready") == "True", "Ready")
        await _wait(client, name, _restarted("db"), "restarted")
        await wait_event(client, name, "Unhealthy", "Liveness probe failed")
        await delete_pods(client, name)


async def test_grpc_probes_follow_the_health_service(cluster: Cluster) -> None:
    """The standard gRPC health protocol, served here by the test on the node's address: a pod on
    the host's network is probed there, so the test decides what the probes see."""
    health = grpc_health.HealthServicer()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    await health.set("ready", not_serving)
    await health.set("live", serving)
    name = unique("grpc")
    pod = _pod(name, f"""\
        hostNetwork: true
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            readinessProbe:
              grpc: {{port: {port}, service: ready}}
              periodSeconds: 1
            livenessProbe:
              grpc: {{port: {port}, service: live}}
              periodSeconds: 1
              failureThreshold: 1
        """)
    try:
        async with cluster.client() as client:
            await client.create_pod(pod)
            await wait_event(client, name, "Unhealthy", "Readiness probe failed")
            assert _condition(await client.get_pod(name), "Ready") != "True"
            await health.set("ready", serving)
            await _wait(client, name, lambda p: _condition(p, "Ready") == "True", "Ready")
            await health.set("live", not_serving)
            await _wait(client, name, _restarted("app"), "restarted")
            await health.set("live", serving)
            await delete_pods(client, name)
    finally:
        await server.stop(0)
