"""The simulator's meters and line instruments, each line on one pseudo-terminal.

The simulator holds the master side and reads it on the event loop; the gateway opens the
slave side through the bus's link (``var/meters`` -> ``/dev/pts/N``), as it opens a USB
adapter. Values come from the site engine (``engine.value(point)``), so a scripted phase
moves a meter's power as it moves a gas reading.

- ``MeterServer``: DL/T 645-2007 meters. A read (C=11H) to a meter's address is answered
  with 91H, the DI and the value in the DI's data format; a DI the meter does not serve with
  D1H and error bit 1 (no data requested); the broadcast address read (13H to AA..AA) with
  the address of each meter on the line. Uses the gateway's own codec (``drivers/dlt645``):
  the tests check that codec against an emulator written from the standard instead.
- ``InstrumentServer``: a streaming instrument writes its line every ``period`` seconds; a
  polled one answers its ``request`` with its line; ``checksum = "nmea"`` sends
  ``$LINE*hh``.

Device faults apply as on Modbus: ``silent`` (no answer, no line), ``slow`` (late), and
``exception`` (a meter answers D1H with the fault's code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Callable, Coroutine
from typing import Any

from watchpost.drivers import dlt645
from watchpost.drivers.serial_line import nmea_checksum, unescape
from watchpost.drivers.simulator.site import (
    InstrumentLine,
    MeterLine,
    Refuse,
    Silent,
    SimDeviceConfig,
    SiteConfig,
    Slow,
)

log = logging.getLogger(__name__)

NO_DATA = 0x02  # error byte bit 1: no data requested
MAX_PENDING = 4096  # bytes of an unfinished request kept


class PtyEnd:
    """A pseudo-terminal whose master the simulator serves; ``path`` is the gateway's end."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        for fd in (self.master, self.slave):
            tty.setraw(fd)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except (BlockingIOError, InterruptedError):
            log.debug(
                "pty %s full: %d bytes dropped, as on a line nobody reads", self.path, len(data)
            )

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):  # closing twice at shutdown: nothing to lose
                os.close(fd)


class _Faults:
    """The device faults of the site, asked by device name at time ``now``."""

    def __init__(self, site: SiteConfig, now: Callable[[], float]) -> None:
        self.site = site
        self.now = now

    def silent(self, device: str) -> bool:
        return any(
            isinstance(f, Silent) and f.device == device and f.active(self.now())
            for f in self.site.faults
        )

    def delay(self, device: str) -> float:
        return sum(
            f.delay
            for f in self.site.faults
            if isinstance(f, Slow) and f.device == device and f.active(self.now())
        )

    def refusal(self, device: str) -> int | None:
        for f in self.site.faults:
            if isinstance(f, Refuse) and f.device == device and f.active(self.now()):
                return f.code
        return None


