"""Serial instruments that talk in lines of text (bus type ``serial_line``).

Gas detectors, level radars and flow computers on RS-232 or RS-485 that either stream lines
on their own (``CH4=0.42;CO=12``) or answer a ``request`` string sent every ``interval``.
A point takes its number from a line with ``pattern``, a regular expression with a named
group ``value``, or with ``field``, the index of a field of a delimited line; then
``value = number * scale + offset``.

Lines are cut at the bus's ``line_end`` by ``LineFramer`` (pyserial's
``serial.threaded.LineReader`` framing, with bounds): a line longer than ``max_line`` bytes
is dropped up to its end and counted, and at most ``KEPT_LINES`` complete lines wait for a
poll, so garbage, a missing line end or an endless line never grow memory. Optional
NMEA-style checksums (``$...*hh``, XOR of the characters between ``$`` and ``*``).

Quality: `comm` when no line came within ``timeout``; `bad` when a line came but does not
parse, fails its checksum or was too long.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable
from gettext import gettext as _
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.drivers.serial_line_bus import SerialLineBus
    from watchpost.settings import SerialLineSettings

KEY = "serial_line"
KEPT_LINES = 32

TEXT_ESCAPES = _("{text!r}: {error} (escapes allowed: \\r \\n \\t \\xHH \\\\)")
TEXT_LINE_END = _("line_end must be one or two characters, e.g. \\r\\n")
TEXT_NO_LINE = _("no line within {timeout} s")
TEXT_PARTIAL = _(" ({count} byte(s) came without a line end: is line_end right?)")
TEXT_OVERLONG = _(
    "a line longer than {limit} bytes was dropped (is line_end right, or the baud rate?)"
)
TEXT_CHECKSUM = _("line fails its checksum: {line!r}")
TEXT_NO_MATCH = _("point {point}: no number in line {line!r}")


def unescape(text: str) -> str:
    r"""``READ\r`` as typed in a config file -> ``READ`` + carriage return."""
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")


def nmea_checksum(body: str) -> int:
    """XOR of the characters of ``body`` (what stands between ``$`` and ``*``)."""
    checksum = 0
    for char in body.encode("ascii", "replace"):
        checksum ^= char
    return checksum


def check_nmea(line: str) -> str | None:
    """The line without ``$``/``!`` and ``*hh`` if its checksum holds, else None."""
    if len(line) < 4 or line[0] not in "$!" or line[-3] != "*":
        return None
    body = line[1:-3]
    try:
        given = int(line[-2:], 16)
    except ValueError:
        return None
    return body if nmea_checksum(body) == given else None


class LineFramer:
    """Cuts a byte stream into lines at ``terminator``; bounded (see the module docstring).

    Every complete line gets a number (``count`` after it arrived), so that several devices
    on one line can each take the lines that came since their last poll.
    """

    def __init__(
        self, terminator: bytes, max_line: int, on_line: Callable[[], None] | None = None
    ) -> None:
        self.terminator = terminator
        self.max_line = max_line
        self.on_line = on_line
        self.lines: deque[tuple[int, bytes]] = deque(maxlen=KEPT_LINES)
        self.count = 0  # lines received since the port opened
        self.overlong = 0  # lines dropped for their length
        self._buffer = bytearray()
        self._skipping = False  # inside an over-long line: drop up to its end

    @property
    def partial(self) -> int:
        """Bytes waiting for their line end."""
        return len(self._buffer)

    @property
    def skipping(self) -> bool:
        """Inside a line already too long: its bytes are dropped up to its end."""
        return self._skipping

    def reset(self) -> None:
        self._buffer.clear()
        self._skipping = False
        self.lines.clear()

    def feed(self, data: bytes) -> None:
        buffer, terminator = self._buffer, self.terminator
        buffer += data
        got = False
        while (end := buffer.find(terminator)) >= 0:
            if self._skipping:  # the end of a line already counted as too long
                self._skipping = False
            elif end > self.max_line:
                self.overlong += 1
            else:
                self.count += 1
                self.lines.append((self.count, bytes(buffer[:end])))
            del buffer[: end + len(terminator)]
            got = True
        if len(buffer) > self.max_line:
            if not self._skipping:
                self.overlong += 1
                self._skipping = True
                got = True
            keep = len(terminator) - 1  # the start of a terminator split across two reads
            del buffer[: len(buffer) - keep]
        if got and self.on_line is not None:
            self.on_line()


def check_escapes(text: str) -> str:
    """``text`` with its escapes resolved; ValueError naming the allowed ones."""
    try:
        return unescape(text)
    except (UnicodeDecodeError, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(TEXT_ESCAPES.format(text=text, error=exc)) from exc


def create(config: SerialLineSettings) -> SerialLineBus:
    """A closed bus; pyserial is imported here, not when the config is loaded."""
    from watchpost.drivers.serial_line_bus import SerialLineBus  # noqa: PLC0415 - light config

    return SerialLineBus(config)


def __getattr__(name: str) -> object:
    """``Config`` and ``DRIVER``, the pydantic side, from ``serial_line_config`` on first use
    (the daemon never loads them)."""
    if name in ("Config", "DRIVER"):
        from watchpost.drivers import serial_line_config  # noqa: PLC0415 - not for the daemon

        return getattr(serial_line_config, name)
    raise AttributeError(name)
