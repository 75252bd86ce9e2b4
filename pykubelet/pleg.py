"""The pod lifecycle event generator: turns what happens in Docker into "sync pod <uid>".

Two inputs, so that a lost Docker event costs a second, never correctness:

- the engine's event stream (start, die, destroy ...), for immediacy;
- a relist every second (``runtime.list_pods``) compared with the previous one.

The relist also feeds the container gauges, the node usage counts and the reaper, and its
recency is the agent's health (``healthy()``, the kubelet's "PLEG is not healthy").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pykubelet.backoff import Backoff
from pykubelet.metrics import AgentMetrics
from pykubelet.node_info import PodCounts
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerRuntimeError, PodRuntime, Runtime

log = logging.getLogger(__name__)

Fingerprint = frozenset[tuple[str, str, int | None]]


def fingerprint(pod: PodRuntime) -> Fingerprint:
    """What a relist compares for one pod: each container's id, state and exit code."""
    return frozenset((c.id, c.state, c.exit_code) for c in pod.containers)


def changed_pods(old: dict[str, Fingerprint], new: dict[str, Fingerprint]) -> set[str]:
    """The pod uids whose containers differ between two relists (appeared, changed, vanished)."""
    return {uid for uid in old.keys() | new.keys() if old.get(uid) != new.get(uid)}


def count_containers(pods: dict[str, PodRuntime]) -> tuple[PodCounts, dict[str, int]]:
    """Pods with a running infra container and running app containers; app containers by state."""
    by_state: dict[str, int] = {}
    running_pods = 0
    for pod in pods.values():
        infra = pod.infra
        if infra is not None and infra.state == "running":
            running_pods += 1
        for container in pod.containers:
            if container.name != INFRA_CONTAINER_NAME:
                by_state[container.state] = by_state.get(container.state, 0) + 1
    return PodCounts(running_pods, by_state.get("running", 0)), by_state


class Pleg:
    """Watches the node's containers.

    Args:
        runtime: the container runtime.
        node_name: this node; only its containers are seen.
        on_pod_event: called with a pod uid whose containers changed.
        metrics: the agent's metrics (relist duration, container gauges).
        on_relist: called with every relist's pods (the reaper).
        period: seconds between relists.
    """

    def __init__(
        self,
        runtime: Runtime,
        node_name: str,
        on_pod_event: Callable[[str], None],
        metrics: AgentMetrics,
        on_relist: Callable[[dict[str, PodRuntime]], None] | None = None,
        period: float = 1.0,
    ):
        self._runtime = runtime
        self._node_name = node_name
        self._on_pod_event = on_pod_event
        self._metrics = metrics
        self._on_relist = on_relist
        self.period = period
        self._fingerprints: dict[str, Fingerprint] = {}
        # Until the first relist, health counts from start-up (like the kubelet's PLEG).
        self._last_relist = time.monotonic()
        self.counts = PodCounts()

    def healthy(self) -> bool:
        """Whether a relist completed within the last three periods. Thread-safe (read by
        the metrics HTTP thread)."""
        return self.unhealthy_message() is None

    def unhealthy_message(self) -> str | None:
        """None while healthy, else the kubelet's NotReady message ("PLEG is not healthy: pleg was
        last seen active 4.2s ago; threshold is 3s")."""
        age, threshold = time.monotonic() - self._last_relist, 3 * self.period
        if age <= threshold:
            return None
        return f"PLEG is not healthy: pleg was last seen active {age:.1f}s ago; threshold is {threshold:g}s"

    async def run_relist(self) -> None:
        """Relists every period until cancelled; a failed relist is logged and retried."""
        while True:
            started = time.monotonic()
            try:
                await self.relist()
            except ContainerRuntimeError as err:
                log.warning("relist failed node=%s reason=%s error=%s", self._node_name, err.reason,
                            err.message)
            except Exception:  # a bug must not stop the relist: the node would look unhealthy
                log.exception("relist crashed node=%s", self._node_name)
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    async def relist(self) -> None:
        """One relist: list the node's pods, notify the changed ones, update the gauges."""
        started = time.monotonic()
        pods = await self._runtime.list_pods(self._node_name)
        self._metrics.relist_duration.observe(time.monotonic() - started)
        fingerprints = {uid: fingerprint(pod) for uid, pod in pods.items()}
        changed = changed_pods(self._fingerprints, fingerprints)
        self._fingerprints = fingerprints
        self._last_relist = time.monotonic()
        self.counts, by_state = count_containers(pods)
        self._metrics.set_container_counts(self.counts.running_pods, by_state)
        for uid in changed:
            self._on_pod_event(uid)
        if self._on_relist is not None:
            self._on_relist(pods)

    async def run_events(self) -> None:
        """Follows the engine's events until cancelled, reconnecting with back-off."""
        backoff = Backoff()
        while True:
            try:
                async for uid in self._runtime.events(self._node_name):
                    backoff.reset()
                    self._on_pod_event(uid)
                log.warning("docker event stream ended node=%s", self._node_name)
            except ContainerRuntimeError as err:
                log.warning("docker event stream failed node=%s reason=%s error=%s", self._node_name,
                            err.reason, err.message)
            except Exception:  # the relist covers for a broken stream; keep trying to reopen it
                log.exception("docker event stream crashed node=%s", self._node_name)
            await backoff.sleep()
