"""Real Modbus servers for tests: pymodbus over TCP on loopback, a silent endpoint, and
servers written for the tests that answer wrongly on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from tests.kit.net import free_port

warnings.filterwarnings("ignore", message=".*deprecated.*", module="pymodbus")


class KnownUnitsOnly:
    """Lets a pymodbus server stay silent for units it does not have.

    pymodbus 3.16 answers an unknown unit with exception 4 even with
    ``ignore_missing_devices=True`` (its SimCore raises KeyError instead of
    NoSuchIdException); this wrapper raises the exception the server expects.
    """

    def __init__(self, core: Any, units: set[int]) -> None:
        self._core = core
        self._units = units

    def device_ids(self) -> list[int]:
        return sorted(self._units)

    async def async_getValues(self, device_id: int, *args: Any) -> Any:
        self._check(device_id)
        return await self._core.async_getValues(device_id, *args)

    async def async_setValues(self, device_id: int, *args: Any) -> Any:
        self._check(device_id)
        return await self._core.async_setValues(device_id, *args)

    def _check(self, device_id: int) -> None:
        if device_id not in self._units:
            raise NoSuchIdException(f"no unit {device_id}")


def device_context(
    holding: Mapping[int, int] | None = None,
    *,
    size: int = 200,
    coils: Mapping[int, bool] | None = None,
) -> ModbusDeviceContext:
    """A unit whose tables hold ``size`` entries from address 0, zero unless given."""
    registers = [0] * size
    for address, value in (holding or {}).items():
        registers[address] = value
    bits = [False] * size
    for address, flag in (coils or {}).items():
        bits[address] = flag
    # pymodbus blocks count from 1: a block created at 1 answers requests for address 0
    return ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, list(registers)),
        ir=ModbusSequentialDataBlock(1, list(registers)),
        co=ModbusSequentialDataBlock(1, list(bits)),
        di=ModbusSequentialDataBlock(1, list(bits)),
    )


@contextlib.asynccontextmanager
async def tcp_server(units: Mapping[int, ModbusDeviceContext]) -> AsyncIterator[int]:
    """A pymodbus TCP server on 127.0.0.1; yields its port."""
    port = free_port()
    # units not listed stay silent, as on a real line
    server = ModbusTcpServer(
        ModbusServerContext(devices=dict(units), single=False),
        address=("127.0.0.1", port),
        ignore_missing_devices=True,
    )
    server.context = KnownUnitsOnly(server.context, set(units))
    task = asyncio.create_task(server.serve_forever())
    try:
        for _ in range(50):
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.02)
        yield port
    finally:
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers: a device that has hung."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(256):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class MisshapenAnswers:
    """A Modbus TCP server, written for the tests, that answers register reads in a shape
    chosen per unit: ``"exact"`` (a right answer), ``"extra"`` (one register more than
    asked, with a matching byte count), ``"odd"`` (an odd byte count, one byte short) or
    ``"short"`` (one register fewer). Every register holds ``value``. Runs in a thread, so
    that a daemon in another process can poll it; ``port`` is where it listens."""

    def __init__(self, shapes: Mapping[int, str], value: int = 1234) -> None:
        self.shapes = dict(shapes)
        self.value = value
        self.requests = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="misshapen-modbus", daemon=True)
        self._thread.start()

    def answer(self, request: bytes) -> bytes | None:
        """The frame that answers one request frame (None: stay silent)."""
        tid, unit, function = request[0:2], request[6], request[7]
        address, count = struct.unpack(">HH", request[8:12])
        del address
        shape = self.shapes.get(unit)
        if shape is None or function not in (3, 4):
            return None
        registers = count + {"exact": 0, "extra": 1, "short": -1, "odd": 0}[shape]
        data = struct.pack(f">{registers}H", *([self.value] * registers))
        if shape == "odd":
            data = data[:-1]
        pdu = bytes([function, len(data)]) + data
        return tid + b"\x00\x00" + struct.pack(">H", len(pdu) + 1) + bytes([unit]) + pdu

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(256)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 12:
                    frame, buffer = buffer[:12], buffer[12:]
                    self.requests += 1
                    reply = self.answer(frame)
                    if reply is not None:
                        conn.sendall(reply)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> MisshapenAnswers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Step = bytes | float | None
"""What a scripted server does for a request: send bytes, pause (seconds), or close (None)."""


def mbap(tid: int, unit: int, pdu: bytes, *, protocol: int = 0, length: int | None = None) -> bytes:
    """A Modbus TCP frame; ``protocol`` and ``length`` may be set wrong on purpose."""
    size = len(pdu) + 1 if length is None else length
    return struct.pack(">HHHB", tid, protocol, size, unit) + pdu


class ScriptedServer:
    """A Modbus TCP server on 127.0.0.1, written for the tests, whose every answer is made by
    ``script(request)`` from the request frame: a list of steps (``Step``). It counts the
    connections it accepted and the requests it saw. Runs on the test's event loop."""

    def __init__(self, script: Callable[[bytes], Sequence[Step]]) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                header = await reader.readexactly(6)
                (length,) = struct.unpack(">H", header[4:6])
                request = header + await reader.readexactly(length)
                self.requests.append(request)
                for step in self.script(request):
                    if step is None:
                        writer.close()
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        writer.write(step)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
