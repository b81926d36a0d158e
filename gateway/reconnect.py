"""When to try the broker again: soon for one gateway, spread out for a fleet, slower when told.

A broker restart drops every gateway of a fleet in the same second. Each gateway then asks
this policy how long to wait before its next attempt::

    link lost after a healthy session ──> uniform(0, spread)
    attempt failed:
        UNREACHABLE  port closed, no route, TCP timeout  ──> uniform(spread/2, 3*spread/2)
        DROPPED      accepted, then lost before any data moved   ──> capped backoff, full jitter
        SLOW_DOWN    MQTT 5 "server busy" 0x89, "quota exceeded" 0x97,
                     "connection rate exceeded" 0x9F, or no CONNACK in time
                                                     ──> SLOW_FACTOR x backoff, equal jitter
        REFUSED      bad credentials, not authorised, banned  ──> like SLOW_DOWN
    a session that moved data ──> reset
    the gateway ended the session itself ──> at once
    a broker took the connection and did not deliver, next broker ──> uniform(0, spread)

While the broker is down, attempts are refused by its host at no cost to the broker. Because
each gateway's attempts fall at random phases with a mean gap of ``spread``, the fleet's
attempts after the broker is back arrive at about ``N / spread`` per second, and one gateway
waits ``spread / 2`` in the median. A site sizes ``spread`` as fleet size over the connection
rate its brokers accept (docs/fleet.md).

On top of that, no gateway makes more than ``MAX_CONNECTS`` MQTT connections (attempts that
reached the broker's listener) in ``CONNECT_WINDOW`` seconds: brokers ban clients that
connect too often (EMQX's flapping detection: 15 a minute).
"""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from collections.abc import Callable

from watchpost.backoff import Backoff

SLOW_FACTOR = 4.0  # "slow down" answers wait this many times the ordinary backoff
MAX_CONNECTS = 10  # MQTT connections per CONNECT_WINDOW, whatever else the policy says
CONNECT_WINDOW = 60.0  # seconds


class Failure(enum.Enum):
    """Why an attempt did not give a working connection."""

    UNREACHABLE = "unreachable"
    DROPPED = "dropped"
    SLOW_DOWN = "slow_down"
    REFUSED = "refused"
    MOVED = "moved"


# CONNACK / DISCONNECT reason codes that ask a client to come back later: MQTT 5's server
# busy, quota exceeded and connection rate exceeded, and "server unavailable" (0x88, also
# what paho reports for MQTT 3.1.1's return code 3).
SLOW_DOWN_CODES = frozenset({0x88, 0x89, 0x97, 0x9F})
# MQTT 5 reason codes that send a client to another server.
MOVED_CODES = frozenset({0x9C, 0x9D})
SEVERITY = (Failure.UNREACHABLE, Failure.MOVED, Failure.DROPPED, Failure.REFUSED, Failure.SLOW_DOWN)


def refusal(code: int) -> Failure:
    """What a CONNACK or DISCONNECT ``code`` means for the next attempt (< 0: no CONNACK)."""
    if code < 0:
        return Failure.DROPPED
    if code in SLOW_DOWN_CODES:
        return Failure.SLOW_DOWN
    if code in MOVED_CODES:
        return Failure.MOVED
    return Failure.REFUSED


def worst(failures: list[Failure]) -> Failure:
    """The failure of a round over several brokers that decides the wait before the next."""
    return max(failures, key=SEVERITY.index, default=Failure.UNREACHABLE)


class ReconnectPolicy:
    """The delay before each attempt; ``spread`` and ``cap`` in seconds."""

    def __init__(
        self,
        *,
        spread: float,
        initial: float,
        cap: float,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if spread <= 0 or initial <= 0 or cap < initial:
            raise ValueError("reconnect policy needs spread > 0 and 0 < initial <= cap")
        self.spread = spread
        self._rng = rng or random.Random()
        self._backoff = Backoff(initial=initial, cap=cap, rng=self._rng)
        self._monotonic = monotonic
        self._connects: deque[float] = deque(maxlen=MAX_CONNECTS)

    def after_session(self) -> float:
        """The delay after a session that moved data was lost: short and random."""
        self._backoff.reset()
        return self._guarded(self._rng.uniform(0, self.spread))

    def after_failure(self, failure: Failure) -> float:
        """The delay after an attempt that failed for ``failure``."""
        if failure in (Failure.UNREACHABLE, Failure.MOVED):
            delay = self._rng.uniform(0.5 * self.spread, 1.5 * self.spread)
        elif failure is Failure.DROPPED:
            delay = self._backoff.next_delay()
        else:  # SLOW_DOWN, REFUSED: never near zero, and longer than the ordinary backoff
            bound = SLOW_FACTOR * self._backoff.bound()
            self._backoff.next_delay()  # count the failure
            delay = max(self.spread, bound / 2 + self._rng.uniform(0, bound / 2))
        return self._guarded(delay)

    def moving_on(self) -> float:
        """The delay before the next broker after one that took the connection and did not
        deliver: within one spread, so that a fleet that lost a broker at the same moment
        (every PUBACK deadline passing together) reaches the backup at about N / spread a
        second, not in one burst."""
        return self._guarded(self._rng.uniform(0, self.spread))

    def at_once(self) -> float:
        """The delay after the gateway ended a connection itself (to go back to its primary,
        or with a renewed certificate): none, unless it would connect too often."""
        return self._guarded(0.0)

    def connecting(self) -> None:
        """Note an attempt that reached the broker's listener (it counts towards flapping)."""
        self._connects.append(self._monotonic())

    def _guarded(self, delay: float) -> float:
        """``delay``, or longer if the attempt after it would connect too often."""
        if len(self._connects) < MAX_CONNECTS:
            return delay
        free_at = self._connects[0] + CONNECT_WINDOW
        return max(delay, free_at - self._monotonic())
