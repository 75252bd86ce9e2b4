"""How fast the node lifecycle controller may put NoExecute taints on failed nodes (the pure rules
of Kubernetes' ``pkg/controller/nodelifecycle``: zone states and per-zone token buckets).

Nodes are grouped in zones by their ``topology.kubernetes.io/region`` and ``.../zone`` labels
(nodes without them share the zone ""). A zone's state comes from its nodes' Ready conditions:

- ``FullDisruption``: no node is Ready;
- ``PartialDisruption``: more than two nodes are not Ready and they are at least
  ``--unhealthy-zone-threshold`` (0.55) of the zone;
- ``Normal`` otherwise.

Each zone taints failed nodes through a token bucket (burst 1) whose rate follows its state:
Normal and FullDisruption take ``--node-eviction-rate`` (0.1 nodes/s: one node every 10 s);
PartialDisruption takes ``--secondary-node-eviction-rate`` (0.01) in a zone of more than
``--large-cluster-size-threshold`` (50) nodes and 0 (no tainting) in a smaller one. When every
zone is fully disrupted the master is the one cut off (a master-side partition): nothing is
tainted and the lifecycle's NoExecute taints are taken off every node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pymaster.api import objects_pb2

ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

INITIAL = "Initial"
NORMAL = "Normal"
PARTIAL_DISRUPTION = "PartialDisruption"
FULL_DISRUPTION = "FullDisruption"


@dataclass(frozen=True)
class EvictionPolicy:
    """The controller manager's eviction flags.

    Attributes:
        rate: Nodes per second tainted in a healthy zone (``--node-eviction-rate``).
        secondary_rate: The same in a partially disrupted large zone
            (``--secondary-node-eviction-rate``).
        unhealthy_zone_threshold: Fraction of not-Ready nodes from which a zone is partially
            disrupted (``--unhealthy-zone-threshold``).
        large_cluster_size_threshold: Zones of more nodes than this keep the secondary rate when
            partially disrupted; smaller ones stop (``--large-cluster-size-threshold``).
    """

    rate: float = 0.1
    secondary_rate: float = 0.01
    unhealthy_zone_threshold: float = 0.55
    large_cluster_size_threshold: int = 50


def zone_key(node: objects_pb2.Node) -> str:
    """Kubernetes' GetZoneKey: "region:\\x00:zone", or "" for a node with neither label."""
    labels = node.metadata.labels
    region, zone = labels.get(REGION_LABEL, ""), labels.get(ZONE_LABEL, "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def zone_state(ready_statuses: Iterable[str], threshold: float) -> tuple[int, str]:
    """Kubernetes' ComputeZoneState over the Ready statuses ("True", "False", "Unknown", "") of a
    zone's nodes. Returns (nodes not Ready, state)."""
    ready = not_ready = 0
    for status in ready_statuses:
        if status == "True":
            ready += 1
        else:
            not_ready += 1
    if ready == 0 and not_ready > 0:
        return not_ready, FULL_DISRUPTION
    if not_ready > 2 and not_ready / (not_ready + ready) >= threshold:
        return not_ready, PARTIAL_DISRUPTION
    return not_ready, NORMAL


def zone_rate(state: str, zone_size: int, policy: EvictionPolicy) -> float:
    """The tainting rate of a zone in ``state`` (not used when every zone is fully disrupted)."""
    if state == PARTIAL_DISRUPTION:
        return policy.secondary_rate if zone_size > policy.large_cluster_size_threshold else 0.0
    return policy.rate


class TokenBucket:
    """A token bucket of ``burst`` tokens refilled at ``rate`` per second (0: never); starts full.

    Args:
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def set_rate(self, rate: float) -> None:
        """Changes the rate; tokens already earned are kept, except that rate 0 means never (as
        Kubernetes swaps in a never-limiter: not even a token left over may be taken) and leaving
        rate 0 starts full, like Kubernetes' fresh limiter."""
        self._refill()
        if rate <= 0:
            self._tokens = 0.0
        elif self.rate <= 0:
            self._tokens = float(self.burst)
        self.rate = rate

    def try_take(self) -> bool:
        """Takes a token if there is one."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def seconds_to_token(self) -> float | None:
        """How long until a token is there (0: now); None at rate 0 with none left."""
        self._refill()
        if self._tokens >= 1:
            return 0.0
        if self.rate <= 0:
            return None
        return (1 - self._tokens) / self.rate
