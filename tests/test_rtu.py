"""Modbus RTU over a pseudo-terminal pair: a real pymodbus RTU server on one end, the
gateway's reader on the other. Every data type and word order must decode right."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from pymodbus.datastore import ModbusServerContext
from pymodbus.server import ModbusSerialServer

from tests.modbus_servers import KnownUnitsOnly, device_context
from watchpost.clock import wall_ms
from watchpost.config import DeviceConfig, PointConfig
from watchpost.drivers import modbus_rtu
from watchpost.drivers.codec import encode
from watchpost.drivers.line_watch import LineTiming
from watchpost.drivers.simulator.server import NullModem
from watchpost.poller import DeviceReader
from watchpost.samples import Quality

# (name, type, word order, value, scale, offset) laid out from address 0 upwards
CASES = [
    ("i16_neg", "int16", "big", -1234, 1.0, 0.0),
    ("u16_max", "uint16", "big", 65535, 1.0, 0.0),
    ("u16_scaled", "uint16", "big", 2086, 0.01, 0.0),
    ("i32_big", "int32", "big", -70000, 1.0, 0.0),
    ("i32_little", "int32", "little", -70000, 1.0, 0.0),
    ("u32_big", "uint32", "big", 4_000_000_000, 1.0, 0.0),
    ("u32_little", "uint32", "little", 4_000_000_000, 0.001, 0.0),
    ("f32_big", "float32", "big", 20.875, 1.0, 0.0),
    ("f32_little", "float32", "little", -3.5, 1.0, 0.0),
    ("f32_offset", "float32", "big", 101.25, 1.0, -100.0),
]


def layout() -> tuple[dict[int, int], list[dict]]:
    registers: dict[int, int] = {}
    points = []
    address = 0
    for name, data_type, order, raw, scale, offset in CASES:
        words = encode(raw, data_type, order)
        registers.update(enumerate(words, start=address))
        points.append(
            {
                "name": name,
                "address": address,
                "type": data_type,
                "word_order": order,
                "scale": scale,
                "offset": offset,
            }
        )
        address += len(words) + 1  # leave a one-register gap for the planner to bridge
    return registers, points


@contextlib.asynccontextmanager
async def rtu_line(units):
    """A null modem with a pymodbus RTU server on one end; yields the other end's path."""
    modem = NullModem(LineTiming(19200))
    modem.start(asyncio.get_running_loop())
    server = ModbusSerialServer(
        ModbusServerContext(devices=units, single=False),
        port=modem.server_path,
        baudrate=19200,
        ignore_missing_devices=True,
    )
    server.context = KnownUnitsOnly(server.context, set(units))
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.2)
    try:
        yield modem.client_path
    finally:
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        modem.close()


def rtu_bus(path: str):
    return modbus_rtu.create(
        modbus_rtu.Config(type="modbus_rtu", name="line", port=path, baudrate=19200)
    )


def test_every_data_type_and_word_order_decodes_right():
    registers, points = layout()
    points.append({"name": "coil_on", "table": "coil", "address": 3, "type": "bool"})

    async def scenario():
        units = {5: device_context(registers, coils={3: True})}
        async with rtu_line(units) as path:
            dev = DeviceConfig(
                name="d", bus="line", unit=5, timeout=1.0, points=[PointConfig(**p) for p in points]
            )
            reader = DeviceReader(dev, wall_ms)
            bus = rtu_bus(path)
            try:
                return reader, {s.point: s for s in await reader.poll(bus)}
            finally:
                await bus.close()

    reader, samples = asyncio.run(scenario())
    assert len(reader.plan) == 2  # all registers in one request, the coil in another
    for name, data_type, _order, raw, scale, offset in CASES:
        expected = raw * scale + offset
        if data_type == "float32":
            expected = struct.unpack("f", struct.pack("f", raw))[0] * scale + offset
        assert samples[name].quality is Quality.GOOD, name
        assert samples[name].value == pytest.approx(expected), name
    assert samples["coil_on"].value == 1.0


def test_a_unit_that_does_not_answer_leaves_the_others_good():
    async def scenario():
        async with rtu_line({1: device_context({0: 42})}) as path:
            bus = rtu_bus(path)
            live = DeviceReader(
                DeviceConfig(
                    name="live",
                    bus="line",
                    unit=1,
                    timeout=0.5,
                    points=[PointConfig(name="a", address=0)],
                ),
                wall_ms,
            )
            dead = DeviceReader(
                DeviceConfig(
                    name="dead",
                    bus="line",
                    unit=2,
                    timeout=0.3,
                    retries=0,
                    points=[PointConfig(name="b", address=0)],
                ),
                wall_ms,
            )
            try:
                before = await live.poll(bus)
                lost = await dead.poll(bus)
                after = await live.poll(bus)
            finally:
                await bus.close()
            return before, lost, after, dead.health

    before, lost, after, health = asyncio.run(scenario())
    assert [s.value for s in before] == [42]
    assert [s.quality for s in lost] == [Quality.COMM]
    assert health.state == "comm"
    assert "no answer" in health.last_error
    assert [(s.value, s.quality) for s in after] == [(42, Quality.GOOD)]
