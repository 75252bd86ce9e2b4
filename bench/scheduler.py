"""Scheduler throughput through the real API: a real pymaster (mutual TLS), N simulated nodes
registered through the NodeAgent API with the admin identity (like kubemark's hollow nodes: no
containers), their leases renewed at the agents' default interval by a separate process that
times every renewal (on the master's lease lane, as agents renew), and P equal pods created
concurrently through the Cluster API. Measures the wall time from the first create until a watch
of the pods (as a kubelet's) has seen every pod bound, the master's CPU per pod, the spread (pods
per node, min/max over all nodes, listed at the end) and the lease renewal latency, seen by the
renewing process and inside the master (its own histogram). Prints JSON, one entry per node count.

Usage: python bench/scheduler.py [--nodes 100,1000,5000] [--pods 5000] [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pod_startup import percentile  # noqa: E402
from pymaster.api import errors, objects_pb2  # noqa: E402
from pymaster.api.clientconfig import load_config  # noqa: E402
from pymaster.client import Client  # noqa: E402
from tests.e2e.harness import BUSYBOX, Master, metric_samples  # noqa: E402

LEASE_INTERVAL = 10.0  # the agents' default --lease-interval
CONCURRENCY = 64  # creates (and registrations) in flight at once


def node(name: str) -> objects_pb2.Node:
    """A 16-cpu node (room for 110 of the bench pods), Ready at registration like an agent."""
    n = objects_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.metadata.labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"})
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    n.status.capacity.update(resources)
    n.status.allocatable.update(resources)
    n.status.addresses.add(type="InternalIP", address="10.0.0.1")
    return n


def cpu_seconds(process: psutil.Process) -> float:
    """utime + stime of ``process`` and its waited-for children so far."""
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def busy_fraction(before, after) -> float:
    """The share of all CPUs' time between two psutil.cpu_times() readings spent not idle."""
    spent = {field: getattr(after, field) - getattr(before, field) for field in after._fields}
    total = sum(spent.values())
    return 1.0 - (spent["idle"] + spent.get("iowait", 0.0)) / total if total else 0.0


def pod(name: str) -> objects_pb2.Pod:
    container = objects_pb2.Container(name="main", image=BUSYBOX)
    container.resources.requests.update({"cpu": "100m", "memory": "128Mi"})
    spec = objects_pb2.PodSpec(containers=[container])
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"), spec=spec)


async def watch_until_bound(client: Client, rv: str, pods: int, done: asyncio.Event) -> None:
    """Sets ``done`` once a watch has seen ``pods`` pods bound (what a kubelet's watch sees)."""
    bound: set[str] = set()
    while True:
        events = aiter(client.watch_pods("default", resource_version=rv))
        try:
            while True:
                # A watcher that falls behind is ended (TooOld) or may go quiet: after a second
                # without events, list again and watch from there.
                event = await asyncio.wait_for(anext(events), 1.0)
                if event.object.spec.node_name:
                    bound.add(event.object.metadata.name)
                    if len(bound) == pods:
                        done.set()
                        return
        except (errors.ApiError, TimeoutError, StopAsyncIteration):
            pass
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
        relisted = await client.list_pods(namespace="default")
        bound = {p.metadata.name for p in relisted.items if p.spec.node_name}
        rv = relisted.resource_version
        if len(bound) == pods:
            done.set()
            return


def renew_lease_buckets(master: Master) -> dict[float, float]:
    """The master's own grpc_server_handling_seconds buckets of RenewLease (le -> count), on the
    lease lane and the API port together."""
    buckets: Counter[float] = Counter()
    for (name, labels), value in metric_samples(master.metrics_port).items():
        if name == "grpc_server_handling_seconds_bucket" and ("grpc_method", "RenewLease") in labels:
            buckets[float(dict(labels)["le"])] += value
    return dict(buckets)


