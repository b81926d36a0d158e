"""Line-oriented serial instruments on a real pseudo-terminal: streaming and polled, garbage,
an over-long line, no line end, a failing checksum, silence."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from tests.kit.lines import FarEnd
from watchpost.config.serial_line import LineDevice
from watchpost.drivers import serial_line
from watchpost.drivers.base import DeviceError, PollOutcome, ReadRequest, Table
from watchpost.drivers.serial_line_bus import SerialLineBus
from watchpost.samples import Quality


class Instrument(FarEnd):
    """The far end of a pseudo-terminal: writes what a test says, answers requests."""

    def __init__(self, answer: Callable[[bytes], bytes | None] | None = None) -> None:
        super().__init__("instrument")
        self.answer = answer
        self.received = bytearray()

    def __enter__(self) -> Instrument:
        super().__enter__()
        return self

    def on_bytes(self, chunk: bytes) -> None:
        self.received += chunk
        if self.answer is not None:
            reply = self.answer(chunk)
            if reply:
                self.send(reply)


def line_bus(path: str, **keys: object) -> SerialLineBus:
    config = serial_line.Config.model_validate(
        {"type": "serial_line", "name": "gasline", "port": path, **keys}
    )
    return serial_line.create(config)


def device(points: list[dict[str, object]], **keys: object) -> LineDevice:
    return LineDevice.model_validate(
        {"name": "gas-detector", "bus": "gasline", "timeout": 0.5, "points": points, **keys}
    )


GAS = [
    {"name": "ch4", "pattern": r"CH4=(?P<value>[-+0-9.]+)"},
    {"name": "co", "pattern": r"CO=(?P<value>[-+0-9.]+)"},
]


def run(
    instrument: Instrument,
    config: LineDevice,
    steps: list[Callable[[], None] | None],
    **bus_keys: object,
) -> list[PollOutcome]:
    """One poll per step; a step (run first, in a thread) feeds the instrument's end."""

    async def scenario() -> list[PollOutcome]:
        bus = line_bus(instrument.path, **bus_keys)
        await bus.open()
        reader = bus.source(config, lambda: 0)
        outcomes = []
        try:
            for step in steps:
                if step is not None:
                    await asyncio.to_thread(step)
                outcomes.append(await reader.poll())
        finally:
            await bus.close()
        return outcomes

    return asyncio.run(scenario())


def values(outcome: PollOutcome) -> list[tuple[float | None, Quality]]:
    return [(s.value, s.quality) for s in outcome.samples]


def test_a_streaming_detector_gives_its_newest_values():
    with Instrument() as gas:
        [first, second] = run(
            gas,
            device(GAS),
            [
                lambda: gas.send(b"CH4=0.40;CO=11\r\nCH4=0.42;CO=12\r\n"),
                lambda: gas.send(b"CH4=1.05;CO=14\r\n"),
            ],
        )
    assert values(first) == [(0.42, Quality.GOOD), (12.0, Quality.GOOD)]
    assert values(second) == [(1.05, Quality.GOOD), (14.0, Quality.GOOD)]


def test_points_in_separate_lines_each_take_their_own_newest():
    with Instrument() as gas:
        [outcome] = run(gas, device(GAS), [lambda: gas.send(b"CH4=0.50\r\nCO=9\r\n")])
    assert values(outcome) == [(0.5, Quality.GOOD), (9.0, Quality.GOOD)]


def test_a_polled_instrument_answers_its_request_and_fields_are_read_by_index():
    def answer(request: bytes) -> bytes | None:
        return b"OK,21.5,101.3\r" if request == b"READ\r" else None

    points = [
        {"name": "temp", "field": 1},
        {"name": "pressure_kpa", "field": 2, "scale": 1000.0, "offset": -1.0},
    ]
    with Instrument(answer) as radar:
        [outcome, again] = run(
            radar, device(points, request="READ\\r", interval=0.1), [None, None], line_end="\\r"
        )
        assert bytes(radar.received) == b"READ\rREAD\r"
    assert values(outcome) == [(21.5, Quality.GOOD), (101299.0, Quality.GOOD)]
    assert values(again) == values(outcome)


def test_silence_is_comm_within_the_timeout():
    with Instrument() as gas:
        [outcome] = run(gas, device(GAS, timeout=0.3), [None])
    assert [q for _v, q in values(outcome)] == [Quality.COMM, Quality.COMM]
    assert outcome.comm_error == "no line within 0.3 s"


def test_no_line_end_is_comm_and_says_bytes_came_without_one():
    with Instrument() as gas:
        [outcome] = run(gas, device(GAS, timeout=0.3), [lambda: gas.send(b"CH4=0.42;CO=12")])
    assert [q for _v, q in values(outcome)] == [Quality.COMM, Quality.COMM]
    assert "14 byte(s) came without a line end" in (outcome.comm_error or "")


