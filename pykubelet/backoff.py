"""Capped, jittered exponential back-off for the agent's reconnect and retry loops (lease, pod
stream, docker events, status pushes).

"Full jitter" (a uniform draw below the exponential ceiling) keeps thousands of agents that lost
the master at the same moment from reconnecting in lock-step when it comes back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable


class Backoff:
    """The delays of one retry loop: ``next_delay()`` grows, ``reset()`` after a success.

    Args:
        initial: the ceiling of the first delay in seconds.
        maximum: the cap of the ceiling in seconds.
        factor: how much the ceiling grows after every failure.
        rand: returns a float in [0, 1); injectable so tests are deterministic.
    """

    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 10.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ):
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._rand = rand
        self._attempt = 0

    def ceiling(self) -> float:
        """The largest delay the next ``next_delay()`` may return."""
        return min(self.maximum, self.initial * self.factor**self._attempt)

    def next_delay(self) -> float:
        """The delay before the next attempt: uniform in [ceiling/2, ceiling], then grows.

        Half the ceiling is kept as a floor so that a failing loop never spins with near-zero
        delays, while the other half still spreads reconnects out.
        """
        ceiling = self.ceiling()
        # Stop growing the exponent once capped so it never overflows on a long outage.
        if ceiling < self.maximum:
            self._attempt += 1
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        """Back to the initial delay, after a success."""
        self._attempt = 0

    async def sleep(self) -> float:
        """Sleeps ``next_delay()`` seconds and returns how long."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
