"""Which broker the uplink tries next (``failover.BrokerChoice``), on a fake clock."""

from __future__ import annotations

from tests.kit.clock import FakeClock
from watchpost.failover import FAILBACK_CAP, STRIKES, BrokerChoice, Outcome

BROKERS = ["primary:1883", "backup-1:1883", "backup-2:1883"]


def choice(clock: FakeClock, failback_after: float = 300.0) -> BrokerChoice:
    return BrokerChoice(BROKERS, failback_after=failback_after, monotonic=clock.seconds)


def test_a_refusing_primary_is_tried_first_again_in_the_next_round() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    assert brokers.first() == 0
    assert brokers.after(0, Outcome.REFUSED, "connection refused") == (1, False)
    assert brokers.after(1, Outcome.GOOD) == (None, False)
    assert brokers.first() == 0  # unreachable is cheap to try: the primary stays first
    assert brokers.last_failure(0) == "connection refused"
    # on the backup, the primary is tried again after failback_after
    assert brokers.failback_at(1, connected_at=10.0) == 310.0
    assert brokers.failback_at(0, connected_at=10.0) is None


def test_a_broken_primary_is_avoided_and_tried_again_later_with_a_growing_wait() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    assert brokers.first() == 0
    assert brokers.after(0, Outcome.BROKEN, "no PUBACK within 20 s") == (1, True)
    assert brokers.avoided(0)
    clock.advance(5000)
    assert brokers.after(1, Outcome.GOOD) == (None, False)
    assert brokers.first() == 1  # the backup, while the primary is avoided
    assert brokers.failback_at(1, connected_at=clock.seconds()) == clock.seconds() + 300.0
    clock.advance(300000)
    assert not brokers.avoided(0)
    assert brokers.first() == 0  # back to the primary
    assert brokers.after(0, Outcome.BROKEN, "no PUBACK within 20 s") == (1, True)
    assert round(brokers.retry_in(0)) == 600  # doubled: it failed again
    for _ in range(10):
        clock.advance(int((FAILBACK_CAP + 1) * 1000))
        assert brokers.first() == 0
        brokers.after(0, Outcome.BROKEN, "x")
    assert round(brokers.retry_in(0)) == FAILBACK_CAP
    clock.advance(int((FAILBACK_CAP + 1) * 1000))
    assert brokers.first() == 0
    brokers.after(0, Outcome.GOOD)
    brokers.after(0, Outcome.BROKEN, "x")
    assert round(brokers.retry_in(0)) == 300  # a good connection reset the wait


def test_short_connections_in_a_row_make_a_broker_broken() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    for _ in range(STRIKES - 1):
        assert brokers.first() == 0
        assert brokers.after(0, Outcome.SHORT) == (None, False)
    assert brokers.first() == 0
    assert brokers.after(0, Outcome.SHORT, "lost within a keepalive") == (1, True)
    assert brokers.first() == 1


def test_a_good_connection_forgets_the_strikes() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    for _ in range(STRIKES - 1):
        brokers.first()
        brokers.after(0, Outcome.SHORT)
    brokers.first()
    brokers.after(0, Outcome.GOOD)
    brokers.first()
    assert brokers.after(0, Outcome.SHORT) == (None, False)


def test_a_broker_that_went_down_between_short_links_was_restarted_not_flapping() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    for _ in range(2 * STRIKES):
        assert brokers.first() == 0
        assert brokers.after(0, Outcome.SHORT) == (None, False)
        brokers.went_down(0)  # the next attempt found its port closed


def test_when_every_broker_is_avoided_all_are_still_tried_in_order() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    assert brokers.first() == 0
    assert brokers.after(0, Outcome.BROKEN) == (1, True)
    assert brokers.after(1, Outcome.BROKEN) == (2, True)
    assert brokers.after(2, Outcome.BROKEN) == (None, True)
    assert brokers.first() == 0
    assert brokers.after(0, Outcome.REFUSED) == (1, False)


def test_the_gateways_own_leaving_counts_for_nothing() -> None:
    clock = FakeClock()
    brokers = choice(clock)
    brokers.first()
    assert brokers.after(0, Outcome.LEFT) == (None, False)
    assert not brokers.avoided(0)
    assert brokers.last_failure(0) is None
