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

import asyncio
import codecs
import re
from collections import deque
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watchpost.drivers.base import AnswerError, CommError, PollOutcome
from watchpost.drivers.serial_port import PortSettings, SerialPort
from watchpost.samples import Quality, Sample

KEY = "serial_line"
KEPT_LINES = 32

TEXT_ESCAPES = "{text!r}: {error} (escapes allowed: \\r \\n \\t \\xHH \\\\)"
TEXT_NO_VALUE_GROUP = "pattern needs a named group value, e.g. CH4=(?P<value>[-+0-9.]+)"
TEXT_BAD_PATTERN = "not a regular expression: {error}"
TEXT_ONE_SOURCE = "give exactly one of pattern or field"
TEXT_POLLED_NEEDS = "a polled instrument (request) needs an interval"
TEXT_NO_LINE = "device {device}: no line within {timeout} s"
TEXT_PARTIAL = " ({count} byte(s) came without a line end: is line_end right?)"
TEXT_OVERLONG = (
    "device {device}: a line longer than {limit} bytes was dropped "
    "(is line_end right, or the baud rate?)"
)
TEXT_CHECKSUM = "device {device}: line fails its checksum: {line!r}"
TEXT_NO_MATCH = "device {device}: point {point}: no number in line {line!r}"


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


# -- config ------------------------------------------------------------------------------------


