"""DL/T 645-2007 meters on a real pseudo-terminal: every documented data format, the
request on the wire, and every way a meter or the line can fail."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from tests.dlt645_meter import Meter, MeterLine, bcd
from watchpost.config.dlt645 import Dlt645Device
from watchpost.drivers import dlt645
from watchpost.drivers.base import DeviceError, PollOutcome, ReadRequest, Table
from watchpost.drivers.dlt645_bus import Dlt645Bus
from watchpost.samples import Quality

ADDRESS = "000012345678"

# (DI, value bytes as the meter sends them, the value the gateway must read)
# digits are written as the value reads; bcd() lays them out lowest byte first
FORMATS = [
    ("00010000", bcd("12345678"), 123456.78),  # forward active energy XXXXXX.XX kWh
    ("00020000", bcd("00000001"), 0.01),  # reverse active energy
    ("00000000", bcd("00012345", negative=True), -123.45),  # combined active, signed
    ("00030000", bcd("00000250", negative=True), -2.50),  # combined reactive 1, signed
    ("00040000", bcd("79999999"), 799999.99),  # combined reactive 2, largest positive
    ("00050000", bcd("00001000"), 10.00),  # quadrant I reactive energy
    ("00090000", bcd("00100000"), 1000.00),  # forward apparent energy
    ("0001010C", bcd("00004321"), 43.21),  # forward active, tariff 1, settlement day -12
    ("01010000", bcd("012345") + bcd("2611271015"), 1.2345),  # max demand + its time
    ("01030000", bcd("002000", negative=True) + bcd("2611271015"), -0.2),  # signed demand
    ("02010100", bcd("2202"), 220.2),  # phase A voltage XXX.X V
    ("02010300", bcd("2385"), 238.5),  # phase C voltage
    ("02020100", bcd("012345"), 12.345),  # phase A current XXX.XXX A
    ("02020200", bcd("001234", negative=True), -1.234),  # phase B current, reversed
    ("02030000", bcd("123456"), 12.3456),  # total active power XX.XXXX kW
    ("02030100", bcd("004000", negative=True), -0.4),  # phase A active power, exporting
    ("02040000", bcd("010000", negative=True), -1.0),  # total reactive power kvar
    ("02050000", bcd("150000"), 15.0),  # total apparent power kVA
    ("02060000", bcd("0987"), 0.987),  # total power factor X.XXX
    ("02060300", bcd("0500", negative=True), -0.5),  # phase C power factor, signed
    ("02070100", bcd("1200"), 120.0),  # phase A angle XXX.X
    ("02080100", bcd("0312"), 3.12),  # phase A voltage distortion XX.XX %
    ("02090200", bcd("1050"), 10.5),  # phase B current distortion
    ("020A0103", bcd("0150"), 1.5),  # phase A voltage, 3rd harmonic content
    ("020B0315", bcd("0007"), 0.07),  # phase C current, 21st harmonic content
    ("02800001", bcd("000500"), 0.5),  # neutral current XXX.XXX A
    ("02800002", bcd("5002"), 50.02),  # grid frequency XX.XX Hz
    ("02800003", bcd("031000"), 3.1),  # one-minute average active power
    ("02800004", bcd("020000"), 2.0),  # present active demand
    ("02800007", bcd("0125", negative=True), -12.5),  # meter temperature XXX.X, signed
    ("02800008", bcd("0361"), 3.61),  # clock battery voltage XX.XX V
    ("0280000A", bcd("00012345"), 12345.0),  # battery working time XXXXXXXX min
]


def bus_on(path: str, **keys: object) -> Dlt645Bus:
    return dlt645.create(dlt645.Config(type="dlt645", name="meters", port=path, **keys))


def meter_device(address: str, dis: list[str], **keys: object) -> Dlt645Device:
    points = [{"name": f"p{i}_{di}", "di": di} for i, di in enumerate(dis)]
    return Dlt645Device.model_validate(
        {"name": f"m{address[-2:]}", "bus": "meters", "address": address, "points": points, **keys}
    )


def poll(line: MeterLine, *devices: Dlt645Device, rounds: int = 1) -> list[list[PollOutcome]]:
    """Poll every device ``rounds`` times, in order, over one bus."""

    async def scenario() -> list[list[PollOutcome]]:
        bus = bus_on(line.path)
        readers = [bus.source(device, lambda: time.time_ns() // 1_000_000) for device in devices]
        try:
            return [[await reader.poll() for reader in readers] for _ in range(rounds)]
        finally:
            await bus.close()

    return asyncio.run(scenario())


def test_every_documented_data_format_decodes_to_its_value():
    meter = Meter(ADDRESS, {di: raw for di, raw, _value in FORMATS})
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, [di for di, _raw, _value in FORMATS]))
    assert outcome.comm_error is None
    assert outcome.errors == []
    for (di, _raw, expected), sample in zip(FORMATS, outcome.samples, strict=True):
        assert sample.quality is Quality.GOOD, di
        assert sample.value == pytest.approx(expected), di


def test_every_supported_di_has_a_format_with_unit_and_meaning():
    for di, raw, _value in FORMATS:
        fmt = dlt645.data_format(di)
        assert fmt is not None, di
        assert len(raw) == fmt.length, di
        assert fmt.what, di
    assert dlt645.data_format("04000401") is None  # a parameter, not a measured value
    assert dlt645.data_format("02010000") is None  # voltage has no total
    assert dlt645.data_format("0001FF00") is None  # a data block: one DI per point


def test_the_request_on_the_wire_follows_the_standard():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")})
    with MeterLine(meter) as line:
        poll(line, meter_device(ADDRESS, ["02010100"]))
    # 68, address lowest byte first, 68, C=11H, L=4, DI 02010100 sent DI0 first plus 33H
    body = bytes.fromhex("68 78 56 34 12 00 00 68 11 04 33 34 34 35")
    assert line.requests == [body + bytes([sum(body) & 0xFF, 0x16])]


def test_scale_offset_and_range_apply_after_decoding():
    meter = Meter(ADDRESS, {"02030000": bcd("123456"), "02010100": bcd("2202")})
    device = Dlt645Device.model_validate(
        {
            "name": "m",
            "bus": "meters",
            "address": ADDRESS,
            "points": [
                {"name": "kw_x_ct", "di": "02030000", "scale": 40.0},
                {"name": "volts", "di": "02010100", "range": [0, 200]},
            ],
        }
    )
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, device)
    power, volts = outcome.samples
    assert power.value == pytest.approx(493.824)
    assert power.quality is Quality.GOOD
    assert volts.value == pytest.approx(220.2)
    assert volts.quality is Quality.BAD  # outside its plausible range


def test_an_abnormal_reply_is_bad_with_the_error_byte_explained():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")}, mode="abnormal", error=0x04)
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, ["02010100"]))
    assert [s.quality for s in outcome.samples] == [Quality.BAD]
    assert outcome.comm_error is None
    assert "abnormal reply, error byte 04H" in outcome.errors[0]
    assert "password" in outcome.errors[0]


def test_a_di_the_meter_does_not_have_is_bad_no_data_requested():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")})
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, ["02010100", "02800002"]))
    volts, frequency = outcome.samples
    assert volts.quality is Quality.GOOD
    assert frequency.quality is Quality.BAD
    assert "no data requested" in outcome.errors[0]


def test_a_reply_with_a_broken_checksum_is_bad():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")}, mode="checksum")
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, ["02010100"], timeout=0.5))
    assert [s.quality for s in outcome.samples] == [Quality.BAD]
    assert "checksum" in outcome.errors[0]


def test_a_reply_from_another_meter_is_not_taken():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")}, mode="impostor")
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, ["02010100"], timeout=0.3, retries=0))
    assert [s.quality for s in outcome.samples] == [Quality.COMM]
    assert outcome.comm_error is not None
    assert "999999999998" in outcome.comm_error


def test_garbage_and_wake_up_bytes_before_a_reply_are_skipped():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")}, mode="garbage")
    with MeterLine(meter) as line:
        [[outcome]] = poll(line, meter_device(ADDRESS, ["02010100"]))
    assert [(s.value, s.quality) for s in outcome.samples] == [(220.2, Quality.GOOD)]


def test_a_half_frame_is_no_answer_and_the_next_poll_reads_again():
    meter = Meter(ADDRESS, {"02010100": bcd("2202")}, mode="half")

    async def scenario() -> tuple[PollOutcome, PollOutcome]:
        bus = bus_on(line.path)
        reader = bus.source(meter_device(ADDRESS, ["02010100"], timeout=0.3, retries=0), lambda: 0)
        try:
            broken = await reader.poll()
            meter.mode = "normal"
            return broken, await reader.poll()
        finally:
            await bus.close()

    with MeterLine(meter) as line:
        broken, healed = asyncio.run(scenario())
    assert [s.quality for s in broken.samples] == [Quality.COMM]
    assert "no answer" in (broken.comm_error or "")
    assert [(s.value, s.quality) for s in healed.samples] == [(220.2, Quality.GOOD)]


def test_a_silent_meter_costs_its_timeout_and_the_next_meter_answers():
    live = Meter(ADDRESS, {"02030000": bcd("123456")})
    dead = Meter("000000000002", {"02030000": bcd("000100")}, mode="silent")
    with MeterLine(live, dead) as line:
        started = time.monotonic()
        rounds = poll(
            line,
            meter_device(ADDRESS, ["02030000"], timeout=0.5),
            meter_device("000000000002", ["02030000", "02010100"], timeout=0.3, retries=1),
            rounds=2,
        )
        elapsed = time.monotonic() - started
    for live_outcome, dead_outcome in rounds:
        assert [(s.value, s.quality) for s in live_outcome.samples] == [(12.3456, Quality.GOOD)]
        assert [s.quality for s in dead_outcome.samples] == [Quality.COMM, Quality.COMM]
        assert dead_outcome.requests == 2  # one read and its retry; the second point not asked
    # two rounds: the dead meter's two timeouts each, the live meter's replies in between
    assert elapsed < 2 * 2 * 0.3 + 1.5


def test_the_only_meter_on_a_line_tells_its_address():
    meter = Meter("201900001234", {})

    async def scenario() -> str | None:
        bus = bus_on(line.path)
        try:
            return await bus.read_address(timeout=0.5)
        finally:
            await bus.close()

    with MeterLine(meter) as line:
        assert asyncio.run(scenario()) == "201900001234"


def test_config_names_a_wrong_address_and_an_unknown_di():
    with pytest.raises(ValidationError) as error:
        Dlt645Device.model_validate(
            {"name": "m", "bus": "b", "address": "12345", "points": [{"name": "p", "di": "x"}]}
        )
    text = str(error.value)
    assert "address" in text
    assert "DI x is not one this driver decodes" in text


def test_a_port_that_is_not_there_is_comm_not_a_crash(tmp_path):
    async def scenario() -> PollOutcome:
        bus = bus_on(str(tmp_path / "ttyNONE"))
        reader = bus.source(meter_device(ADDRESS, ["02010100"], retries=0), lambda: 0)
        try:
            return await reader.poll()
        finally:
            await bus.close()

    outcome = asyncio.run(scenario())
    assert [s.quality for s in outcome.samples] == [Quality.COMM]
    assert "cannot open" in (outcome.comm_error or "")


def test_value_encoding_for_the_simulator_round_trips():
    for di, raw, value in FORMATS:
        fmt = dlt645.data_format(di)
        assert fmt is not None
        assert dlt645.decode_value(fmt, dlt645.encode_value(fmt, value)) == pytest.approx(value)
        assert dlt645.encode_value(fmt, value)[: fmt.size] == raw[: fmt.size], di


def test_registers_are_refused_with_what_the_bus_carries() -> None:
    """A crew's `watchpost read` on a meter line: a clear refusal, and no port opened."""
    bus = bus_on("/dev/null/no-such-port")

    async def scenario() -> list[str]:
        words = []
        with pytest.raises(DeviceError) as refused:
            await bus.read(ReadRequest(1, Table.HOLDING, 0, 1), timeout=1.0)
        words.append(str(refused.value))
        with pytest.raises(DeviceError) as refused:
            await bus.write(1, Table.HOLDING, 0, [1], timeout=1.0)
        words.append(str(refused.value))
        return words

    assert asyncio.run(scenario()) == [
        "bus meters carries DL/T 645 meters: there are no registers to read; read its points",
        "bus meters carries DL/T 645 meters: there are no registers to write; read its points",
    ]
    assert not bus.port.is_open
