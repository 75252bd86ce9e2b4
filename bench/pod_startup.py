"""Pod startup latency: `pyctl apply`-equivalent create until the pod is seen Running by a watch,
over N pods, beside raw docker-py creating and starting the same containers (an infra container
and one app container joined to its network) in the same run. Prints JSON with p50/p99 and the
ratio pykube/docker-py. The cluster is secured as in production (mutual TLS, the agent joined
with a token), so the figures include TLS.

Usage: python bench/pod_startup.py [--pods N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import single_node_cluster  # noqa: E402
from pymaster.api import objects_pb2  # noqa: E402
from tests.e2e.harness import BUSYBOX, Master, unique  # noqa: E402

PAUSE = "pykube/pause:3.9"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.50) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1),
    }


def docker_py_baseline(pods: int) -> list[float]:
    """The same containers by hand: pause + busybox joined to its network namespace."""
    client = docker.from_env()
    run_id = unique("raw")
    label = {"pykube.bench": run_id}
    latencies = []
    try:
        for _ in range(pods):
            start = time.perf_counter()
            infra = client.containers.create(PAUSE, labels=label, detach=True)
            infra.start()
            app = client.containers.create(
                BUSYBOX, ["sh", "-c", "sleep 3600"], labels=label, network_mode=f"container:{infra.id}"
            )
            app.start()
            app.reload()
            assert app.status == "running"
            latencies.append(time.perf_counter() - start)
    finally:
        for container in client.containers.list(all=True, filters={"label": f"pykube.bench={run_id}"}):
            container.remove(force=True)
        client.close()
    return latencies


def pod(name: str) -> objects_pb2.Pod:
    container = objects_pb2.Container(name="main", image=BUSYBOX, command=["sh", "-c", "sleep 3600"])
    spec = objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=1)
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name), spec=spec)


async def pykube_latencies(master: Master, pods: int) -> list[float]:
    latencies = []
    async with master.client() as client:
        for i in range(pods):
            name = f"bench-{i}"
            listed = await client.list_pods(namespace="default", field_selector=f"metadata.name={name}")
            start = time.perf_counter()
            await client.create_pod(pod(name))
            selector = f"metadata.name={name}"
            since = listed.resource_version
            events = client.watch_pods("default", field_selector=selector, resource_version=since)
            async for event in events:
                if event.object.status.phase == "Running":
                    break
            latencies.append(time.perf_counter() - start)
        for i in range(pods):
            await client.delete_pod(f"bench-{i}", grace_period_seconds=0, force=True)
    return latencies


async def run_pykube(pods: int) -> list[float]:
    async with single_node_cluster() as master:
        return await pykube_latencies(master, pods)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    baseline = docker_py_baseline(args.pods)
    pykube = asyncio.run(run_pykube(args.pods))
    result = {
        "benchmark": "pod_startup",
        "pods": args.pods,
        "pykube": summary(pykube),
        "docker_py": summary(baseline),
        "ratio_p50": round(percentile(pykube, 0.5) / percentile(baseline, 0.5), 2),
        "ratio_p99": round(percentile(pykube, 0.99) / percentile(baseline, 0.99), 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