class MeterServer:
    """The meters of one DL/T 645 line."""

    def __init__(
        self,
        bus: MeterLine,
        devices: list[SimDeviceConfig],
        value: Callable[[str], float | bool],
        faults: _Faults,
    ) -> None:
        self.bus = bus
        self.meters = {device.address: device for device in devices if device.address}
        self.value = value
        self.faults = faults
        self.end = PtyEnd()
        self.decoder = dlt645.FrameDecoder()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.end.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.end.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("bus %s: read failed: %s", self.bus.name, exc)
            return
        self.decoder.feed(data)
        while self.decoder.frames:
            frame = self.decoder.frames.popleft()
            if isinstance(frame, dlt645.Frame) and not frame.is_reply:
                for meter, answer in self._answers(frame):
                    task = asyncio.ensure_future(self._send(meter, answer))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    def _answers(self, frame: dlt645.Frame) -> list[tuple[SimDeviceConfig, bytes]]:
        function = frame.control & dlt645.FUNCTION
        if frame.address == dlt645.ANY_ADDRESS and function == dlt645.READ_ADDRESS:
            return [
                (meter, dlt645.encode_frame(address, 0x93, bytes.fromhex(address)[::-1]))
                for address, meter in self.meters.items()
            ]
        meter = self.meters.get(frame.address)
        if meter is None or function != dlt645.READ_DATA or len(frame.data) < 4:
            return []
        di = frame.data[:4][::-1].hex().upper()
        code = self.faults.refusal(meter.name)
        if code is not None:
            return [(meter, self._abnormal(frame.address, code))]
        point = next((p for p in meter.points if p.di and p.di.upper() == di), None)
        fmt = dlt645.data_format(di)
        if point is None or fmt is None:
            return [(meter, self._abnormal(frame.address, NO_DATA))]
        reading = float(self.value(point.name))
        try:
            raw = dlt645.encode_value(fmt, (reading - point.offset) / point.scale)
        except ValueError:
            return [(meter, self._abnormal(frame.address, 0x01))]  # bit 0: other error
        return [(meter, dlt645.encode_frame(frame.address, 0x91, frame.data[:4] + raw))]

    @staticmethod
    def _abnormal(address: str, code: int) -> bytes:
        return dlt645.encode_frame(address, 0xD1, bytes([code]))

    async def _send(self, meter: SimDeviceConfig, answer: bytes) -> None:
        if self.faults.silent(meter.name):
            return
        delay = 0.02 + self.faults.delay(meter.name)  # a meter's turnaround: 20 ms at least
        await asyncio.sleep(delay)
        self.end.write(answer)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.end.master)
        for task in self._tasks:
            task.cancel()
        self.end.close()


class InstrumentServer:
    """The instruments of one line of text: streaming ones on a timer, polled ones on ask."""

    def __init__(
        self,
        bus: InstrumentLine,
        devices: list[SimDeviceConfig],
        value: Callable[[str], float | bool],
        faults: _Faults,
    ) -> None:
        self.bus = bus
        self.devices = devices
        self.value = value
        self.faults = faults
        self.end = PtyEnd()
        self.line_end = unescape(bus.line_end).encode("latin-1")
        self._pending = bytearray()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.end.master, self._readable)
        for device in self.devices:
            if device.period is not None:
                self._spawn(self._stream(device, device.period))

    def line_of(self, device: SimDeviceConfig) -> bytes:
        """The device's line now, with its line end."""
        assert device.line is not None
        values = {point.name: self._number(point.name) for point in device.points}
        text = device.line.format(**values)
        if device.checksum == "nmea":
            text = f"${text}*{nmea_checksum(text):02X}"
        return text.encode("ascii", "replace") + self.line_end

    def _number(self, name: str) -> float:
        value = self.value(name)
        return float(value)

    async def _stream(self, device: SimDeviceConfig, period: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not self.faults.silent(device.name):
                await self._after_delay(device, self.line_of(device))

    def _readable(self) -> None:
        try:
            data = os.read(self.end.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("bus %s: read failed: %s", self.bus.name, exc)
            return
        self._pending += data
        for device in self.devices:
            if device.request is None:
                continue
            request = unescape(device.request).encode("latin-1")
            while (found := self._pending.find(request)) >= 0:
                del self._pending[: found + len(request)]
                if not self.faults.silent(device.name):
                    self._spawn(self._after_delay(device, self.line_of(device)))
        if len(self._pending) > MAX_PENDING:
            del self._pending[:-MAX_PENDING]

    async def _after_delay(self, device: SimDeviceConfig, line: bytes) -> None:
        delay = self.faults.delay(device.name)
        if delay:
            await asyncio.sleep(delay)
        self.end.write(line)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.end.master)
        for task in list(self._tasks):
            task.cancel()
        self.end.close()


SerialServer = MeterServer | InstrumentServer


def serial_server(
    bus: MeterLine | InstrumentLine,
    site: SiteConfig,
    value: Callable[[str], float | bool],
    now: Callable[[], float],
) -> SerialServer:
    """The server of one meter line or instrument line of ``site``."""
    devices = [device for device in site.devices if device.bus == bus.name]
    faults = _Faults(site, now)
    if isinstance(bus, MeterLine):
        return MeterServer(bus, devices, value, faults)
    return InstrumentServer(bus, devices, value, faults)