def bucket_p99(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile of the renewals in between."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    if not counts or counts[-1][1] == 0:
        return None
    target = 0.99 * counts[-1][1]
    return next(le for le, count in counts if count >= target)


async def bounded(coros: list, limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro) -> None:
        async with semaphore:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


def lease_process(address: str, config_path: str, names: list[str], stop, out) -> None:
    """Runs in its own process (its own event loop, so the pod creator's load does not skew the
    timings): renews each node's lease every LEASE_INTERVAL, spread evenly over the interval;
    sends [(start_time, seconds)] back on ``out`` when ``stop`` is set."""

    async def run() -> list[tuple[float, float]]:
        samples: list[tuple[float, float]] = []
        async with Client(address, timeout=30, config=load_config(Path(config_path))) as client:

            async def renew(name: str, offset: float) -> None:
                await asyncio.sleep(offset)
                while not stop.is_set():
                    start = time.time()
                    t0 = time.perf_counter()
                    await client.renew_lease(name, LEASE_INTERVAL)
                    samples.append((start, time.perf_counter() - t0))
                    await asyncio.sleep(LEASE_INTERVAL)

            step = LEASE_INTERVAL / max(len(names), 1)
            tasks = [asyncio.create_task(renew(n, i * step)) for i, n in enumerate(names)]
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return samples

    out.put(asyncio.run(run()))


async def measure(master: Master, nodes: int, pods: int) -> dict:
    names = [f"hollow-{i:05d}" for i in range(nodes)]
    async with master.client(timeout=60) as client:
        await bounded([client.register_node(node(n)) for n in names], CONCURRENCY)
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        leases = ctx.Process(target=lease_process,
                             args=(master.address, str(master.admin_config), names, stop, out))
        leases.start()

        listed = await client.list_pods(namespace="default")
        all_bound = asyncio.Event()
        watcher = asyncio.create_task(watch_until_bound(client, listed.resource_version, pods, all_bound))
        await asyncio.sleep(0.5)  # the watch is open
        buckets_before = renew_lease_buckets(master)
        master_process = psutil.Process(master.proc.pid)
        cpu_before = cpu_seconds(master_process)
        own_before = cpu_seconds(psutil.Process())
        machine_before = psutil.cpu_times()
        start = time.time()
        t0 = time.perf_counter()
        await bounded([client.create_pod(pod(f"p-{i:05d}")) for i in range(pods)], CONCURRENCY)
        created = time.perf_counter() - t0
        await asyncio.wait_for(all_bound.wait(), timeout=max(600, pods))
        wall = time.perf_counter() - t0
        end = time.time()
        master_cpu = cpu_seconds(master_process) - cpu_before
        own_cpu = cpu_seconds(psutil.Process()) - own_before
        machine_busy = busy_fraction(machine_before, psutil.cpu_times())
        watcher.cancel()
        server_p99 = bucket_p99(buckets_before, renew_lease_buckets(master))
        stop.set()
        samples = out.get(timeout=60)
        leases.join(30)
        per_node = Counter(p.spec.node_name for p in (await client.list_pods(namespace="default")).items)
    during = [s for t, s in samples if start <= t <= end] or [s for _, s in samples]
    counts = [per_node.get(n, 0) for n in names]
    return {
        "nodes": nodes,
        "pods": pods,
        "wall_seconds": round(wall, 2),
        "create_seconds": round(created, 2),
        "pods_per_second": round(pods / wall, 1),
        # The master's CPU (every thread) per pod: steadier than the rate on a shared machine.
        "master_cpu_ms_per_pod": round(master_cpu / pods * 1000, 3),
        # The bench's own creating and watching process (the lease process is apart).
        "client_cpu_ms_per_pod": round(own_cpu / pods * 1000, 3),
        # Near 1.0 the machine itself is the limit, whichever process does the work.
        "machine_cpu_busy": round(machine_busy, 2),
        "lease_renewals": len(during),
        "lease_p50_ms": round(percentile(during, 0.5) * 1000, 1) if during else None,
        "lease_p99_ms": round(percentile(during, 0.99) * 1000, 1) if during else None,
        # Inside the master (its handling-time histogram: a bucket bound, not an exact figure);
        # the client-side figures above include the one process renewing every node's lease.
        "lease_server_p99_ms_at_most": server_p99 * 1000 if server_p99 is not None else None,
        "spread_min": min(counts),
        "spread_max": max(counts),
    }


async def run_one(nodes: int, pods: int, master_extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        master = Master(Path(tmp), ["--log-level", "warning", *master_extra]).start()
        try:
            await master.wait_serving()
            result = await measure(master, nodes, pods)
            # Watchers that fell behind and had to list again (their stall shows in the figures).
            result["watch_overflows"] = master.log().count("watcher overflow")
            return result
        finally:
            with contextlib.suppress(Exception):
                master.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,5000", help="comma-separated node counts")
    parser.add_argument("--pods", type=int, default=5000, help="pods per run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 nodes, 500 pods")
    parser.add_argument("--master-arg", action="append", default=[], help="extra pymaster flag")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per node count; the median run (by pods/s) is printed, with every rate")
    args = parser.parse_args()
    sizes = [100] if args.quick else [int(n) for n in args.nodes.split(",")]
    pods = 500 if args.quick else args.pods
    results = []
    for n in sizes:
        runs = sorted((asyncio.run(run_one(n, pods, args.master_arg)) for _ in range(max(args.repeat, 1))),
                      key=lambda run: run["pods_per_second"])
        median = runs[len(runs) // 2]
        if len(runs) > 1:
            # A shared machine's speed drifts between runs: the spread says how much.
            median["pods_per_second_of_each_run"] = [run["pods_per_second"] for run in runs]
        results.append(median)
    print(json.dumps({"benchmark": "scheduler", "runs": results}, indent=2))


if __name__ == "__main__":
    main()
