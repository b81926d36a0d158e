"""Noticing a second master on an RS-485 line.

Modbus RTU frames carry no transaction id: when another master polls the same line, its
unit's answer can arrive while the gateway waits for its own and be taken for it. The
gateway cannot tell such an answer from its own, but it can notice traffic it did not cause:

- bytes that arrive between its own transactions (a late answer to a request of its own
  that timed out is allowed for ``LATE_GRACE`` seconds);
- a frame from another unit than the one asked, during a transaction;
- an answer that arrives before the gateway's request could have ended on the line
  (``LineTiming``): the unit asked cannot start its answer before the request's last
  character, so bytes received sooner were sent by someone else. The 3.5-character silence
  the standard asks of a unit before it answers is not required: units that answer sooner
  exist, and taking their lines for bad would cost the site its sensors. Receiving the
  answer's first character takes one more character time, which leaves a margin of one
  character for the UART's clock tolerance.

While such traffic was seen within the last ``QUIET`` seconds, ``suspect()`` says why the
line's answers cannot be trusted; the bus then reports its reads as bad (``AnswerError``).
The first notice is logged once, the line's return to quiet once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
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
TEXT_EARLY = _("an answer {ms} ms before the request could have ended on the line")
TEXT_QUIET = _("bus {bus}: no foreign traffic for {quiet:g} s; its answers are trusted again")
TEXT_SUSPECT = _("another master on the line: {what}")


@dataclass(frozen=True)
class LineTiming:
    """How long characters take on a serial line with these settings."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def char(self) -> float:
        """Seconds per character: a start bit, the data bits, a parity bit if any, stop bits."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate


class LineWatch:
    """Watches one serial line's bytes through pymodbus' packet trace hook."""

    def __init__(
        self,
        bus: str,
        *,
        timing: LineTiming | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self._timing = timing  # None: answers are not checked for arriving too early
        self._now = monotonic
        self._unit: int | None = None  # the unit of the transaction in flight
        self._answer_from = 0.0  # the earliest moment an answer to the request can arrive
        self._late_until = 0.0
        self._last_foreign: float | None = None
        self._what = ""
        self._noticed = False

    def begin(self, unit: int) -> None:
        """The gateway starts a transaction with ``unit``."""
        self._unit = unit
        self._answer_from = 0.0

    def end(self, *, timed_out: bool) -> None:
        """The transaction is over; after a timeout its late answer may still come."""
        self._unit = None
        if timed_out:
            self._late_until = self._now() + LATE_GRACE

    def trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' ``trace_packet`` hook: sees every frame sent and every buffer received."""
        if sending:
            if self._unit is not None and self._timing is not None:
                on_line = len(data) * self._timing.char
                self._answer_from = self._now() + on_line
            return data
        if not data:
            return data
        unit = self._unit
        now = self._now()
        if unit is None:
            if now > self._late_until:
                self._foreign(TEXT_BETWEEN.format(count=len(data)))
        elif now < self._answer_from:
            ms = f"{(self._answer_from - now) * 1000:.1f}"
            self._foreign(TEXT_EARLY.format(ms=ms))
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
