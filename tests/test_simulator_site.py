"""The simulator's site file and engine, without processes or real time."""

from __future__ import annotations

import asyncio
import io
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.kit.tasks import assert_cancelled
from watchpost.config import ConfigError
from watchpost.drivers.base import Table
from watchpost.drivers.simulator.engine import SiteEngine, decode, encode
from watchpost.drivers.simulator.server import EventLog, SiteServer
from watchpost.drivers.simulator.site import SiteConfig, load_site, parse_site

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "site.toml"

MINIMAL = """
[site]
seed = 3
tick = 0.1

[[buses]]
type = "modbus_tcp"
name = "a"
port = 0

[[devices]]
name = "d"
bus = "a"

[[devices.points]]
name = "ch4"
table = "input"
address = 0
scale = 0.01
marks = [1.0, 1.5]
signal = { kind = "wander", base = 0.3, noise = 0.02, tau = 4 }

[[devices.points]]
name = "level"
address = 0
type = "float32"
signal = { kind = "wander", base = 5.0, amplitude = 1.0, period = 60 }

[[devices.points]]
name = "pressure"
address = 2
type = "int32"
word_order = "little"
scale = 0.01
signal = { kind = "linear", of = "level", gain = 8.0, bias = 1.0 }

[[devices.points]]
name = "energy"
address = 4
type = "uint32"
signal = { kind = "integral", of = "pressure", gain = 1.0 }

[[devices.points]]
name = "fan"
table = "discrete"
address = 0
type = "bool"
signal = { kind = "constant", value = true }

[[script]]
at = 10
name = "stop"
changes = [{ point = "ch4", to = 1.9, over = 16 }, { point = "fan", to = false }]

[[script]]
at = 30
name = "restart"
changes = [{ point = "ch4", to = 0.3, over = 16 }, { point = "fan", to = true, over = 2 }]
"""


