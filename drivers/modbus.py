"""Modbus RTU buses: one pymodbus async client per line.

Only the driver's factory imports this module, so pymodbus loads when a Modbus RTU bus is
opened, never when the config is checked. Modbus TCP has a client of its own
(``modbus_tcp_bus``): pymodbus's transaction layer was half of each read's CPU there.

pymodbus takes a read answer's registers from its byte count and drops whatever does not
fit; the answer classes below keep the byte count and the payload's real length, so that an
answer with more or fewer registers than asked for, or an odd byte count, is refused
(``AnswerError``) instead of being read as good values.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from watchpost.drivers.base import AnswerError, CommError, DeviceError, ReadRequest, Table
from watchpost.drivers.line_watch import LineTiming, LineWatch
from watchpost.drivers.modbus_answers import (
    EXCEPTION_NAMES,
    TEXT_AT,
    TEXT_CANNOT_CONNECT,
    TEXT_EXCEPTION,
    TEXT_NO_ANSWER,
    TEXT_READ_ONLY,
    TEXT_WRITE_WHAT,
    name_of,
    shape_mismatch,
)

if TYPE_CHECKING:
    from watchpost.settings import ModbusRtuSettings

log = logging.getLogger(__name__)


class _Measured:
    """Mixin for read answers: keep the byte count and the length of what followed it."""

    byte_count: int = -1
    payload_length: int = -1

    def decode(self, data: bytes) -> None:
        self.byte_count = data[0] if data else -1
        self.payload_length = len(data) - 1
        super().decode(data)  # type: ignore[misc]


_WORDS: dict[int, struct.Struct] = {}  # ">nH" by n, made once each


class _Registers:
    """pymodbus's decoding of a register answer, in one ``struct`` call instead of one per
    register (1.6 instead of 15 us for 125 registers): the same registers (a last odd byte
    is left out, as pymodbus does) and the same error for a byte count past the end. Goes
    after ``_Measured`` and before pymodbus's class, whose ``decode`` it replaces."""

    registers: Sequence[int]

    def decode(self, data: bytes) -> None:
        self.registers = []
        if (data_len := int(data[0])) >= len(data):
            raise ModbusIOException(
                f"byte_count {data_len} > length of packet {len(data)}",
                function_code=self.function_code,  # type: ignore[attr-defined]
            )
        count = data_len // 2
        words = _WORDS.get(count)
        if words is None:
            words = _WORDS[count] = struct.Struct(f">{count}H")
        self.registers = list(words.unpack_from(data, 1))


class _HoldingAnswer(_Measured, _Registers, ReadHoldingRegistersResponse):
    pass


class _InputAnswer(_Measured, _Registers, ReadInputRegistersResponse):
    pass


class _CoilAnswer(_Measured, ReadCoilsResponse):
    pass


class _DiscreteAnswer(_Measured, ReadDiscreteInputsResponse):
    pass


ANSWER_CLASSES: tuple[type[ModbusPDU], ...] = (
    _HoldingAnswer,
    _InputAnswer,
    _CoilAnswer,
    _DiscreteAnswer,
)


def answer_mismatch(request: ReadRequest, response: ModbusPDU) -> str | None:
    """Why ``response`` does not answer ``request`` (byte count, length), or None if it does."""
    expected = (request.count + 7) // 8 if request.table.is_bits else 2 * request.count
    return shape_mismatch(
        request,
        getattr(response, "byte_count", expected),
        getattr(response, "payload_length", expected),
    )


T = TypeVar("T")


async def keep_cancel(awaitable: Awaitable[T]) -> T:
    """Await one of pymodbus's calls without losing a cancellation.

    pymodbus connects and waits for answers with ``asyncio.wait_for``, which on Python 3.11
    swallows a cancellation that arrives as its awaitable completes (fixed in 3.12): the
    poll would carry on and a stopping daemon would wait for it for ever. If this task was
    cancelled meanwhile, the cancellation is raised here.
    """
    result = await awaitable
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result


