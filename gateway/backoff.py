"""The one backoff policy of the project: capped exponential delays with full jitter.

Full jitter (a uniform draw between 0 and the exponential bound) spreads a thousand gateways
that lost the same broker at the same moment, so that they do not reconnect in step.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial * 2**n`` capped at ``cap``, each drawn uniformly below that bound."""

    def __init__(
        self,
        *,
        initial: float = 1.0,
        cap: float = 60.0,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failures since the last reset."""
        return self._attempt

    def bound(self) -> float:
        """The upper bound of the next delay."""
        return min(self.cap, self.initial * (1 << min(self._attempt, 32)))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        bound = self.bound()
        self._attempt += 1
        return self._rng.uniform(0, bound) if self.jitter else bound

    def reset(self) -> None:
        """Forget the failures: the next delay starts from ``initial`` again."""
        self._attempt = 0
