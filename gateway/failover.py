"""Which broker to try next: the primary while it delivers, a backup while it does not.

The uplink tells this class how each attempt at a configured broker ended::

    REFUSED  no connection (unreachable, CONNACK refused, no CONNACK)
                 -> the next broker of this round, at once
    BROKEN   the broker took the connection but did not deliver: a PUBACK past
             `ack_timeout`, or the link was lost before the broker acknowledged anything
                 -> the broker is avoided for `wait` (see below); the next broker, at once
    SHORT    data moved, but the broker dropped the link within a keepalive period
                 -> a strike; STRIKES in a row on the same broker make it BROKEN
    GOOD     the connection moved data and lasted, or stayed up a keepalive period
                 -> strikes and wait forgotten for that broker
    LEFT     the gateway ended it itself (going back to the primary, a renewed certificate)

and, apart from the outcomes, when a broker's port is found closed (``went_down``): its
strikes are forgotten, since a link lost to a broker that then stopped listening was a
restart or an outage, not a running broker dropping its clients.

A round tries the brokers that are not avoided in the configured order, then the avoided
ones (something must be tried): a round that ends without a connection waits as
``ReconnectPolicy`` says, and the next round starts again from the first choice.

Going back: a connection to a backup ends, cleanly, ``failback_after`` seconds after it
came up (or once the broker it stood in for stops being avoided, if that is later), and the
round starts from the primary again. Each BROKEN verdict doubles that broker's wait, up to
``FAILBACK_CAP``; a GOOD connection to it resets the wait. So a primary that keeps failing
is tried once per wait, never in a loop, and a backup's connection is never cut more often
than once per ``failback_after``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

STRIKES = 3  # short connections in a row that make a broker count as broken
FAILBACK_CAP = 3600.0  # seconds: the longest a broken primary is avoided


class Outcome(enum.Enum):
    """How one attempt at a broker ended."""

    REFUSED = "refused"
    BROKEN = "broken"
    SHORT = "short"
    GOOD = "good"
    LEFT = "left"


@dataclass(slots=True)
class _Broker:
    label: str
    wait: float
    avoid_until: float = 0.0
    strikes: int = 0
    last_failure: str | None = None


class BrokerChoice:
    """The order in which the configured brokers are tried; ``labels[0]`` is the primary."""

    def __init__(
        self,
        labels: Sequence[str],
        *,
        failback_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not labels or failback_after <= 0:
            raise ValueError("a broker choice needs brokers and failback_after > 0")
        self.failback_after = failback_after
        self._brokers = [_Broker(label, failback_after) for label in labels]
        self._monotonic = monotonic
        self._round: list[int] = []

    def first(self) -> int:
        """Start a round: the broker to try first."""
        now = self._monotonic()
        usable = [i for i, b in enumerate(self._brokers) if b.avoid_until <= now]
        avoided = [i for i, b in enumerate(self._brokers) if b.avoid_until > now]
        self._round = usable + avoided
        return self._round.pop(0)

    def after(self, index: int, outcome: Outcome, reason: str = "") -> tuple[int | None, bool]:
        """Note how the attempt at ``index`` ended.

        Returns the broker to try at once in this round (None: the round is over, wait),
        and whether this outcome just made the broker count as broken.
        """
        broker = self._brokers[index]
        if outcome is Outcome.SHORT:
            broker.strikes += 1
            if broker.strikes >= STRIKES:
                outcome = Outcome.BROKEN
        if outcome is Outcome.GOOD:
            broker.strikes, broker.wait, broker.last_failure = 0, self.failback_after, None
            return None, False
        if outcome in (Outcome.SHORT, Outcome.LEFT):
            return None, False
        broker.last_failure = reason or outcome.value
        broken = outcome is Outcome.BROKEN
        if broken:
            broker.strikes = 0
            broker.avoid_until = self._monotonic() + broker.wait
            broker.wait = min(FAILBACK_CAP, broker.wait * 2)
        return (self._round.pop(0) if self._round else None), broken

    def went_down(self, index: int) -> None:
        """Note that nothing listened at ``index``: its strikes are forgotten."""
        self._brokers[index].strikes = 0

    def failback_at(self, index: int, connected_at: float) -> float | None:
        """When a connection to ``index`` that came up at ``connected_at`` (monotonic) should
        end to try a broker configured before it; None for the primary."""
        if index == 0:
            return None
        ahead = min(b.avoid_until for b in self._brokers[:index])
        return max(connected_at + self.failback_after, ahead)

    def avoided(self, index: int) -> bool:
        """Whether ``index`` is judged broken at the moment."""
        return self._brokers[index].avoid_until > self._monotonic()

    def retry_in(self, index: int) -> float:
        """Seconds until ``index`` is tried first again (0 if it is not avoided)."""
        return max(0.0, self._brokers[index].avoid_until - self._monotonic())

    def last_failure(self, index: int) -> str | None:
        """Why the last attempt at ``index`` failed, until a good connection to it."""
        return self._brokers[index].last_failure

    def label(self, index: int) -> str:
        return self._brokers[index].label
