"""Store backends side by side: create, update, list and watch throughput and latency of the
SQLite store (a file in a temp dir) and the etcd store (a real etcd on loopback: one member, and
three), in one run, through the Store protocol the master uses. Writes run CONCURRENCY at a time
(as the master's many callers do); latency is per write, from the call until it returned (on etcd:
until the store's in-memory copy has seen it). Watch: the delay from a write's start until a
watcher of the same store has its event. List: one list of every pod from memory. Prints JSON.

Usage: python bench/store.py [--objects 2000] [--concurrency 64] [--members 1,3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pod_startup import percentile  # noqa: E402
from pymaster.api import objects_pb2  # noqa: E402
from pymaster.store import open_store, sqlite_url  # noqa: E402
from tests.etcd_fixture import running_etcd  # noqa: E402


def pod(i: int) -> objects_pb2.Pod:
    p = objects_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name = f"bench-{i}"
    p.metadata.namespace = "default"
    p.metadata.uid = f"uid-{i}"
    p.metadata.labels["app"] = "bench"
    p.spec.containers.add(name="c", image="pykube/busybox:1.35", command=["sleep", "3600"])
    return p


def summary(latencies: list[float], wall: float) -> dict:
    return {
        "ops": len(latencies),
        "per_second": round(len(latencies) / wall, 1),
        "latency_ms": {q: round(percentile(latencies, p) * 1000, 2)
                       for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
    }


async def timed_all(calls, concurrency: int) -> tuple[list[float], float, dict[int, float]]:
    """Runs the calls (index -> coroutine factory) ``concurrency`` at a time: latencies, wall
    time, and the start time of each call (for the watch delay)."""
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    starts: dict[int, float] = {}

    async def one(i, factory) -> None:
        async with limit:
            starts[i] = time.perf_counter()
            await factory()
            latencies.append(time.perf_counter() - starts[i])

    began = time.perf_counter()
    await asyncio.gather(*(one(i, f) for i, f in calls))
    return latencies, time.perf_counter() - began, starts


async def run(url: str, objects: int, concurrency: int) -> dict:
    store = open_store(url)
    await store.open()
    try:
        seen: dict[int, float] = {}
        watch = store.watch("pods", store.current_rv)

        async def follow() -> None:
            async for event in watch:
                if event.type == "ADDED":
                    seen[int(event.object.metadata.name.removeprefix("bench-"))] = time.perf_counter()

        follower = asyncio.ensure_future(follow())
        created, wall, starts = await timed_all(
            [(i, lambda i=i: store.create("pods", pod(i))) for i in range(objects)], concurrency
        )
        create = summary(created, wall)
        async with asyncio.timeout(60):
            while len(seen) < objects:
                await asyncio.sleep(0.01)
        watch_delays = [seen[i] - starts[i] for i in range(objects)]

        def label(p):
            p.metadata.labels["round"] = "2"
            return p

        updated, wall, _ = await timed_all(
            [(i, lambda i=i: store.mutate("pods", "default", f"bench-{i}", label)) for i in range(objects)],
            concurrency,
        )
        lists = []
        for _ in range(5):
            began = time.perf_counter()
            items, _ = store.list("pods")
            lists.append(time.perf_counter() - began)
        assert len(items) == objects
        watch.close()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        return {
            "create": create,
            "update": summary(updated, wall),
            "list": {"objects": objects, "latency_ms_p50": round(percentile(lists, 0.5) * 1000, 2)},
            "watch_delay_ms": {q: round(percentile(watch_delays, p) * 1000, 2)
                               for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        }
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--members", default="1,3", help="etcd cluster sizes to measure")
    parser.add_argument("--quick", action="store_true", help="200 objects")
    args = parser.parse_args()
    objects = 200 if args.quick else args.objects
    results = []
    with tempfile.TemporaryDirectory(prefix="pykube-bench-store-") as tmp:
        results.append({"backend": "sqlite", **asyncio.run(run(sqlite_url(tmp), objects, args.concurrency))})
    for members in (int(m) for m in args.members.split(",") if m):
        with contextlib.ExitStack() as stack:
            cluster = stack.enter_context(running_etcd(members))
            outcome = asyncio.run(run(cluster.url, objects, args.concurrency))
            results.append({"backend": "etcd", "members": members, **outcome})
    print(json.dumps({"benchmark": "store", "objects": objects, "concurrency": args.concurrency,
                      "runs": results}, indent=2))


if __name__ == "__main__":
    main()
