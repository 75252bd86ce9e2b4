"""Controller manager throughput through the real API: a real pymaster (mutual TLS), N hollow nodes
registered through the NodeAgent API with the admin identity and kept alive (leases renewed by a
separate process, as in bench/scheduler.py), and a hollow kubelet in this process that watches the
pods and marks every pod bound to a hollow node Running and Ready through NodeAgent.UpdatePodStatus,
the call a real agent's status manager makes (no containers anywhere).

Two phases in the same run, on the same master:
- baseline: D*R bare pods created directly through the API; the wall time until the hollow
  kubelet has seen every one bound and a watch sees every one Running. Then they are removed.
- deployments: D Deployments of R replicas; the wall time from the first create until a watch of
  the Deployments sees every one with status.availableReplicas == R (observedGeneration current).
  The ReplicaSet and Deployment controllers create the pods, so the difference between the two
  phases is what the controllers cost.

For each phase the master's CPU seconds (utime + stime of the pymaster process and its children,
from /proc via psutil) and its RSS. The controller manager runs inside pymaster, so the controllers'
CPU is the deployment phase's master CPU minus the baseline's (the API server, store and scheduler
work for the same pods is in both). Prints JSON.

Usage: python bench/controllers.py [--deployments 100] [--replicas 10] [--nodes 100] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import psutil
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scheduler import bounded, cpu_seconds, lease_process, node  # noqa: E402
from pymaster.api import errors, objects_pb2, services_pb2  # noqa: E402
from pymaster.api.pods import CONTAINERS_READY, INITIALIZED, READY, RUNNING  # noqa: E402
from pymaster.client import Client  # noqa: E402
from tests.e2e.harness import BUSYBOX, Master  # noqa: E402

log = logging.getLogger("bench.controllers")

CONCURRENCY = 64  # creates, registrations and status pushes in flight at once
NODE_PODS = 110  # what bench.scheduler.node gives each hollow node
QUIET_RELIST_SECONDS = 10.0  # a watch silent this long is listed again (level-triggered safety)
NAMESPACE = "default"


def pod_spec() -> objects_pb2.PodSpec:
    """The spec of every bench pod (bare or from a template): small requests, so the hollow nodes
    hold them by their pod count, not by cpu or memory."""
    container = objects_pb2.Container(name="main", image=BUSYBOX, command=["sleep", "3600"])
    container.resources.requests.update({"cpu": "10m", "memory": "16Mi"})
    return objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=1)


def bare_pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod", spec=pod_spec())
    pod.metadata.name, pod.metadata.namespace = name, NAMESPACE
    pod.metadata.labels["bench"] = "bare"
    return pod


def deployment(name: str, replicas: int) -> objects_pb2.Deployment:
    """A Deployment of ``replicas`` bench pods labelled app=<name>."""
    deploy = objects_pb2.Deployment(api_version="apps/v1", kind="Deployment")
    deploy.metadata.name, deploy.metadata.namespace = name, NAMESPACE
    deploy.spec.replicas = replicas
    deploy.spec.selector.match_labels["app"] = name
    deploy.spec.template.metadata.labels.update({"app": name, "bench": "deploy"})
    deploy.spec.template.spec.CopyFrom(pod_spec())
    return deploy


def running_status(pod: objects_pb2.Pod, pod_ip: str) -> objects_pb2.PodStatus:
    """What an agent reports once every container of ``pod`` runs and is ready."""
    now = Timestamp()
    now.GetCurrentTime()
    status = objects_pb2.PodStatus(
        phase=RUNNING, host_ip="10.0.0.1", pod_ip=pod_ip, start_time=now, qos_class=pod.status.qos_class
    )
    for kind in (INITIALIZED, READY, CONTAINERS_READY):
        status.conditions.add(type=kind, status="True", last_transition_time=now)
    for container in pod.spec.containers:
        status.container_statuses.add(
            name=container.name, image=container.image, ready=True, started=True,
            container_id=f"hollow://{pod.metadata.uid}/{container.name}",
            state=objects_pb2.ContainerState(running=objects_pb2.ContainerStateRunning(started_at=now)),
        )
    return status


class Observer(Protocol):
    """What watch_all feeds: each watched change, and the whole list after a relist."""

    def offer(self, obj: Message, deleted: bool) -> None: ...

    def relisted(self, items: Sequence[Message]) -> None: ...


async def watch_all(client: Client, resource: str, rv: str, observer: Observer, stop: asyncio.Event) -> None:
    """Feeds ``observer`` every change of ``resource`` in NAMESPACE from ``rv`` until ``stop`` is
    set. A watch that ends (TooOld when it fell behind) or stays silent for QUIET_RELIST_SECONDS is
    replaced by a list (``observer.relisted``) and a new watch, so a missed event costs latency,
    never a hang."""
    while not stop.is_set():
        events = aiter(client.watch(resource, NAMESPACE, resource_version=rv))
        try:
            while not stop.is_set():
                event = await asyncio.wait_for(anext(events), QUIET_RELIST_SECONDS)
                observer.offer(event.object, event.type == services_pb2.DELETED)
        except (errors.ApiError, TimeoutError, StopAsyncIteration):
            pass
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
        try:
            listed = await client.list(resource, NAMESPACE)
        except errors.ApiError as err:
            log.warning("list %s failed, retrying: %s", resource, err)
            await asyncio.sleep(0.5)
            continue  # a watch from the old resourceVersion, or TooOld and a list again
        observer.relisted(listed.items)
        rv = listed.resource_version


class HollowKubelet:
    """The kubelet of every hollow node at once: marks each pod bound to one of ``nodes`` Running
    and Ready (once per pod uid) and confirms the termination of pods marked for deletion, with at
    most CONCURRENCY calls in flight. Failed calls (other than NotFound: the pod is gone) are
    retried after half a second."""

    def __init__(self, client: Client, nodes: set[str]):
        self._client, self._nodes = client, nodes
        self._queue: asyncio.Queue[tuple[str, objects_pb2.Pod]] = asyncio.Queue()
        self._handled: set[tuple[str, str]] = set()  # (action, uid) queued or done
        self._ips = 0  # pod IPs handed out
        self.marked = 0  # pods pushed Running
        self.last_marked = 0.0  # time.perf_counter() of the latest Running push

    def relisted(self, items: Sequence[objects_pb2.Pod]) -> None:
        for pod in items:
            self.offer(pod, False)

    def offer(self, pod: objects_pb2.Pod, deleted: bool) -> None:
        if deleted or pod.spec.node_name not in self._nodes:
            return
        if pod.metadata.HasField("deletion_timestamp"):
            action = "confirm"
        elif pod.status.phase != RUNNING:
            action = "run"
        else:
            return
        key = (action, pod.metadata.uid)
        if key not in self._handled:
            self._handled.add(key)
            self._queue.put_nowait((action, pod))

    async def run(self, rv: str, stop: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(CONCURRENCY)]
        try:
            await watch_all(self._client, "pods", rv, self, stop)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            action, pod = await self._queue.get()
            meta = pod.metadata
            try:
                if action == "run":
                    self._ips += 1
                    ip = f"10.{(self._ips >> 16) & 255}.{(self._ips >> 8) & 255}.{self._ips & 255}"
                    await self._client.update_pod_status(
                        meta.namespace, meta.name, meta.uid, running_status(pod, ip)
                    )
                    self.marked += 1
                    self.last_marked = time.perf_counter()
                else:
                    await self._client.confirm_pod_terminated(meta.namespace, meta.name, meta.uid)
            except errors.NotFound:
                pass
            except errors.ApiError as err:
                log.warning("hollow kubelet %s pod=%s/%s failed, retrying: %s", action, meta.namespace,
                            meta.name, err)
                loop.call_later(0.5, self._queue.put_nowait, (action, pod))


class Tally:
    """Which objects (by name) currently satisfy ``done``; sets ``complete`` once ``target`` do."""

    def __init__(self, done: Callable[[Message], bool], target: int):
        self._done, self._target = done, target
        self.satisfied: set[str] = set()
        self.complete = asyncio.Event()

    def relisted(self, items: Sequence[Message]) -> None:
        self.satisfied.clear()
        for obj in items:
            self.offer(obj, False)

    def offer(self, obj: Message, deleted: bool) -> None:
        name = obj.metadata.name
        if not deleted and self._done(obj) and not obj.metadata.HasField("deletion_timestamp"):
            self.satisfied.add(name)
        else:
            self.satisfied.discard(name)
        if len(self.satisfied) >= self._target:
            self.complete.set()


class MasterUsage:
    """CPU seconds and RSS of the pymaster process between two points, beside the CPU of this
    process (the load generator and hollow kubelet, sharing the machine's cores with the master)."""

    def __init__(self, pid: int):
        self._process, self._bench = psutil.Process(pid), psutil.Process()
        self._start, self._bench_start = cpu_seconds(self._process), cpu_seconds(self._bench)

    def result(self) -> dict:
        status = Path(f"/proc/{self._process.pid}/status").read_text().splitlines()
        peak_kib = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
        return {
            "master_cpu_seconds": round(cpu_seconds(self._process) - self._start, 2),
            "master_rss_mib": round(self._process.memory_info().rss / 2**20, 1),
            "master_peak_rss_mib": round(peak_kib / 1024, 1),
            "bench_process_cpu_seconds": round(cpu_seconds(self._bench) - self._bench_start, 2),
        }


async def wait_phase(tally: Tally, timeout: float) -> bool:
    try:
        await asyncio.wait_for(tally.complete.wait(), timeout)
        return True
    except TimeoutError:
        return False


async def baseline_phase(client: Client, master: Master, kubelet: HollowKubelet, pods: int,
                         timeout: float) -> dict:
    """D*R bare pods: create them all, wait until a watch sees every one Running, remove them."""
    tally = Tally(lambda p: p.metadata.labels.get("bench") == "bare" and p.status.phase == RUNNING, pods)
    stop = asyncio.Event()
    listed = await client.list("pods", NAMESPACE)
    watcher = asyncio.create_task(watch_all(client, "pods", listed.resource_version, tally, stop))
    usage = MasterUsage(master.proc.pid)
    marked_before = kubelet.marked
    t0 = time.perf_counter()
    await bounded([client.create(bare_pod(f"bare-{i:05d}")) for i in range(pods)], CONCURRENCY)
    created = time.perf_counter() - t0
    ok = await wait_phase(tally, timeout)
    wall = time.perf_counter() - t0
    result = {"pods": pods, "create_seconds": round(created, 2), **usage.result()}
    stop.set()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    if ok:
        result.update(wall_seconds=round(wall, 2), pods_per_second=round(pods / wall, 1))
    else:
        result.update(timed_out_after_seconds=timeout, running=len(tally.satisfied),
                      marked_running=kubelet.marked - marked_before)
    # Removed at once (force, grace 0) so the deployment phase starts from an empty namespace.
    names = [f"bare-{i:05d}" for i in range(pods)]
    await bounded([_force_delete(client, n) for n in names], CONCURRENCY)
    return result


async def _force_delete(client: Client, name: str) -> None:
    with contextlib.suppress(errors.NotFound):
        await client.delete_pod(name, NAMESPACE, grace_period_seconds=0, force=True)


def available(replicas: int) -> Callable[[Message], bool]:
    def done(deploy: objects_pb2.Deployment) -> bool:
        status = deploy.status
        return (status.observed_generation >= deploy.metadata.generation
                and status.replicas == status.updated_replicas == status.available_replicas == replicas)

    return done


async def deployment_phase(client: Client, master: Master, kubelet: HollowKubelet, deployments: int,
                           replicas: int, timeout: float) -> dict:
    """D Deployments of R replicas: create them all, wait until every one is fully available."""
    tally = Tally(available(replicas), deployments)
    stop = asyncio.Event()
    listed = await client.list("deployments", NAMESPACE)
    watcher = asyncio.create_task(
        watch_all(client, "deployments", listed.resource_version, tally, stop)
    )
    usage = MasterUsage(master.proc.pid)
    marked_before = kubelet.marked
    t0 = time.perf_counter()
    await bounded([client.create(deployment(f"d-{i:04d}", replicas)) for i in range(deployments)],
                  CONCURRENCY)
    created = time.perf_counter() - t0
    ok = await wait_phase(tally, timeout)
    wall = time.perf_counter() - t0
    pods = deployments * replicas
    result = {
        "deployments": deployments,
        "replicas": replicas,
        "pods": pods,
        "create_seconds": round(created, 2),
        **usage.result(),
    }
    stop.set()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    if ok:
        # A cross-check of the Deployments' status: the pods a list shows Running.
        listed = await client.list("pods", NAMESPACE, label_selector="bench=deploy")
        result.update(
            running_pods=sum(p.status.phase == RUNNING for p in listed.items),
            wall_seconds=round(wall, 2),
            # When the hollow kubelet pushed the last Running: the rest is the controllers
            # noticing readiness and writing status.availableReplicas.
            last_pod_running_seconds=round(kubelet.last_marked - t0, 2),
            pods_per_second=round(pods / wall, 1),
        )
    else:
        result.update(timed_out_after_seconds=timeout, available_deployments=len(tally.satisfied),
                      marked_running=kubelet.marked - marked_before)
    return result


async def measure(master: Master, nodes: int, deployments: int, replicas: int, timeout: float) -> dict:
    names = [f"hollow-{i:05d}" for i in range(nodes)]
    async with master.client(timeout=60) as client:
        await bounded([client.register_node(node(n)) for n in names], CONCURRENCY)
        ctx = multiprocessing.get_context("spawn")
        stop_leases, out = ctx.Event(), ctx.Queue()
        leases = ctx.Process(target=lease_process,
                             args=(master.address, str(master.admin_config), names, stop_leases, out))
        leases.start()
        kubelet = HollowKubelet(client, set(names))
        stop_kubelet = asyncio.Event()
        listed = await client.list("pods", NAMESPACE)
        kubelet_task = asyncio.create_task(kubelet.run(listed.resource_version, stop_kubelet))
        try:
            baseline = await baseline_phase(client, master, kubelet, deployments * replicas, timeout)
            controllers = await deployment_phase(client, master, kubelet, deployments, replicas, timeout)
        finally:
            stop_kubelet.set()
            kubelet_task.cancel()
            await asyncio.gather(kubelet_task, return_exceptions=True)
            stop_leases.set()
            with contextlib.suppress(Exception):
                out.get(timeout=60)  # the lease process's samples; it exits once they are taken
            leases.join(30)
    result = {"nodes": nodes, "bare_pods_baseline": baseline, "deployments": controllers}
    if "wall_seconds" in baseline and "wall_seconds" in controllers:
        result["controllers_extra_seconds"] = round(controllers["wall_seconds"] - baseline["wall_seconds"], 2)
        result["controllers_extra_master_cpu_seconds"] = round(
            controllers["master_cpu_seconds"] - baseline["master_cpu_seconds"], 2
        )
    return result


async def run(nodes: int, deployments: int, replicas: int, timeout: float, master_extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        master = Master(Path(tmp), ["--log-level", "warning", *master_extra]).start()
        try:
            await master.wait_serving()
            result = await measure(master, nodes, deployments, replicas, timeout)
            result["watch_overflows"] = master.log().count("watcher overflow")
            return result
        finally:
            with contextlib.suppress(Exception):
                master.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=10, help="replicas per Deployment")
    parser.add_argument("--nodes", type=int, default=100, help="hollow nodes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per phase before giving up")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 deployments x 5, 20 nodes")
    parser.add_argument("--master-arg", action="append", default=[], help="extra pymaster flag")
    args = parser.parse_args()
    if args.quick:
        args.deployments, args.replicas, args.nodes = 10, 5, 20
    if args.deployments * args.replicas > args.nodes * NODE_PODS * 0.9:
        parser.error(f"{args.deployments * args.replicas} pods do not fit on {args.nodes} nodes of "
                     f"{NODE_PODS} pods with room to spare: add --nodes")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    result = asyncio.run(run(args.nodes, args.deployments, args.replicas, args.timeout, args.master_arg))
    print(json.dumps({"benchmark": "controllers", "master_cpu_includes": "API server, store, scheduler "
                      "and controller manager (one process)", **result}, indent=2))


if __name__ == "__main__":
    main()
