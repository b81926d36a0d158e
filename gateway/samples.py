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
    ts: int  # UTC epoch milliseconds
    value: float | None
    quality: Quality

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD and self.value is not None
