"""Modbus TCP: a small asyncio client of its own (MBAP framing, one transaction at a time).

pymodbus's transaction layer (its framer, PDU classes, locks, ``wait_for`` and traces) was
about half of each read's CPU on the poll path (docs/performance.md, "CPU, fourth pass"),
for a protocol whose client side is a 7-byte header and four function codes here. This
client checks every answer at least as closely as the pymodbus client did:

- framing: protocol id 0 and a length the MBAP header allows, else the stream is out of
  step: the connection is dropped (``CommError``) and the next transaction connects anew;
- transaction id: an answer with another id (a late answer to a read that timed out) is
  dropped and the wait goes on; id 0 is taken as pymodbus takes it (devices that never echo
  the id);
- unit id: an answer from another unit is refused (``AnswerError``; pymodbus dropped it and
  timed out);
- function code: an exception answer (function code + 0x80) is a ``DeviceError`` with its
  code; any other function code is refused (``AnswerError``; pymodbus decoded it as
  whatever it was);
- a read's byte count and data length must be what the request needs (``shape_mismatch``);
  a write's answer must have the write's address (and count, for several values);
- a timeout is a ``CommError``; after ``DROP_AFTER`` timeouts in a row the connection is
  dropped, as pymodbus did; a connection lost mid-answer fails the transaction at once.

pymodbus stays where it earns its place: RTU framing and timing on serial lines, and the
simulator's servers. The tests hold this client against a real pymodbus server and a
server that answers wrongly on purpose (``tests/test_modbus_tcp_client.py``).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from gettext import gettext as _
from typing import TYPE_CHECKING

from watchpost.drivers.base import AnswerError, CommError, DeviceError, ReadRequest, Table
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
    from watchpost.settings import ModbusTcpSettings

log = logging.getLogger(__name__)

TEXT_TIMED_OUT = _("nothing within {seconds} s")
TEXT_CLOSED = _("the connection closed: {reason}")
TEXT_DEVICE_CLOSED = _("the device closed it")
TEXT_GATEWAY_CLOSED = _("the gateway closed it")
TEXT_NOT_MBAP = _("not a Modbus TCP answer (protocol id {protocol}, length {length})")
TEXT_OTHER_UNIT = _("the answer comes from unit {got}")
TEXT_OTHER_FUNCTION = _("the answer has function code {got} to a request with {sent}")
TEXT_NO_CODE = _("an exception answer without its code")
TEXT_NO_ECHO = _("the answer {got} does not repeat the write's {sent}")

DROP_AFTER = 5  # timeouts in a row that drop the connection (pymodbus: retries + 3, then one more)
MAX_LENGTH = 254  # the MBAP length field: unit id and a PDU of at most 253 bytes

_HEADER = struct.Struct(">HHHBB")  # transaction, protocol, length, unit, function code
_MBAP = struct.Struct(">HHH")
_ADDRESS_COUNT = struct.Struct(">HH")
_READ_FUNCTIONS = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
_WORDS: dict[int, struct.Struct] = {}  # ">nH" by n, made once each


class _FramingLost(ConnectionError):
    """The bytes from the device are not MBAP frames: the stream cannot be followed."""


class _Link(asyncio.Protocol):
    """One TCP connection: MBAP frames in, the one awaited answer handed over."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: asyncio.Future[tuple[int, bytes]] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the awaited answer's timeout
        self._tid = 0

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def ask(self, tid: int, frame: bytes, timeout: float) -> asyncio.Future[tuple[int, bytes]]:
        """Send one request; the future gets ``(unit, pdu)`` of the answer with ``tid``, or
        TimeoutError after ``timeout`` seconds (a timer of the loop's, not a timeout context
        around the await: one object fewer per transaction)."""
        if self.transport is None or (self._waiting is not None and not self._waiting.done()):
            raise RuntimeError("one transaction at a time on an open link")
        self._buffer.clear()  # what is left of an answer that came too late
        self._tid = tid
        loop = asyncio.get_running_loop()
        waiting = self._waiting = loop.create_future()
        self._timer = loop.call_later(timeout, _expire, waiting)
        self.transport.write(frame)
        return waiting

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 7:
            tid, protocol, length = _MBAP.unpack_from(buffer)
            if protocol != 0 or not 2 <= length <= MAX_LENGTH:
                self._lose(_FramingLost(TEXT_NOT_MBAP.format(protocol=protocol, length=length)))
                return
            end = 6 + length
            if len(buffer) < end:
                return
            unit, pdu = buffer[6], bytes(buffer[7:end])
            del buffer[:end]
            waiting = self._waiting
            if waiting is None or waiting.done():
                log.debug("answer %d with nothing waiting, dropped", tid)
            elif tid not in (self._tid, 0):
                log.debug("answer %d while waiting for %d, dropped", tid, self._tid)
            else:
                waiting.set_result((unit, pdu))
                self._stop_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = str(exc) if exc is not None else TEXT_DEVICE_CLOSED
        self._fail(ConnectionError(reason))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._fail(ConnectionError(TEXT_GATEWAY_CLOSED))

    def _lose(self, exc: ConnectionError) -> None:
        self._buffer.clear()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._fail(exc)

    def _fail(self, exc: ConnectionError) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(exc)
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _expire(waiting: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiting.done():
        waiting.set_exception(TimeoutError())


class ModbusTcpBus:
    """A Modbus TCP endpoint (a device, or a gateway in front of several units)."""

    def __init__(self, config: ModbusTcpSettings) -> None:
        self.name = config.name
        self._host = config.host
        self._port = config.port
        self._where = f"{config.host}:{config.port}"
        self._link: _Link | None = None
        self._tid = 0
        self._timeouts = 0

    def describe(self) -> str:
        """Where the bus goes, for messages."""
        return self._where

    async def open(self, timeout: float = 1.0) -> None:
        if self._link is not None and self._link.is_open:
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _transport, link = await loop.create_connection(_Link, self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise CommError(TEXT_CANNOT_CONNECT.format(name=self.name, where=self._where)) from exc
        self._link, self._timeouts = link, 0

    async def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        data = await self._transact(
            request.unit,
            _READ_FUNCTIONS[request.table],
            _ADDRESS_COUNT.pack(request.address, request.count),
            request,
            timeout,
        )
        mismatch = shape_mismatch(request, data[0] if data else -1, len(data) - 1)
        if mismatch is not None:
            what = name_of(request)
            raise AnswerError(TEXT_AT.format(name=self.name, what=what, problem=mismatch))
        count = request.count
        if request.table.is_bits:
            return [bool(data[1 + i // 8] >> (i % 8) & 1) for i in range(count)]
        words = _WORDS.get(count)
        if words is None:
            words = _WORDS[count] = struct.Struct(f">{count}H")
        return list(words.unpack_from(data, 1))

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
        n = len(values)
        if table is Table.COIL:
            if n == 1:
                function, body = 5, _ADDRESS_COUNT.pack(address, 0xFF00 if values[0] else 0)
            else:
                packed = bytearray((n + 7) // 8)
                for i, value in enumerate(values):
                    if value:
                        packed[i // 8] |= 1 << (i % 8)
                function = 15
                body = struct.pack(">HHB", address, n, len(packed)) + packed
        elif table is Table.HOLDING:
            words = [int(v) for v in values]
            if n == 1:
                function, body = 6, _ADDRESS_COUNT.pack(address, words[0])
            else:
                function = 16
                body = struct.pack(f">HHB{n}H", address, n, 2 * n, *words)
        else:
            raise DeviceError(TEXT_READ_ONLY.format(name=self.name, what=what, table=table), code=1)
        # the answer repeats the address and, for several values, their count; a single
        # write's value is the device's to report (pymodbus's server answers with what the
        # register holds), and the outputs read back what they wrote anyway
        echo = body[:2] if n == 1 else body[:4]
        data = await self._transact(unit, function, body, what, timeout)
        if len(data) != 4 or data[: len(echo)] != echo:
            problem = TEXT_NO_ECHO.format(got=data.hex(" "), sent=echo.hex(" "))
            raise AnswerError(TEXT_AT.format(name=self.name, what=what, problem=problem))

    async def _transact(
        self, unit: int, function: int, body: bytes, what: str | ReadRequest, timeout: float
    ) -> bytes:
        """One request and its answer's data (after the function code), checked for unit,
        function code and exception; ``what`` names it in errors (formatted only then)."""
        link = self._link
        if link is None or not link.is_open:
            await self.open(timeout)
            link = self._link
            assert link is not None
        self._tid = self._tid % 0xFFFF + 1
        frame = _HEADER.pack(self._tid, 0, len(body) + 2, unit, function) + body
        try:
            got_unit, pdu = await link.ask(self._tid, frame, timeout)
        except TimeoutError as exc:
            self._timeouts += 1
            if self._timeouts >= DROP_AFTER:
                await self.close()
            error = TEXT_TIMED_OUT.format(seconds=timeout)
            raise CommError(self._no_answer(what, error)) from exc
        except ConnectionError as exc:
            await self.close()
            error = str(exc) if isinstance(exc, _FramingLost) else TEXT_CLOSED.format(reason=exc)
            raise CommError(self._no_answer(what, error)) from exc
        self._timeouts = 0
        problem = None
        if unit and got_unit != unit:
            problem = TEXT_OTHER_UNIT.format(got=got_unit)
        elif pdu[0] == function | 0x80:
            if len(pdu) < 2:
                problem = TEXT_NO_CODE
            else:
                code = pdu[1]
                name = EXCEPTION_NAMES.get(code, "unknown exception")
                text = TEXT_EXCEPTION.format(
                    bus=self.name, what=name_of(what), code=code, name=name
                )
                raise DeviceError(text, code=code)
        elif pdu[0] != function:
            problem = TEXT_OTHER_FUNCTION.format(got=pdu[0], sent=function)
        if problem is not None:
            raise AnswerError(TEXT_AT.format(name=self.name, what=name_of(what), problem=problem))
        return pdu[1:]

    def _no_answer(self, what: str | ReadRequest, error: str) -> str:
        return TEXT_NO_ANSWER.format(name=self.name, what=name_of(what), error=error)
