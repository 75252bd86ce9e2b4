"""Node leases, kept in the master's memory: when each node's agent last renewed, and which
leases expired (kube's coordination Leases, minus the store writes).

Leases are never written to the store (thousands of agents renewing every few seconds would be
most of the write load); only transitions are: Ready=True -> Unknown when a lease expires (the
node lifecycle controller), Unknown -> True when the agent is heard again (the node registry).
After a master restart the table starts empty and every stored node counts as renewed at start,
so agents get a full grace period to find the new master.

The master also sets each agent's renewal period (swarmkit's heartbeat): ``next_renew_seconds``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pymaster.api.limits import check_finite, check_name

DEFAULT_LEASE_SECONDS = 10.0
MIN_LEASE_SECONDS = 0.1
# The renewal period handed out is up to this fraction shorter than asked, so agents started
# together (after a master restart) spread their renewals (swarmkit's heartbeat jitter).
LEASE_JITTER = 0.1


@dataclass
class _Lease:
    renewed: float  # monotonic time of the last renewal
    unknown: bool  # the node is (or is being) marked Ready=Unknown for this lease's expiry
    seq: int  # identifies this lease's heap entry; stale entries are skipped


class NodeLeases:
    """The lease of every node: last renewal times and deadlines (monotonic clock)."""

    def __init__(self, grace_period: float, clock: Callable[[], float] = time.monotonic):
        """
        Args:
            grace_period: Seconds without renewal after which a node's lease expires.
        """
        self.grace_period = grace_period
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.changed = asyncio.Event()

    def __contains__(self, name: str) -> bool:
        return name in self._leases

    def seed(self, names: Iterable[str], unknown: Iterable[str] = ()) -> None:
        """Counts nodes as renewed now (at master start); ``unknown`` ones are already Ready=Unknown
        in the store, so their next renewal must mark them Ready again."""
        unknown = set(unknown)
        for name in names:
            self.renew(name)
            self._leases[name].unknown = name in unknown

    def renew(self, name: str) -> bool:
        """Records a renewal (or a registration) of ``name``.

        Returns:
            True if the node was marked Ready=Unknown and the caller must set it Ready again.
        """
        now = self._clock()
        lease = self._leases.get(name)
        if lease is None or lease.unknown:
            was_unknown = lease is not None and lease.unknown
            lease = _Lease(now, False, next(self._seq))
            self._leases[name] = lease
            heapq.heappush(self._heap, (now + self.grace_period, lease.seq, name))
            self.changed.set()
            return was_unknown
        lease.renewed = now
        return False

    def remove(self, name: str) -> None:
        """Forgets a node (deleted)."""
        self._leases.pop(name, None)

    def is_expired(self, name: str) -> bool:
        """True if ``name`` has a lease that was not renewed within the grace period."""
        lease = self._leases.get(name)
        return lease is not None and self._clock() - lease.renewed >= self.grace_period

    def pop_expired(self) -> list[str]:
        """The nodes whose lease expired since the last call; each is returned once per expiry
        and counts as unknown until renewed."""
        now = self._clock()
        expired = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, name = heapq.heappop(self._heap)
            lease = self._leases.get(name)
            if lease is None or lease.seq != seq or lease.unknown:
                continue
            deadline = lease.renewed + self.grace_period
            if deadline <= now:
                lease.unknown = True
                expired.append(name)
            else:
                heapq.heappush(self._heap, (deadline, seq, name))
        return expired

    def seconds_to_next_deadline(self) -> float | None:
        """How long until the earliest deadline (0 if one passed); None without leases."""
        if not self._heap:
            return None
        return max(self._heap[0][0] - self._clock(), 0.0)


def check_renewal(name: str, requested_seconds: float) -> None:
    """The checks of a renewal request, the same on the API port and the lease lane.

    Raises:
        ValidationError: a bad node name or period.
    """
    check_name("nodeName", name)
    check_finite("requestedSeconds", requested_seconds)


def next_renew_seconds(requested: float, grace_period: float, jitter: float) -> float:
    """The lease period to hand an agent.

    Args:
        requested: What the agent asked for; 0 or less means the default (10 s).
        grace_period: The master's node monitor grace period; the period is at most a third of
            it so that two renewals may be lost before the node turns Unknown.
        jitter: A random number in [0, 1): the period is shortened by up to LEASE_JITTER of it.
    """
    period = requested if requested > 0 else DEFAULT_LEASE_SECONDS
    period = min(max(period, MIN_LEASE_SECONDS), max(grace_period / 3, MIN_LEASE_SECONDS))
    return period * (1 - LEASE_JITTER * jitter)
