"""What flows from the drivers to everything else: samples and their quality."""

from __future__ import annotations

import enum
from typing import NamedTuple


class Quality(enum.StrEnum):
    """How far a sample can be trusted."""

    GOOD = "good"
    BAD = "bad"  # the device answered with an exception or an implausible value
    COMM = "comm"  # the device did not answer
    STALE = "stale"  # the value is older than its point's staleness limit


class Sample(NamedTuple):
    """One reading of one point. ``value`` is None unless the device gave a number.

    A named tuple, not a frozen dataclass: as immutable, and a third of the cost to make,
    which counts at thousands of samples a second on a Pi.
    """

    point: str
    ts: int  # UTC epoch milliseconds: the stamp, never used to measure a duration
    value: float | None
    quality: Quality
    # monotonic milliseconds when taken: what alarm delays, rates and the like measure with.
    # None (samples made by hand, in tests): the stamp stands in for it.
    mono: int | None = None

    @property
    def elapsed_ms(self) -> int:
        """The sample's time on the clock that durations are measured with."""
        mono = self.mono
        return self.ts if mono is None else mono

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD and self.value is not None
