"""Readiness latency: how long after its container started (Docker's State.StartedAt) a pod with
one readiness probe (exec, initialDelaySeconds 1, periodSeconds 1) is seen Ready by a client
watching the master, beside pods without a probe in the same run (Ready as soon as the agent sees
the container running: the status path's own latency, the baseline). The target is the issue's:
Ready within initialDelaySeconds + periodSeconds + 0.5 s of the container's start.

Usage: python bench/readiness.py [--pods N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import single_node_cluster  # noqa: E402
from bench.pod_startup import percentile, summary  # noqa: E402
from pymaster.api import objects_pb2  # noqa: E402
from pymaster.client import Client  # noqa: E402
from tests.e2e.harness import BUSYBOX  # noqa: E402

INITIAL_DELAY = 1
PERIOD = 1
TARGET_SECONDS = INITIAL_DELAY + PERIOD + 0.5


def pod(name: str, probe: bool) -> objects_pb2.Pod:
    container = objects_pb2.Container(name="main", image=BUSYBOX, command=["sh", "-c", "sleep 3600"])
    if probe:
        container.readiness_probe.exec.command[:] = ["true"]
        container.readiness_probe.initial_delay_seconds = INITIAL_DELAY
        container.readiness_probe.period_seconds = PERIOD
    spec = objects_pb2.PodSpec(containers=[container], termination_grace_period_seconds=1)
    return objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name), spec=spec)


def ready(pod_: objects_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod_.status.conditions)


def started_at(engine: docker.DockerClient, uid: str) -> float:
    """Docker's start time of the pod's app container, epoch seconds (nanoseconds kept)."""
    found = engine.containers.list(
        all=True, filters={"label": [f"pykube.pod.uid={uid}", "pykube.container.name=main"]}
    )
    stamp = found[0].attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    whole, _, rest = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return seconds + float("0." + (rest or "0"))


async def ready_after_start(client: Client, engine: docker.DockerClient, name: str, probe: bool) -> float:
    listed = await client.list_pods(namespace="default", field_selector=f"metadata.name={name}")
    created = await client.create_pod(pod(name, probe))
    events = client.watch_pods("default", field_selector=f"metadata.name={name}",
                               resource_version=listed.resource_version)
    async for event in events:
        if ready(event.object):
            seen = time.time()
            break
    return seen - started_at(engine, created.metadata.uid)


async def run(pods: int) -> dict[str, list[float]]:
    engine = docker.from_env()
    results: dict[str, list[float]] = {"no_probe": [], "readiness_probe": []}
    try:
        async with single_node_cluster() as master, master.client() as client:
            for i in range(pods):
                for kind, probe in (("no_probe", False), ("readiness_probe", True)):
                    name = f"{kind.replace('_', '-')}-{i}"
                    results[kind].append(await ready_after_start(client, engine, name, probe))
                    await client.delete_pod(name, grace_period_seconds=0, force=True)
    finally:
        engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    args = parser.parse_args()
    results = asyncio.run(run(args.pods))
    probed = results["readiness_probe"]
    print(json.dumps({
        "benchmark": "readiness",
        "pods": args.pods,
        "readiness_probe": {**summary(probed), "max_ms": round(max(probed) * 1000, 1)},
        "no_probe_baseline": summary(results["no_probe"]),
        "target_ms": TARGET_SECONDS * 1000,
        "within_target": max(probed) <= TARGET_SECONDS,
        "p99_within_target": percentile(probed, 0.99) <= TARGET_SECONDS,
    }, indent=2))


if __name__ == "__main__":
    main()