def test_a_garbage_line_is_bad_and_the_next_good_line_is_good_again():
    with Instrument() as gas:
        [garbled, healed] = run(
            gas,
            device(GAS),
            [
                lambda: gas.send(b"\x00\xff\x13#@!\r\n"),
                lambda: gas.send(b"CH4=0.42;CO=12\r\n"),
            ],
        )
    assert [q for _v, q in values(garbled)] == [Quality.BAD, Quality.BAD]
    assert "no number in line" in garbled.errors[0]
    assert values(healed) == [(0.42, Quality.GOOD), (12.0, Quality.GOOD)]


def test_an_over_long_line_is_bad_and_memory_stays_bounded():
    bus_holder: list[SerialLineBus] = []
    endless = b"CH4=" + b"9" * 100_000  # an instrument stuck sending without a line end

    async def scenario() -> list[PollOutcome]:
        bus = line_bus(gas.path, max_line=64)
        bus_holder.append(bus)
        await bus.open()
        reader = bus.source(device(GAS), lambda: 0)
        try:
            await asyncio.to_thread(gas.send, endless)
            first = await reader.poll()
            assert bus.framer.partial <= 64
            await asyncio.to_thread(gas.send, b"\r\nCH4=0.42;CO=12\r\n")
            return [first, await reader.poll()]
        finally:
            await bus.close()

    with Instrument() as gas:
        first, healed = asyncio.run(scenario())
    assert [q for _v, q in values(first)] == [Quality.BAD, Quality.BAD]
    assert "longer than 64 bytes" in first.errors[0]
    assert values(healed) == [(0.42, Quality.GOOD), (12.0, Quality.GOOD)]
    framer = bus_holder[0].framer
    assert framer.overlong == 1
    assert framer.partial <= 64


def test_framer_memory_is_bounded_whatever_it_is_fed():
    framer = serial_line.LineFramer(b"\r\n", max_line=128)
    for _ in range(200):
        framer.feed(os.urandom(4096).replace(b"\r\n", b"xx"))
        assert framer.partial <= 128
    for _ in range(1000):
        framer.feed(b"x\r\n")
    assert len(framer.lines) == serial_line.KEPT_LINES
    framer.feed(b"\r")  # a line end split across two reads still ends the line
    framer.feed(b"\nA\r")
    framer.feed(b"\n")
    assert framer.lines[-1][1] == b"A"


def test_nmea_checksums_are_checked():
    body = "GPXDR,C,21.5,C,T1"
    checksum = 0
    for char in body.encode():
        checksum ^= char
    good = f"${body}*{checksum:02X}\r\n".encode()
    broken = f"${body}*{(checksum ^ 1):02X}\r\n".encode()
    points = [{"name": "t1", "field": 2}]
    with Instrument() as sensor:
        [ok, failed] = run(
            sensor,
            device(points, checksum="nmea"),
            [lambda: sensor.send(good), lambda: sensor.send(broken)],
        )
    assert values(ok) == [(21.5, Quality.GOOD)]
    assert values(failed) == [(None, Quality.BAD)]
    assert "fails its checksum" in failed.errors[0]


def test_config_errors_name_what_is_wrong():
    with pytest.raises(ValidationError, match="named group value"):
        device([{"name": "x", "pattern": "CH4=([0-9.]+)"}])
    with pytest.raises(ValidationError, match="exactly one of pattern or field"):
        device([{"name": "x", "pattern": "(?P<value>.*)", "field": 1}])
    with pytest.raises(ValidationError, match="not a regular expression"):
        device([{"name": "x", "pattern": "(?P<value>"}])
    with pytest.raises(ValidationError, match="line_end must be one or two characters"):
        serial_line.Config.model_validate(
            {"type": "serial_line", "name": "b", "port": "/dev/x", "line_end": "END!"}
        )


def test_escapes_in_requests():
    assert serial_line.unescape("READ\\r") == "READ\r"
    assert serial_line.unescape("#01\\x0D") == "#01\r"
    assert serial_line.unescape("A\\\\B") == "A\\B"


def test_registers_are_refused_with_what_the_bus_carries() -> None:
    """A crew's `watchpost read` on a line of instruments: a clear refusal, no port opened."""
    bus = line_bus("/dev/null/no-such-port")

    async def scenario() -> str:
        with pytest.raises(DeviceError) as refused:
            await bus.read(ReadRequest(1, Table.INPUT, 0, 2), timeout=1.0)
        return str(refused.value)

    assert asyncio.run(scenario()) == (
        "bus gasline carries line-oriented instruments: there are no registers to read; "
        "read its points"
    )
    assert not bus.port.is_open