class Config(BaseModel):
    """A serial line (RS-232 or RS-485) carrying instruments that talk in lines of text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["serial_line"] = Field(description="Bus type.")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Bus name, unique in the file.")
    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/ttyUSB2.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed in baud."
    )
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    line_end: str = Field(
        default="\\r\\n",
        description="What ends a line, escapes allowed: \\r\\n (the default), \\n or \\r.",
    )
    max_line: int = Field(
        default=256, ge=8, le=4096, description="Longest line in bytes; longer ones are dropped."
    )
    encoding: Literal["ascii", "latin-1", "utf-8"] = Field(
        default="ascii", description="How the instrument's bytes are read as text."
    )

    @field_validator("line_end")
    @classmethod
    def _line_end(cls, value: str) -> str:
        end = _unescaped(value)
        if not 1 <= len(end) <= 2:
            raise ValueError("line_end must be one or two characters, e.g. \\r\\n")
        return value

    def terminator(self) -> bytes:
        return unescape(self.line_end).encode("latin-1")

    def settings(self) -> PortSettings:
        return PortSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


class PointConfig(BaseModel):
    """What a line point adds: where its number stands in the line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Point name, unique in the gateway.")
    pattern: str | None = Field(
        default=None,
        description="A regular expression with a named group value, e.g. CH4=(?P<value>[-+0-9.]+).",
    )
    field: int | None = Field(
        default=None, ge=0, le=255, description="Index (from 0) of the field in a delimited line."
    )
    scale: float = Field(default=1.0, allow_inf_nan=False, description="value = raw*scale+offset")
    offset: float = Field(default=0.0, allow_inf_nan=False, description="value = raw*scale+offset")
    range: tuple[float, float] | None = Field(
        default=None, description="Plausible range [min, max]; outside it a sample is bad."
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(TEXT_BAD_PATTERN.format(error=exc)) from exc
        if "value" not in compiled.groupindex:
            raise ValueError(TEXT_NO_VALUE_GROUP)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> PointConfig:
        if (self.pattern is None) == (self.field is None):
            raise ValueError(TEXT_ONE_SOURCE)
        return self


class DeviceConfig(BaseModel):
    """An instrument on a line: streaming on its own, or polled with ``request``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Device name, unique in the file.")
    bus: str = Field(description="Name of the bus the instrument is on.")
    request: str | None = Field(
        default=None,
        min_length=1,
        description="Sent every interval to ask for a line, escapes allowed, e.g. READ\\r. "
        "Without it the instrument streams lines on its own.",
    )
    interval: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Seconds between polls (or between looks at a "
        "streaming instrument's newest line).",
    )
    timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds to wait for a line before quality comm."
    )
    retries: int = Field(default=0, ge=0, le=5, description="Requests again without a line.")
    checksum: Literal["none", "nmea"] = Field(
        default="none", description="Line checksum: none, or nmea ($...*hh, XOR)."
    )
    delimiter: str = Field(
        default=",", min_length=1, description="Separates the fields of a line, for field points."
    )
    points: list[PointConfig] = Field(min_length=1, description="The points read from it.")

    @field_validator("request")
    @classmethod
    def _request(cls, value: str | None) -> str | None:
        if value is not None:
            _unescaped(value)
        return value


def _unescaped(text: str) -> str:
    try:
        return unescape(text)
    except (UnicodeDecodeError, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(TEXT_ESCAPES.format(text=text, error=exc)) from exc


# -- the line and its instruments ---------------------------------------------------------------


class SerialLineBus:
    """One serial line: its port, its lines, and the request/answer transaction."""

    def __init__(self, config: Config) -> None:
        self.name = config.name
        self.encoding = config.encoding
        self._arrived = asyncio.Event()
        self.framer = LineFramer(config.terminator(), config.max_line, self._arrived.set)
        self.port = SerialPort(config.name, config.settings(), self.framer)

    async def open(self) -> None:
        await self.port.open()

    async def close(self) -> None:
        await self.port.close()

    async def ask(self, request: bytes, *, timeout: float) -> int:
        """Send ``request`` after dropping older lines; the line count to read after."""
        await self.port.open()
        self.port.discard_input()
        await self.port.write(request, timeout=timeout)
        return self.framer.count

    async def lines_after(
        self, seen: int, overlong: int, *, timeout: float, device: str
    ) -> list[tuple[int, str]]:
        """Lines numbered above ``seen`` (waiting up to ``timeout`` for the first one).

        CommError when none came; AnswerError when none came but a line too long did
        (``overlong`` is the framer's count of those when the caller last looked).
        """
        await self.port.open()
        framer = self.framer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            fresh = [(n, line) for n, line in framer.lines if n > seen and line.strip()]
            if fresh:
                return [(n, line.decode(self.encoding, "replace").strip()) for n, line in fresh]
            if framer.overlong != overlong:
                raise AnswerError(TEXT_OVERLONG.format(device=device, limit=framer.max_line))
            left = deadline - loop.time()
            if left <= 0:
                message = TEXT_NO_LINE.format(device=device, timeout=timeout)
                if framer.partial:
                    message += TEXT_PARTIAL.format(count=framer.partial)
                raise CommError(message)
            self._arrived.clear()
            try:
                async with asyncio.timeout(left):
                    await self._arrived.wait()
            except TimeoutError:
                continue


class _Extract:
    """How one point finds its number in a line."""

    def __init__(self, point: PointConfig, delimiter: str) -> None:
        self.point = point
        self.pattern = re.compile(point.pattern) if point.pattern is not None else None
        self.delimiter = delimiter

    def number(self, line: str) -> float | None:
        text: str | None
        if self.pattern is not None:
            match = self.pattern.search(line)
            text = match.group("value") if match else None
        else:
            assert self.point.field is not None
            fields = line.split(self.delimiter)
            text = fields[self.point.field] if self.point.field < len(fields) else None
        if text is None:
            return None
        try:
            return float(text.strip())
        except ValueError:
            return None


class InstrumentReader:
    """Reads one instrument: asks (if polled) or takes its newest lines, then parses them."""

    def __init__(self, device: DeviceConfig, now_ms: Callable[[], int]) -> None:
        self.device = device
        self.now_ms = now_ms
        self.request = unescape(device.request).encode("latin-1") if device.request else None
        self._extracts = [_Extract(point, device.delimiter) for point in device.points]
        self._seen = 0  # the number of the last line this instrument looked at
        self._overlong = 0  # the framer's count of over-long lines at that time

    def longest_poll(self) -> float:
        return self.device.timeout * (self.device.retries + 1)

    async def poll(self, bus: SerialLineBus, *, down: bool = False) -> PollOutcome:
        """One look at the instrument; never raises for line trouble."""
        outcome = PollOutcome([])
        attempts = 1 if down or self.request is None else self.device.retries + 1
        name, timeout = self.device.name, self.device.timeout
        for attempt in range(attempts):
            outcome.requests += 1
            try:
                if self.request is not None:
                    self._seen = await bus.ask(self.request, timeout=timeout)
                lines = await bus.lines_after(
                    self._seen, self._overlong, timeout=timeout, device=name
                )
                break
            except CommError as exc:
                if attempt < attempts - 1:
                    continue
                outcome.comm_error = str(exc)
                return self._all(outcome, Quality.COMM)
            except AnswerError as exc:
                self._overlong = bus.framer.overlong
                outcome.errors.append(str(exc))
                return self._all(outcome, Quality.BAD)
        self._overlong = bus.framer.overlong
        self._seen = lines[-1][0]
        outcome.samples = self._parse([line for _n, line in lines], outcome)
        return outcome

    def _parse(self, lines: list[str], outcome: PollOutcome) -> list[Sample]:
        if self.device.checksum == "nmea":
            checked = [check_nmea(line) for line in lines]
            bad = [line for line, body in zip(lines, checked, strict=True) if body is None]
            if bad:
                outcome.errors.append(TEXT_CHECKSUM.format(device=self.device.name, line=bad[-1]))
            lines = [body for body in checked if body is not None]
        ts = self.now_ms()
        samples = []
        for extract in self._extracts:
            point = extract.point
            number = next(
                (n for line in reversed(lines) if (n := extract.number(line)) is not None), None
            )
            if number is None:
                if lines:
                    outcome.errors.append(
                        TEXT_NO_MATCH.format(
                            device=self.device.name, point=point.name, line=lines[-1]
                        )
                    )
                samples.append(Sample(point.name, ts, None, Quality.BAD))
                continue
            value = number * point.scale + point.offset
            limits = point.range
            good = limits is None or limits[0] <= value <= limits[1]
            samples.append(Sample(point.name, ts, value, Quality.GOOD if good else Quality.BAD))
        return samples

    def _all(self, outcome: PollOutcome, quality: Quality) -> PollOutcome:
        ts = self.now_ms()
        outcome.samples = [Sample(p.name, ts, None, quality) for p in self.device.points]
        return outcome


def create(config: Config) -> SerialLineBus:
    return SerialLineBus(config)
