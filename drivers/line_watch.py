"""Noticing a second master on an RS-485 line.

Modbus RTU frames carry no transaction id: when another master polls the same line, its
unit's answer can arrive while the gateway waits for its own and be taken for it. The
gateway cannot tell such an answer from its own, but it can notice traffic it did not cause:

- bytes that arrive between its own transactions (a late answer to a request of its own
  that timed out is allowed for ``LATE_GRACE`` seconds);
- a frame from another unit than the one asked, during a transaction.

While such traffic was seen within the last ``QUIET`` seconds, ``suspect()`` says why the
line's answers cannot be trusted; the bus then reports its reads as bad (``AnswerError``).
The first notice is logged once, the line's return to quiet once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from gettext import gettext as _

log = logging.getLogger(__name__)

QUIET = 10.0  # s without foreign traffic before the line's answers are trusted again
LATE_GRACE = 1.0  # s after a timed-out transaction in which bytes count as its late answer

TEXT_FOREIGN = _(
    "bus {bus}: traffic the gateway did not cause ({what}): another master on the line? "
    "its samples are bad until the line is quiet for {quiet:g} s"
)
TEXT_BETWEEN = _("{count} bytes between the gateway's own transactions")
TEXT_OTHER_UNIT = _("a frame from unit {got} while unit {asked} was asked")
TEXT_QUIET = _("bus {bus}: no foreign traffic for {quiet:g} s; its answers are trusted again")
TEXT_SUSPECT = _("another master on the line: {what}")


class LineWatch:
    """Watches one serial line's bytes through pymodbus' packet trace hook."""

    def __init__(self, bus: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self._now = monotonic
        self._unit: int | None = None  # the unit of the transaction in flight
        self._late_until = 0.0
        self._last_foreign: float | None = None
        self._what = ""
        self._noticed = False

    def begin(self, unit: int) -> None:
        """The gateway starts a transaction with ``unit``."""
        self._unit = unit

    def end(self, *, timed_out: bool) -> None:
        """The transaction is over; after a timeout its late answer may still come."""
        self._unit = None
        if timed_out:
            self._late_until = self._now() + LATE_GRACE

    def trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' ``trace_packet`` hook: sees every frame sent and every buffer received."""
        if sending or not data:
            return data
        unit = self._unit
        if unit is None:
            if self._now() > self._late_until:
                self._foreign(TEXT_BETWEEN.format(count=len(data)))
        elif data[0] != unit:
            self._foreign(TEXT_OTHER_UNIT.format(got=data[0], asked=unit))
        return data

    def suspect(self) -> str | None:
        """Why the line's answers cannot be trusted now, or None."""
        if self._last_foreign is not None and self._now() - self._last_foreign < QUIET:
            return TEXT_SUSPECT.format(what=self._what)
        if self._noticed:
            self._noticed = False
            log.warning(TEXT_QUIET.format(bus=self.bus, quiet=QUIET))
        return None

    def _foreign(self, what: str) -> None:
        self._last_foreign = self._now()
        self._what = what
        if not self._noticed:
            self._noticed = True
            log.warning(TEXT_FOREIGN.format(bus=self.bus, what=what, quiet=QUIET))
