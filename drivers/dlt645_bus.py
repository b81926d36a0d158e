"""The DL/T 645 line at work: one serial port, the read transaction, the meters' readers.

The codec and the data formats are in ``dlt645`` (loaded with the config); this module loads
pyserial and is imported only when a ``dlt645`` bus is opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from watchpost.drivers.base import (
    AnswerError,
    CommError,
    DeviceError,
    PollOutcome,
)
from watchpost.drivers.dlt645 import (
    ABNORMAL,
    ANY_ADDRESS,
    FUNCTION,
    READ_ADDRESS,
    READ_DATA,
    TEXT_ABNORMAL,
    TEXT_CHECKSUM,
    TEXT_NO_ANSWER,
    TEXT_NOT_BCD,
    TEXT_OTHER_METER,
    TEXT_SHORT,
    TEXT_UNKNOWN_DI,
    TEXT_WRONG_DI,
    DataFormat,
    Frame,
    FrameDecoder,
    data_format,
    decode_value,
    di_bytes,
    encode_frame,
    error_meaning,
)
from watchpost.drivers.serial_port import PortBus
from watchpost.samples import Quality, Sample
from watchpost.settings import Dlt645BusSettings, Dlt645Device, Dlt645Point


class Dlt645Bus(PortBus):
    """One DL/T 645 line: a serial port and the transaction that reads one DI."""

    NO_REGISTERS = (
        "bus {name} carries DL/T 645 meters: there are no registers to {what}; read its points"
    )

    def __init__(self, config: Dlt645BusSettings) -> None:
        arrived = asyncio.Event()
        self.decoder = FrameDecoder(arrived.set)
        super().__init__(config.name, config.settings(), self.decoder, arrived)
        self.wake = config.wake

    def source(self, device: Any, now_ms: Callable[[], int]) -> MeterReader:
        """The reader of one meter on this line."""
        if not isinstance(device, Dlt645Device):
            raise TypeError(f"bus {self.name}: {type(device).__name__} is not a DL/T 645 meter")
        return MeterReader(device, now_ms, self)

    async def read_di(self, address: str, di: str, *, timeout: float) -> bytes:
        """The value bytes of ``di`` from meter ``address``.

        CommError: no reply in time (a retry can help); DeviceError: abnormal reply;
        AnswerError: a reply that fails its checksum or carries another DI.
        """
        reply = await self._transact(address, READ_DATA, di_bytes(di), di, timeout)
        got = reply.data[:4][::-1].hex().upper()
        if got != di.upper():
            raise AnswerError(TEXT_WRONG_DI.format(address=address, di=di, got=got))
        return reply.data[4:]

    async def read_address(self, *, timeout: float) -> str | None:
        """The address of the only meter on the line (C=13H to AA..AA), None if no reply."""
        try:
            reply = await self._transact(ANY_ADDRESS, READ_ADDRESS, b"", "address", timeout)
        except CommError:
            return None
        return reply.address

    async def _transact(
        self, address: str, function: int, data: bytes, di: str, timeout: float
    ) -> Frame:
        await self.send(encode_frame(address, function, data, wake=self.wake), timeout=timeout)
        others: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self.decoder.frames:
                item = self.decoder.frames.popleft()
                if isinstance(item, str):
                    raise AnswerError(TEXT_CHECKSUM.format(address=address, di=di, what=item))
                if not item.is_reply or (item.control & FUNCTION) != function:
                    continue  # our own request echoed by an adapter, or a stray frame
                if address not in (ANY_ADDRESS, item.address):
                    others.add(item.address)
                    continue
                if item.control & ABNORMAL:
                    code = item.data[0] if item.data else 0
                    raise DeviceError(
                        TEXT_ABNORMAL.format(
                            address=address, di=di, code=code, meaning=error_meaning(code)
                        ),
                        code=code,
                    )
                return item
            left = deadline - loop.time()
            if left <= 0:
                message = TEXT_NO_ANSWER.format(address=address, di=di, timeout=timeout)
                if others:
                    message += TEXT_OTHER_METER.format(other=", ".join(sorted(others)))
                raise CommError(message)
            await self.wait_arrival(left)


class MeterReader:
    """Reads the points of one meter, one DI per transaction, and decodes them."""

    def __init__(self, device: Dlt645Device, now_ms: Callable[[], int], bus: Dlt645Bus) -> None:
        self.device = device
        self.now_ms = now_ms
        self.bus = bus
        self._formats = [(point, _format(point.di)) for point in device.points]

    def longest_poll(self) -> float:
        """Seconds one poll may take when every read times out on every retry."""
        return len(self._formats) * self.device.timeout * (self.device.retries + 1)

    async def poll(self, *, down: bool = False) -> PollOutcome:
        """Every point once; ``down``: the meter is known not to answer, one try per read."""
        bus = self.bus
        outcome = PollOutcome([])
        attempts = 1 if down else self.device.retries + 1
        for point, fmt in self._formats:
            if outcome.comm_error is not None:  # not answering: do not wait again this poll
                outcome.samples.append(Sample(point.name, self.now_ms(), None, Quality.COMM))
                continue
            outcome.samples.append(await self._read(bus, point, fmt, attempts, outcome))
        return outcome

    async def _read(
        self,
        bus: Dlt645Bus,
        point: Dlt645Point,
        fmt: DataFormat,
        attempts: int,
        outcome: PollOutcome,
    ) -> Sample:
        address = self.device.address
        for attempt in range(attempts):
            outcome.requests += 1
            try:
                raw = await bus.read_di(address, point.di, timeout=self.device.timeout)
                break
            except CommError as exc:
                if attempt == attempts - 1:
                    outcome.comm_error = str(exc)
                    return Sample(point.name, self.now_ms(), None, Quality.COMM)
            except (DeviceError, AnswerError) as exc:
                outcome.errors.append(str(exc))
                return Sample(point.name, self.now_ms(), None, Quality.BAD)
        ts = self.now_ms()
        if len(raw) < fmt.length:
            outcome.errors.append(
                TEXT_SHORT.format(address=address, di=point.di, got=len(raw), need=fmt.length)
            )
            return Sample(point.name, ts, None, Quality.BAD)
        try:
            value = decode_value(fmt, raw) * point.scale + point.offset
        except ValueError:
            outcome.errors.append(
                TEXT_NOT_BCD.format(address=address, di=point.di, raw=raw.hex(" "))
            )
            return Sample(point.name, ts, None, Quality.BAD)
        limits = point.range
        if limits is not None and not limits[0] <= value <= limits[1]:
            return Sample(point.name, ts, value, Quality.BAD)
        return Sample(point.name, ts, value, Quality.GOOD)


def _format(di: str) -> DataFormat:
    fmt = data_format(di)
    if fmt is None:  # the config validator refuses these
        raise ValueError(TEXT_UNKNOWN_DI.format(di=di))
    return fmt
