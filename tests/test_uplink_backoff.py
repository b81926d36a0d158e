"""The reconnect delay: capped exponential with full jitter."""

from __future__ import annotations

import random
import statistics

from watchpost.backoff import Backoff


def test_bound_doubles_then_caps_and_resets() -> None:
    backoff = Backoff(initial=0.5, cap=60.0, rng=random.Random(1))
    bounds = []
    for _ in range(12):
        bounds.append(backoff.bound())
        assert 0 <= backoff.next_delay() <= bounds[-1]
    assert bounds[:8] == [0.5, 1, 2, 4, 8, 16, 32, 60]
    assert set(bounds[7:]) == {60}
    backoff.reset()
    assert backoff.bound() == 0.5


def test_a_thousand_gateways_do_not_reconnect_in_step() -> None:
    rng = random.Random(7)
    gateways = [
        Backoff(initial=0.5, cap=60.0, rng=random.Random(rng.random())) for _ in range(1000)
    ]
    for _ in range(6):  # six failed rounds: bound 16 s
        delays = [g.next_delay() for g in gateways]
    # full jitter: spread uniformly over [0, 16 s], not bunched at the bound
    assert max(delays) <= 16
    assert 6 < statistics.mean(delays) < 10
    buckets = [0] * 16
    for delay in delays:
        buckets[min(int(delay), 15)] += 1
    assert max(buckets) < 100  # no second of the window gets more than 10 % of them