def site_of(text: str = MINIMAL, **patch: Any) -> SiteConfig:
    raw = tomllib.loads(text)
    raw.update(patch)
    return parse_site(raw, Path("site.toml"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(tomllib.loads(text), Path("site.toml"))
    return caught.value.errors


def test_demo_site_loads() -> None:
    site = load_site(DEMO)
    assert {bus.type for bus in site.buses} == {"modbus_tcp", "modbus_rtu", "dlt645", "serial_line"}
    types = {(p.type, p.word_order if p.width == 2 else "-") for _d, p in site.points()}
    assert types >= {
        ("int16", "-"),
        ("uint16", "-"),
        ("int32", "big"),
        ("int32", "little"),
        ("uint32", "big"),
        ("uint32", "little"),
        ("float32", "big"),
        ("float32", "little"),
        ("bool", "-"),
    }
    assert {p.table for _d, p in site.points()} == set(Table)


def test_same_seed_same_values_other_seed_other_values() -> None:
    site = site_of()
    first, second, other = SiteEngine(site), SiteEngine(site), SiteEngine(site, seed=99)
    for engine in (first, second, other):
        engine.advance_to(5.0)
    assert first.image("d", Table.INPUT) == second.image("d", Table.INPUT)
    assert first.value("ch4") == second.value("ch4")
    assert first.value("ch4") != other.value("ch4")


def test_noise_stays_near_the_mean() -> None:
    engine = SiteEngine(site_of())
    values = []
    for step in range(1, 600):
        engine.advance_to(step * 0.1)
        values.append(float(engine.value("ch4")))
    assert min(values) > 0.2
    assert max(values) < 0.4
    assert len(set(values)) > 50  # it moves


def test_script_ramps_and_announces_crossings() -> None:
    site = site_of()
    engine = SiteEngine(site)
    engine.advance_to(10.0)
    ramps, crossings = engine.apply_phase(site.script[0], 10.0)
    assert [(c.point, c.mark, c.direction, c.t) for c in crossings] == [
        ("ch4", 1.0, "up", pytest.approx(17.0)),
        ("ch4", 1.5, "up", pytest.approx(22.0)),
    ]
    assert ramps[0].value_from == pytest.approx(0.3)
    engine.advance_to(26.0)
    assert float(engine.value("ch4")) == pytest.approx(1.9, abs=0.1)
    assert engine.value("fan") is False
    _ramps, crossings = engine.apply_phase(site.script[1], 30.0)
    assert [(c.mark, c.direction, c.t) for c in crossings] == [
        (1.5, "down", pytest.approx(34.0)),
        (1.0, "down", pytest.approx(39.0)),
    ]
    engine.advance_to(31.0)
    assert engine.value("fan") is False  # a bit switches at the end of its ramp
    engine.advance_to(32.0)
    assert engine.value("fan") is True


def test_derived_points_follow_their_source() -> None:
    engine = SiteEngine(site_of())
    engine.advance_to(2.0)
    level = float(engine.value("level"))
    assert float(engine.value("pressure")) == pytest.approx(8.0 * level + 1.0)
    before = float(engine.value("energy"))
    engine.advance_to(3.0)
    assert float(engine.value("energy")) - before == pytest.approx(
        float(engine.value("pressure")), rel=0.05
    )


def test_registers_carry_the_values() -> None:
    site = site_of()
    engine = SiteEngine(site)
    engine.advance_to(1.0)
    words = engine.image("d", Table.HOLDING)
    assert decode(site.point("level"), [int(w) for w in words[0:2]]) == pytest.approx(
        float(engine.value("level")), rel=1e-6
    )
    assert decode(site.point("pressure"), [int(w) for w in words[2:4]]) == pytest.approx(
        float(engine.value("pressure")), abs=0.006
    )
    assert engine.image("d", Table.DISCRETE) == [True]


@pytest.mark.parametrize(
    ("kind", "value", "scale", "expected"),
    [
        ("int16", -40000.0, 1.0, -32768.0),  # saturates like a transmitter
        ("uint16", -5.0, 1.0, 0.0),
        ("uint16", 12.345, 0.01, 12.34),
        ("int32", -2.5, 0.1, -2.5),
        ("uint32", 4_294_967_295.0, 1.0, 4_294_967_295.0),
    ],
)
def test_encode_decode(kind: str, value: float, scale: float, expected: float) -> None:
    point = site_of().point("ch4").model_copy(update={"type": kind, "scale": scale})
    assert decode(point, encode(point, value)) == pytest.approx(expected)


def test_written_values_hold() -> None:
    site = site_of()
    engine = SiteEngine(site)
    device = site.devices[0]
    engine.write(device, Table.HOLDING, 0, encode(site.point("level"), 9.5))
    engine.advance_to(3.0)
    assert engine.value("level") == pytest.approx(9.5)


def test_stuck_and_drift_faults() -> None:
    faults = [
        {"kind": "stuck", "point": "level", "start": 1.0, "end": 3.0},
        {"kind": "drift", "point": "ch4", "rate": 0.1, "start": 2.0},
    ]
    engine = SiteEngine(site_of(faults=faults))
    engine.advance_to(1.0)
    frozen = engine.value("level")
    engine.advance_to(2.9)
    assert engine.value("level") == frozen
    engine.advance_to(3.5)
    assert engine.value("level") != frozen
    engine.advance_to(12.0)
    assert float(engine.value("ch4")) == pytest.approx(0.3 + 1.0, abs=0.15)


def test_mistakes_are_named_by_key_path() -> None:
    text = (
        MINIMAL.replace('type = "float32"', 'type = "float23"')
        .replace("tick = 0.1", 'tick = "fast"')
        .replace('name = "d"\nbus = "a"', 'name = "d"\nbus = "a"\ncolour = "red"')
    )
    errors = errors_of(text)
    assert (
        "devices[0].points[1].type: must be one of 'int16', 'uint16', 'int32', 'uint32', "
        "'float32' or 'bool' (got 'float23')" in errors
    )
    assert "site.tick: must be a number (got 'fast')" in errors
    assert "devices[0].colour: is not a known key" in errors


def test_references_are_checked() -> None:
    text = (
        MINIMAL.replace('of = "level"', 'of = "levle"')
        .replace('bus = "a"', 'bus = "b"')
        .replace('{ point = "fan", to = false }', '{ point = "fan", to = 2.0 }')
        + '\n[[faults]]\nkind = "silent"\ndevice = "nobody"\n'
        + '\n[[faults]]\nkind = "drift"\npoint = "fan"\nrate = 1\n'
    )
    errors = errors_of(text)
    assert "devices[0].bus: no bus named 'b' (buses: a)" in errors
    assert "devices[0].points[2].signal.of: no point named 'levle'" in errors
    assert "script[0].changes[1].to: point 'fan' is a bit; 'to' must be true or false" in errors
    assert "faults[0].device: no device named 'nobody'" in errors
    assert "faults[1].point: a bit cannot drift" in errors


def test_overlaps_cycles_and_types() -> None:
    text = MINIMAL.replace(
        'name = "pressure"\naddress = 2', 'name = "pressure"\naddress = 1'
    ).replace(
        '{ kind = "wander", base = 5.0, amplitude = 1.0, period = 60 }',
        '{ kind = "linear", of = "energy" }',
    )
    errors = errors_of(text)
    assert "devices[0].points[2].address: holding 1 overlaps point 'level'" in errors
    assert any("in a circle" in error for error in errors)
    bit = 'type = "bool"\nsignal = { kind = "constant", value = '
    errors = errors_of(MINIMAL.replace(bit + "true }", bit + "1 }"))
    assert errors == [
        "devices[0].points[4]: signal 'constant' gives numeric values, but the "
        "point's type is 'bool'"
    ]


def test_repeat_must_follow_the_last_phase() -> None:
    errors = errors_of(MINIMAL.replace("tick = 0.1", "tick = 0.1\nrepeat = 20"))
    assert errors == ["site.repeat: repeat (20.0 s) must be later than the last phase (30.0 s)"]


def test_a_cancellation_that_comes_with_the_stop_is_not_lost() -> None:
    """The clock loop waits with ``asyncio.timeout``: 3.11's ``wait_for`` swallowed a cancel
    that arrived as ``stop`` was set, and the task ended as if nothing had cancelled it."""

    async def main() -> None:
        server = SiteServer(
            parse_site(tomllib.loads(MINIMAL), Path("site.toml")),
            events=EventLog(None, io.StringIO()),
        )
        server.events.begin()
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        await asyncio.sleep(0.05)  # inside its wait for the next tick (tick = 0.1 s)
        stop.set()
        await assert_cancelled(task)  # in the same step as the stop

    asyncio.run(main())
