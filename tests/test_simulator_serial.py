"""The simulator's meters and line instruments, as a real `watchpost simulate` process, read
through the gateway's own drivers over the links the site file names."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

import pytest

from tests.test_simulator import SimulatorProcess
from watchpost.config import ConfigError
from watchpost.config.dlt645 import Dlt645Device
from watchpost.config.serial_line import LineDevice
from watchpost.drivers import DRIVERS, serial_line
from watchpost.drivers.base import PollOutcome, SourceBus
from watchpost.drivers.simulator.site import parse_site
from watchpost.samples import Quality

SITE = """
[site]
name = "meters-and-lines"
tick = 0.1

[[buses]]
type = "dlt645"
name = "meters"
link = "var/meters"

[[buses]]
type = "serial_line"
name = "gasline"
link = "var/gasline"

[[buses]]
type = "serial_line"
name = "sump"
link = "var/sump"
line_end = "\\r"

[[devices]]
name = "main-meter"
bus = "meters"
address = "000012345678"

[[devices.points]]
name = "plant_power"
di = "02030000"
scale = 80.0
signal = { kind = "constant", value = 420.0 }

[[devices.points]]
name = "plant_energy"
di = "00010000"
signal = { kind = "constant", value = 15811.25 }

[[devices]]
name = "quiet-meter"
bus = "meters"
address = "000000000002"

[[devices.points]]
name = "quiet_power"
di = "02030000"
signal = { kind = "constant", value = 1.0 }

[[devices]]
name = "heading-gas"
bus = "gasline"
line = "CH4={ch4:.2f};CO={co:.0f}"
period = 0.2

[[devices.points]]
name = "ch4"
signal = { kind = "constant", value = 0.42 }

[[devices.points]]
name = "co"
signal = { kind = "constant", value = 12.0 }

[[devices]]
name = "sump-radar"
bus = "sump"
line = "PSUMP,{level:.3f},M"
request = "READ\\r"
checksum = "nmea"

[[devices.points]]
name = "level"
signal = { kind = "constant", value = 1.25 }

[[script]]
at = 1.5
name = "production stops"
changes = [{ point = "plant_power", to = 35.0 }]

[[faults]]
kind = "silent"
device = "quiet-meter"
"""


def poll(sim: SimulatorProcess, bus: str, device: dict[str, object]) -> PollOutcome:
    """One poll of ``device`` through the gateway's driver on the simulator's link."""
    kind = sim.document()["buses"][bus]["type"]
    keys = {"line_end": "\\r"} if bus == "sump" else {}
    config = DRIVERS[kind].config.model_validate(
        {"type": kind, "name": bus, "port": str(sim.link(bus)), **keys}
    )
    model = Dlt645Device if kind == "dlt645" else LineDevice
    settings = model.model_validate({"bus": bus, "timeout": 1.0, "retries": 0, **device})

    async def once() -> PollOutcome:
        line = DRIVERS[kind].create(config)
        assert isinstance(line, SourceBus)
        try:
            return await line.source(settings, lambda: 0).poll(down=False)
        finally:
            await line.close()

    return asyncio.run(once())


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    with SimulatorProcess.start(SITE, tmp_path_factory.mktemp("serial-site")) as running:
        yield running


METER = {
    "name": "main-meter",
    "address": "000012345678",
    "points": [
        {"name": "plant_power", "di": "02030000", "scale": 80.0},
        {"name": "plant_energy", "di": "00010000"},
    ],
}


def test_the_meter_answers_and_its_power_follows_the_script(sim: SimulatorProcess) -> None:
    first = poll(sim, "meters", METER)
    assert first.errors == []
    assert first.comm_error is None
    power, energy = first.samples
    assert power.value == pytest.approx(420.0)  # 5.25 kW on the secondary side, times 80
    assert energy.value == pytest.approx(15811.25)
    sim.wait_event("phase", name="production stops", timeout=10)
    time.sleep(0.3)
    later = poll(sim, "meters", METER)
    assert later.samples[0].value == pytest.approx(35.0), (later.comm_error, later.errors)


def test_a_silent_meter_gives_comm_and_an_unknown_di_an_abnormal_reply(sim) -> None:
    quiet = poll(
        sim,
        "meters",
        {"name": "q", "address": "000000000002", "points": [{"name": "x", "di": "02030000"}]},
    )
    assert [s.quality for s in quiet.samples] == [Quality.COMM]
    unknown = poll(
        sim,
        "meters",
        {"name": "m", "address": "000012345678", "points": [{"name": "f", "di": "02800002"}]},
    )
    assert [s.quality for s in unknown.samples] == [Quality.BAD]
    assert "no data requested" in unknown.errors[0]


def test_the_streaming_detector_and_the_polled_radar(sim: SimulatorProcess) -> None:
    gas = poll(
        sim,
        "gasline",
        {
            "name": "g",
            "points": [
                {"name": "ch4", "pattern": "CH4=(?P<value>[0-9.]+)"},
                {"name": "co", "pattern": "CO=(?P<value>[0-9.]+)"},
            ],
        },
    )
    assert [(s.value, s.quality) for s in gas.samples] == [
        (0.42, Quality.GOOD),
        (12.0, Quality.GOOD),
    ]
    radar = poll(
        sim,
        "sump",
        {
            "name": "r",
            "request": "READ\r",
            "checksum": "nmea",
            "points": [{"name": "l", "field": 1}],
        },
    )
    assert [(s.value, s.quality) for s in radar.samples] == [(1.25, Quality.GOOD)]


def test_the_links_are_named_in_the_events(sim: SimulatorProcess) -> None:
    buses = sim.document()["buses"]
    assert buses["meters"]["type"] == "dlt645"
    assert buses["meters"]["link"].endswith("var/meters")
    assert Path(buses["gasline"]["link"]).resolve() == Path(buses["gasline"]["tty"])
    assert buses["sump"]["type"] == serial_line.KEY


def test_site_errors_name_the_keys_of_each_bus_type() -> None:
    text = SITE.replace('di = "00010000"\n', "").replace("period = 0.2\n", "")
    text = text.replace('line = "PSUMP,{level:.3f},M"', 'line = "PSUMP,{nope:.3f},M"')
    with pytest.raises(ConfigError) as caught:
        parse_site(tomllib.loads(text), Path("site.toml"))
    errors = caught.value.errors
    assert "devices[0].points[1].di: is required on a bus of type dlt645" in errors
    assert any(e.startswith("devices[2]: give exactly one of period") for e in errors)
    assert "devices[3].line: no point named 'nope'" in errors
