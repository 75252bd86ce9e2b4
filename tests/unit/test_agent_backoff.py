"""The capped, jittered back-off of the agent's retry loops."""

from __future__ import annotations

import pytest

from pykubelet.backoff import Backoff


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        # The ceiling doubles from 0.2 up to the 10 s cap; delays are in [ceiling/2, ceiling].
        (0.0, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]),
        (0.999999, [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]),
    ],
)
def test_delays_grow_to_the_cap(rand: float, expected: list[float]) -> None:
    backoff = Backoff(initial=0.2, maximum=10.0, rand=lambda: rand)
    assert [round(backoff.next_delay(), 3) for _ in expected] == expected


def test_reset() -> None:
    backoff = Backoff(initial=0.2, maximum=10.0, rand=lambda: 0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_long_outage_stays_capped() -> None:
    backoff = Backoff(initial=0.2, maximum=10.0, rand=lambda: 0.5)
    delays = [backoff.next_delay() for _ in range(10_000)]
    assert max(delays) == pytest.approx(7.5)
    assert backoff.ceiling() == 10.0


def test_jitter_spreads_delays() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0)
    delays = {backoff.next_delay() for _ in range(50)}
    assert len(delays) > 1
    assert all(0.5 <= d <= 1.0 for d in delays)
