"""The site simulator as a real process: `watchpost simulate` on free loopback ports and a
real pseudo-terminal, read with real pymodbus clients over TCP and over the RTU link.

The process itself is the kit's ``SimulatorProcess`` (``tests/kit/processes.py``).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from tests.kit.processes import SimulatorProcess, cli

DT = ModbusTcpClient.DATATYPE


def _constants(*points: tuple[str, str, int, str, str, str]) -> str:
    """``[[devices.points]]`` tables of constant points: (name, table, address, type, value,
    more keys)."""
    return "".join(
        f'\n[[devices.points]]\nname = "{name}"\ntable = "{table}"\naddress = {address}\n'
        f'type = "{kind}"\n{more}\nsignal = {{ kind = "constant", value = {value} }}\n'
        for name, table, address, kind, value, more in points
    )


SITE_TEMPLATE = """
[site]
name = "test-site"
seed = 7
tick = 0.05

[[buses]]
type = "modbus_tcp"
name = "plant"
port = 15999            # replaced by --port-base 0

[[buses]]
type = "modbus_rtu"
name = "line"
link = "dev/ttyWP0"

[[devices]]
name = "types"
bus = "plant"
unit = 1
{types}
[[devices]]
name = "gas"
bus = "plant"
unit = 2

[[devices.points]]
name = "ch4"
unit = "%CH4"
table = "input"
address = 0
type = "uint16"
scale = 0.01
marks = [1.0]
signal = { kind = "wander", base = 0.3, noise = 0.0 }

[[devices.points]]
name = "frozen"
table = "input"
address = 1
type = "uint16"
signal = { kind = "wander", base = 500, amplitude = 300, period = 1.0 }

[[devices.points]]
name = "drifting"
table = "input"
address = 2
type = "uint16"
signal = { kind = "constant", value = 100 }

[[devices]]
name = "dead"
bus = "plant"
unit = 3
points = [{ name = "dead_value", address = 0, signal = { kind = "constant", value = 1 } }]

[[devices]]
name = "refusing"
bus = "plant"
unit = 4
points = [
  { name = "fine", address = 0, signal = { kind = "constant", value = 7 } },
  { name = "broken", address = 10, signal = { kind = "constant", value = 8 } },
]

[[devices]]
name = "rtu-a"
bus = "line"
unit = 5
{rtu}
[[devices]]
name = "sluggish"
bus = "plant"
unit = 7
points = [{ name = "late_value", address = 0, signal = { kind = "constant", value = 9 } }]

[[devices]]
name = "rtu-b"
bus = "line"
unit = 6
points = [{ name = "rtu_b_value", address = 0, signal = { kind = "constant", value = 42 } }]

[[script]]
at = 1.0
name = "ventilation stops"
changes = [{ point = "ch4", to = 1.9, over = 1.6 }]   # crosses 1.0 at t = 1.7

[[script]]
at = 3.0
name = "ventilation restarts"
changes = [{ point = "ch4", to = 0.3, over = 1.6 }]   # back below 1.0 at t = 3.9

[[faults]]
kind = "silent"
device = "dead"

[[faults]]
kind = "silent"
device = "rtu-b"
start = 0
end = 2.0

[[faults]]
kind = "exception"
device = "refusing"
table = "holding"
address = 10
count = 5
code = 2

[[faults]]
kind = "slow"
device = "sluggish"
delay = 0.4

[[faults]]
kind = "stuck"
point = "frozen"
start = 0.0
end = 60.0