class ModbusBus:
    """A bus carried by a pymodbus async client; subclasses only build the client."""

    name: str

    def __init__(self, name: str, client: ModbusBaseClient) -> None:
        self.name = name
        self._client = client
        for answer in ANSWER_CLASSES:
            client.register(answer)
        self._readers = {
            Table.HOLDING: client.read_holding_registers,
            Table.INPUT: client.read_input_registers,
            Table.COIL: client.read_coils,
            Table.DISCRETE: client.read_discrete_inputs,
        }

    async def open(self) -> None:
        if self._client.connected:
            return
        if not await keep_cancel(self._client.connect()):
            raise CommError(TEXT_CANNOT_CONNECT.format(name=self.name, where=self.describe()))

    async def close(self) -> None:
        self._client.close()

    def describe(self) -> str:
        """Where the bus goes, for messages."""
        return self.name

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        read = self._readers[request.table]
        response = await self._execute(
            lambda: read(request.address, count=request.count, device_id=request.unit),
            request,
            timeout,
        )
        mismatch = answer_mismatch(request, response)
        if mismatch is not None:
            raise AnswerError(TEXT_AT.format(name=self.name, what=_what(request), problem=mismatch))
        if request.table.is_bits:
            return list(response.bits[: request.count])
        return list(response.registers)

    async def write(
        self,
        unit: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
        *,
        timeout: float,
    ) -> None:
        what = TEXT_WRITE_WHAT.format(unit=unit, table=table, address=address, values=values)
        client = self._client
        call: Callable[[], Awaitable[ModbusPDU]]
        if table is Table.COIL:
            bits = [bool(v) for v in values]
            call = (
                (lambda: client.write_coil(address, bits[0], device_id=unit))
                if len(bits) == 1
                else (lambda: client.write_coils(address, bits, device_id=unit))
            )
        elif table is Table.HOLDING:
            words = [int(v) for v in values]
            call = (
                (lambda: client.write_register(address, words[0], device_id=unit))
                if len(words) == 1
                else (lambda: client.write_registers(address, words, device_id=unit))
            )
        else:
            raise DeviceError(TEXT_READ_ONLY.format(name=self.name, what=what, table=table), code=1)
        await self._execute(call, what, timeout)

    async def _execute(
        self, call: Callable[[], Awaitable[ModbusPDU]], what: str | ReadRequest, timeout: float
    ) -> ModbusPDU:
        """Run ``call``; ``what`` names the transaction in errors (a read's name is only
        formatted when there is an error to report, not on every poll)."""
        await self.open()
        # pymodbus takes the answer timeout from its connection parameters; set it per
        # transaction because the devices on one RS-485 line may answer at different speeds.
        self._client.ctx.comm_params.timeout_connect = timeout
        try:
            response = await keep_cancel(call())
        except (TimeoutError, ModbusException, OSError) as exc:
            raise CommError(
                TEXT_NO_ANSWER.format(name=self.name, what=_what(what), error=exc)
            ) from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceError(
                TEXT_EXCEPTION.format(bus=self.name, what=_what(what), code=code, name=name),
                code=code,
            )
        return response


_what = name_of


class ModbusRtuBus(ModbusBus):
    """A Modbus RTU line."""

    def __init__(self, config: ModbusRtuSettings) -> None:
        timing = LineTiming(config.baudrate, config.bytesize, config.parity, config.stopbits)
        self._watch = LineWatch(config.name, timing=timing)
        client = AsyncModbusSerialClient(
            config.port,
            baudrate=config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
            bytesize=config.bytesize,
            name=config.name,
            retries=0,
            timeout=1.0,
            reconnect_delay=0,
            trace_packet=self._watch.trace,
        )
        super().__init__(config.name, client)
        self._where = config.port

    def describe(self) -> str:
        return self._where

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        self._watch.begin(request.unit)
        timed_out = False
        try:
            values = await super().read(request, timeout=timeout)
        except CommError:
            timed_out = True
            raise
        finally:
            self._watch.end(timed_out=timed_out)
        suspect = self._watch.suspect()
        if suspect is not None:
            what = f"unit {request.unit} {request.table} {request.address}+{request.count}"
            raise AnswerError(TEXT_AT.format(name=self.name, what=what, problem=suspect))
        return values

    async def write(
        self,
        unit: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
        *,
        timeout: float,
    ) -> None:
        self._watch.begin(unit)
        timed_out = False
        try:
            await super().write(unit, table, address, values, timeout=timeout)
        except CommError:
            timed_out = True
            raise
        finally:
            self._watch.end(timed_out=timed_out)
