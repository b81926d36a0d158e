"""Serial lines at work: the port, the request/answer transaction, the instruments' readers.

The framing and the config are in ``serial_line`` (loaded with the config); this module loads
pyserial and is imported only when a ``serial_line`` bus is opened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from watchpost.drivers.base import (
    AnswerError,
    CommError,
    PollOutcome,
)
from watchpost.drivers.serial_line import (
    TEXT_CHECKSUM,
    TEXT_NO_LINE,
    TEXT_NO_MATCH,
    TEXT_OVERLONG,
    TEXT_PARTIAL,
    LineFramer,
    check_nmea,
    unescape,
)
from watchpost.drivers.serial_port import PortBus
from watchpost.samples import Quality, Sample
from watchpost.settings import LineDevice, LinePoint, SerialLineSettings


class SerialLineBus(PortBus):
    """One serial line: its port, its lines, and the request/answer transaction."""

    NO_REGISTERS = (
        "bus {name} carries line-oriented instruments: there are no registers to {what}; "
        "read its points"
    )

    def __init__(self, config: SerialLineSettings) -> None:
        arrived = asyncio.Event()
        self.framer = LineFramer(config.terminator(), config.max_line, arrived.set)
        super().__init__(config.name, config.settings(), self.framer, arrived)
        self.encoding = config.encoding

    def source(self, device: Any, now_ms: Callable[[], int]) -> InstrumentReader:
        """The reader of one instrument on this line."""
        if not isinstance(device, LineDevice):
            raise TypeError(f"bus {self.name}: {type(device).__name__} is not a line instrument")
        return InstrumentReader(device, now_ms, self)

    async def ask(self, request: bytes, *, timeout: float) -> int:
        """Send ``request`` after dropping older lines; the line count to read after."""
        await self.send(request, timeout=timeout)
        return self.framer.count

    async def lines_after(
        self, seen: int, overlong: int, *, timeout: float
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
            if framer.overlong != overlong:  # a line too long came since the last look
                raise AnswerError(TEXT_OVERLONG.format(limit=framer.max_line))
            left = deadline - loop.time()
            if left <= 0:
                if framer.skipping:  # still inside that line: no line end for too long
                    raise AnswerError(TEXT_OVERLONG.format(limit=framer.max_line))
                message = TEXT_NO_LINE.format(timeout=timeout)
                if framer.partial:
                    message += TEXT_PARTIAL.format(count=framer.partial)
                raise CommError(message)
            await self.wait_arrival(left)


class _Extract:
    """How one point finds its number in a line."""

    def __init__(self, point: LinePoint, delimiter: str) -> None:
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

    def __init__(self, device: LineDevice, now_ms: Callable[[], int], bus: SerialLineBus) -> None:
        self.device = device
        self.now_ms = now_ms
        self.bus = bus
        self.request = unescape(device.request).encode("latin-1") if device.request else None
        self._extracts = [_Extract(point, device.delimiter) for point in device.points]
        self._seen = 0  # the number of the last line this instrument looked at
        self._overlong = 0  # the framer's count of over-long lines at that time

    def longest_poll(self) -> float:
        return self.device.timeout * (self.device.retries + 1)

    async def poll(self, *, down: bool = False) -> PollOutcome:
        """One look at the instrument; never raises for line trouble."""
        bus = self.bus
        outcome = PollOutcome([])
        attempts = 1 if down or self.request is None else self.device.retries + 1
        timeout = self.device.timeout
        for attempt in range(attempts):
            outcome.requests += 1
            try:
                if self.request is not None:
                    self._seen = await bus.ask(self.request, timeout=timeout)
                lines = await bus.lines_after(self._seen, self._overlong, timeout=timeout)
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
                outcome.errors.append(TEXT_CHECKSUM.format(line=bad[-1]))
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
                    outcome.errors.append(TEXT_NO_MATCH.format(point=point.name, line=lines[-1]))
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
