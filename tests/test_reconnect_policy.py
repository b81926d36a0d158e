"""The reconnect policy: soon for one gateway, spread for a fleet, slower when told."""

from __future__ import annotations

import random
import statistics

import pytest

from watchpost.reconnect import CONNECT_WINDOW, MAX_CONNECTS, Failure, ReconnectPolicy


def _first_attempt_after(policy: ReconnectPolicy, back_at: float) -> float:
    """When a gateway that lost its broker at 0 next tries once the broker is back."""
    now = policy.after_session()
    while now < back_at:
        now += policy.after_failure(Failure.UNREACHABLE)
    return now


def test_one_gateway_is_back_within_a_second_in_the_median() -> None:
    rng = random.Random(3)
    waits = [
        _first_attempt_after(ReconnectPolicy(spread=2.0, initial=0.5, cap=15, rng=rng), 30.0) - 30.0
        for _ in range(2000)
    ]
    assert 0.8 < statistics.median(waits) < 1.2  # spread / 2
    assert max(waits) <= 3.0  # never more than 1.5 spread


@pytest.mark.parametrize("fleet", [1000, 10000])
def test_a_fleet_reconnects_at_about_fleet_over_spread_per_second(fleet: int) -> None:
    rng = random.Random(fleet)
    spread = 2.0
    arrivals = [
        _first_attempt_after(ReconnectPolicy(spread=spread, initial=0.5, cap=15, rng=rng), 30.0)
        for _ in range(fleet)
    ]
    per_half_second = [0] * 8
    for t in arrivals:
        per_half_second[int((t - 30.0) * 2)] += 1
    peak_rate = max(per_half_second) * 2
    assert peak_rate < 1.2 * fleet / spread  # bounded: no second sees the whole fleet
    assert sum(per_half_second[:6]) == fleet  # and all of it is back within 1.5 spread


def test_slow_down_waits_longer_than_an_unreachable_broker() -> None:
    rng = random.Random(1)
    slow = ReconnectPolicy(spread=2.0, initial=0.5, cap=15, rng=rng)
    delays = [slow.after_failure(Failure.SLOW_DOWN) for _ in range(6)]
    assert all(d >= 2.0 for d in delays)
    assert delays[-1] >= 30.0  # 4 x the 15 s cap, equal jitter: at least half of it
    slow.after_session()
    assert slow.after_failure(Failure.SLOW_DOWN) < 4.0  # a good session resets it


def test_no_more_connections_than_the_flapping_limit() -> None:
    now = [0.0]
    policy = ReconnectPolicy(
        spread=0.1, initial=0.1, cap=0.2, rng=random.Random(2), monotonic=lambda: now[0]
    )
    made = []
    for _ in range(3 * MAX_CONNECTS):
        policy.connecting()
        made.append(now[0])
        now[0] += policy.after_failure(Failure.DROPPED)
    for i in range(len(made) - MAX_CONNECTS):
        assert made[i + MAX_CONNECTS] - made[i] >= CONNECT_WINDOW - 1e-9


def test_a_fleet_leaving_a_broken_broker_reaches_the_backup_spread_out() -> None:
    """Every gateway's PUBACK deadline passes in the same second when a broker stalls: the
    move to the backup is spread over one `reconnect_spread`, at about N / spread a second."""
    rng = random.Random(7)
    fleet, spread = 1000, 2.0
    arrivals = [
        ReconnectPolicy(spread=spread, initial=0.5, cap=15, rng=rng).moving_on()
        for _ in range(fleet)
    ]
    per_half_second = [0] * 4
    for t in arrivals:
        per_half_second[int(t * 2)] += 1
    assert max(per_half_second) * 2 < 1.2 * fleet / spread
    assert max(arrivals) <= spread