[[faults]]
kind = "drift"
point = "drifting"
rate = 10.0
"""
SITE = SITE_TEMPLATE.replace(
    "{types}",
    _constants(
        ("i16", "holding", 0, "int16", "-1234", ""),
        ("u16", "holding", 1, "uint16", "54321", ""),
        ("i32_big", "holding", 2, "int32", "-123456789", ""),
        ("i32_little", "holding", 4, "int32", "-123456789", 'word_order = "little"'),
        ("u32_big", "holding", 6, "uint32", "3000000000", ""),
        ("u32_little", "holding", 8, "uint32", "3000000000", 'word_order = "little"'),
        ("f32_big", "holding", 10, "float32", "12.5", ""),
        ("f32_little", "holding", 12, "float32", "-0.375", 'word_order = "little"'),
        ("scaled", "input", 0, "uint16", "12.34", "scale = 0.01"),
        ("offset", "input", 1, "int16", "-12.5", "scale = 0.1\noffset = -40.0"),
        ("relay", "coil", 0, "bool", "false", ""),
        ("beacon", "coil", 1, "bool", "true", ""),
        ("running", "discrete", 3, "bool", "true", ""),
    ),
).replace(
    "{rtu}",
    _constants(
        ("rtu_f32", "input", 0, "float32", "20.9", 'word_order = "little"'),
        ("rtu_i16", "holding", 0, "int16", "-3.5", "scale = 0.1"),
        ("rtu_u32", "holding", 1, "uint32", "70000", ""),
        ("rtu_alarm", "discrete", 0, "bool", "true", ""),
    ),
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    folder = tmp_path_factory.mktemp("site")
    # a link left over from an earlier run that died: replaced, not refused
    (folder / "dev").mkdir()
    (folder / "dev" / "ttyWP0").symlink_to("/nonexistent/pts/99")
    with SimulatorProcess.start(SITE, folder) as process:
        yield process


@pytest.fixture
def tcp(sim: SimulatorProcess) -> Iterator[ModbusTcpClient]:
    client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port("plant"), timeout=1, retries=0)
    assert client.connect()
    yield client
    client.close()


@pytest.fixture
def rtu(sim: SimulatorProcess) -> Iterator[ModbusSerialClient]:
    client = ModbusSerialClient(str(sim.link("line")), baudrate=9600, timeout=1, retries=0)
    assert client.connect()
    yield client
    client.close()


def test_every_data_type_and_word_order_decodes(tcp: ModbusTcpClient) -> None:
    words = tcp.read_holding_registers(0, count=14, device_id=1).registers
    decode = ModbusTcpClient.convert_from_registers
    assert decode(words[0:1], DT.INT16) == -1234
    assert decode(words[1:2], DT.UINT16) == 54321
    assert decode(words[2:4], DT.INT32) == -123456789
    assert decode(words[4:6], DT.INT32, word_order="little") == -123456789
    assert words[4:6] == words[2:4][::-1]
    assert decode(words[6:8], DT.UINT32) == 3_000_000_000
    assert decode(words[8:10], DT.UINT32, word_order="little") == 3_000_000_000
    assert decode(words[10:12], DT.FLOAT32) == 12.5
    assert decode(words[12:14], DT.FLOAT32, word_order="little") == -0.375
    inputs = tcp.read_input_registers(0, count=2, device_id=1).registers
    assert inputs[0] == 1234  # 12.34 with scale 0.01
    assert decode(inputs[1:2], DT.INT16) * 0.1 - 40.0 == pytest.approx(-12.5)
    assert tcp.read_coils(0, count=2, device_id=1).bits[:2] == [False, True]
    assert tcp.read_discrete_inputs(3, count=1, device_id=1).bits[0] is True


def test_coil_written_by_a_master_holds(tcp: ModbusTcpClient) -> None:
    assert not tcp.write_coil(0, True, device_id=1).isError()
    time.sleep(0.2)  # a couple of ticks: the simulator must not overwrite it
    assert tcp.read_coils(0, count=1, device_id=1).bits[0] is True
    assert not tcp.write_coil(0, False, device_id=1).isError()
    assert tcp.read_coils(0, count=1, device_id=1).bits[0] is False


def test_rtu_link_serves_its_units(sim: SimulatorProcess, rtu: ModbusSerialClient) -> None:
    link = sim.link("line")
    assert link == sim.cwd / "dev" / "ttyWP0"
    assert link.is_symlink()
    assert link.readlink().exists()
    decode = ModbusSerialClient.convert_from_registers
    value = decode(
        rtu.read_input_registers(0, count=2, device_id=5).registers, DT.FLOAT32, word_order="little"
    )
    assert value == pytest.approx(20.9, abs=1e-5)
    words = rtu.read_holding_registers(0, count=3, device_id=5).registers
    assert decode(words[0:1], DT.INT16) == -35
    assert decode(words[1:3], DT.UINT32) == 70000
    assert rtu.read_discrete_inputs(0, count=1, device_id=5).bits[0] is True


def test_rtu_unit_silent_then_back(sim: SimulatorProcess, rtu: ModbusSerialClient) -> None:
    """rtu-b is silent until t=2 s; an absent unit on the line never answers."""
    if sim.t() < 1.5:
        with pytest.raises(ModbusIOException):
            rtu.read_holding_registers(0, count=1, device_id=6)
    with pytest.raises(ModbusIOException):
        rtu.read_holding_registers(0, count=1, device_id=77)
    sim.wait_event("fault", kind="silent", target="rtu-b", state="end")
    assert rtu.read_holding_registers(0, count=1, device_id=6).registers == [42]


def test_silent_device_does_not_answer(tcp: ModbusTcpClient) -> None:
    started = time.monotonic()
    with pytest.raises(ModbusIOException):
        tcp.read_holding_registers(0, count=1, device_id=3)
    assert time.monotonic() - started >= 0.9  # it timed out: no answer at all
    # the other devices on the same endpoint keep answering
    assert tcp.read_holding_registers(0, count=1, device_id=4).registers == [7]


def test_slow_device_answers_late(tcp: ModbusTcpClient) -> None:
    started = time.monotonic()
    assert tcp.read_holding_registers(0, count=1, device_id=7).registers == [9]
    assert time.monotonic() - started >= 0.4


def test_exception_range_and_unmapped_addresses(tcp: ModbusTcpClient) -> None:
    answer = tcp.read_holding_registers(10, count=1, device_id=4)
    assert answer.isError()
    assert answer.exception_code == 2
    answer = tcp.read_holding_registers(0, count=11, device_id=4)  # a block touching the range
    assert answer.isError()
    assert answer.exception_code == 2
    answer = tcp.read_input_registers(50, count=2, device_id=1)  # nothing mapped there
    assert answer.isError()
    assert answer.exception_code == 2
    answer = tcp.read_holding_registers(0, count=1, device_id=99)  # no such unit
    assert answer.isError()
    assert answer.exception_code == 11


def test_stuck_and_drift(sim: SimulatorProcess, tcp: ModbusTcpClient) -> None:
    seen = set()
    for _ in range(6):  # the true value swings by ±300 every second; the reading is frozen
        seen.add(tcp.read_input_registers(1, count=1, device_id=2).registers[0])
        time.sleep(0.1)
    assert len(seen) == 1
    first_t, first = sim.t(), tcp.read_input_registers(2, count=1, device_id=2).registers[0]
    time.sleep(0.5)
    second_t, second = sim.t(), tcp.read_input_registers(2, count=1, device_id=2).registers[0]
    assert first == pytest.approx(100 + 10 * first_t, abs=3)
    assert second - first == pytest.approx(10 * (second_t - first_t), abs=3)


def test_incident_on_time_then_sigterm_stops_cleanly(tmp_path: Path) -> None:
    """A fresh site, so that the clock is at the start of the script."""
    with SimulatorProcess.start(SITE, tmp_path) as sim:
        client = ModbusTcpClient("127.0.0.1", port=sim.tcp_port("plant"), timeout=1, retries=0)
        assert client.connect()
        rise: float | None = None
        fall: float | None = None
        deadline = time.monotonic() + 8.0
        while fall is None and time.monotonic() < deadline:
            value = client.read_input_registers(0, count=1, device_id=2).registers[0] * 0.01
            t = sim.t()
            if rise is None and value >= 1.0:
                rise = t
            elif rise is not None and value < 1.0:
                fall = t
            time.sleep(0.02)
        client.close()
        assert rise is not None
        assert fall is not None
        assert rise == pytest.approx(1.7, abs=0.3)
        assert fall == pytest.approx(3.9, abs=0.3)
        stops = sim.wait_event("phase", name="ventilation stops")
        assert stops["t"] == 1.0
        assert stops["crossings"] == [
            {
                "point": "ch4",
                "mark": 1.0,
                "direction": "up",
                "t": 1.7,
                "time": pytest.approx(stops["time"] + 0.7),
            }
        ]
        restarts = sim.wait_event("phase", name="ventilation restarts")
        assert restarts["crossings"][0]["direction"] == "down"
        assert restarts["crossings"][0]["t"] == pytest.approx(3.9)

        link = sim.link("line")
        assert link.is_symlink()
        started = time.monotonic()
        assert sim.stop() == 0
        assert time.monotonic() - started < 5
    assert not link.exists()
    assert not link.is_symlink()
    assert sim.document()["events"][-1]["event"] == "stopped"


def test_ctrl_c_stops_cleanly_too(tmp_path: Path) -> None:
    with SimulatorProcess.start(SITE, tmp_path) as sim:
        link = sim.link("line")
        sim.process.send_signal(signal.SIGINT)
        assert sim.process.wait(5) == 0
    assert not link.is_symlink()


def test_refuses_to_replace_a_file_at_the_link_path(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    precious = tmp_path / "dev" / "ttyWP0"
    precious.write_text("not a link", encoding="utf-8")
    (tmp_path / "site.toml").write_text(SITE, encoding="utf-8")
    result = cli("simulate", "site.toml", "--port-base", "0", cwd=tmp_path, timeout=30)
    assert result.returncode == 71
    assert "not a link" in result.stderr
    assert precious.read_text(encoding="utf-8") == "not a link"


def test_port_taken_exits_71(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "site.toml").write_text(SITE, encoding="utf-8")
        result = cli("simulate", "site.toml", "--port-base", str(port), cwd=tmp_path, timeout=30)
    assert result.returncode == 71, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr


def test_bad_site_file_exits_78_naming_the_keys(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        SITE.replace(
            'type = "uint16"\nscale = 0.01\nmarks', 'type = "uint61"\nscale = 0.01\nmarks'
        ),
        encoding="utf-8",
    )
    result = cli("simulate", "site.toml", cwd=tmp_path, timeout=30)
    assert result.returncode == 78, result.stderr
    assert "devices[1].points[0].type: " in result.stderr
    # references are checked once the shapes are right
    site.write_text(SITE.replace('device = "dead"', 'device = "deaf"'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "watchpost.drivers.simulator", "site.toml", "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    assert "faults[0].device: no device named 'deaf'" in result.stderr


def test_demo_site_file_is_valid() -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo" / "site.toml"
    result = cli("simulate", str(demo), "--check", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
