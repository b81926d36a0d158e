"""Which keys a device and a point take depends on its bus's type; errors name the key path.

The file is the issue's own example (DL/T 645 meter, streaming gas detector), plus a polled
instrument and a Modbus device, checked by `watchpost config check` and by the loader.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.kit.processes import cli
from watchpost.config import EXIT_CONFIG, ConfigError, DeviceConfig, load_config
from watchpost.config.dlt645 import Dlt645Device
from watchpost.config.serial_line import LineDevice

HEAD = """
[gateway]
site = "mine-7"
id = "gw-01"

[uplink]
broker = "mqtt://127.0.0.1:1883"

[store]
path = "var/buffer.db"
"""

EXAMPLE = (
    HEAD
    + """
[[buses]]
type = "dlt645"
name = "meters"
port = "/dev/ttyUSB1"

[[devices]]
name = "main-meter"
bus = "meters"
address = "000012345678"
interval = 5.0

[[devices.points]]
name = "plant_power"
di = "02030000"
unit = "kW"
alarms = [{ kind = "production_during_shutdown", threshold = 80.0, on_delay = 300 }]

[[devices.points]]
name = "plant_energy"
di = "00010000"

[[buses]]
type = "serial_line"
name = "gasline"
port = "/dev/ttyUSB2"
baudrate = 9600

[[devices]]
name = "gas-detector"       # streams "CH4=0.42;CO=12" lines on its own
bus = "gasline"
timeout = 3.0

[[devices.points]]
name = "ch4_heading"
pattern = 'CH4=(?P<value>[-+0-9.]+)'
unit = "%CH4"

[[buses]]
type = "serial_line"
name = "radar"
port = "/dev/ttyS0"
line_end = "\\r"

[[devices]]
name = "level-radar"
bus = "radar"
request = "READ\\r"
interval = 2.0
checksum = "nmea"

[[devices.points]]
name = "sump_level"
field = 2
unit = "m"

[[buses]]
type = "modbus_tcp"
name = "plant"
host = "127.0.0.1"

[[devices]]
name = "pump"
bus = "plant"
unit = 3

[[devices.points]]
name = "pump_current"
address = 10
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o640)
    return path


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value.errors


def test_the_issues_example_loads_with_each_device_in_its_own_shape(tmp_path):
    config = load_config(write(tmp_path, EXAMPLE))
    meter, gas, radar, pump = config.devices
    assert isinstance(meter, Dlt645Device)
    assert meter.address == "000012345678"
    assert [p.di for p in meter.points] == ["02030000", "00010000"]
    assert meter.points[1].unit == "kWh"  # taken from the DI's format
    assert meter.points[0].alarms[0].name == "production_during_shutdown"
    assert isinstance(gas, LineDevice)
    assert gas.request is None
    assert isinstance(radar, LineDevice)
    assert radar.request == "READ\r"  # a TOML basic string: the escape is TOML's
    assert isinstance(pump, DeviceConfig)
    assert [p.name for _d, p in config.points()] == [
        "plant_power",
        "plant_energy",
        "ch4_heading",
        "sump_level",
        "pump_current",
    ]
    assert [b.type for b in config.buses] == ["dlt645", "serial_line", "serial_line", "modbus_tcp"]
    dlt = config.buses[0]
    assert (dlt.baudrate, dlt.parity, dlt.bytesize, dlt.stopbits) == (2400, "E", 8, 1)


def test_keys_of_another_bus_type_are_named_with_their_path(tmp_path):
    text = EXAMPLE.replace('di = "02030000"', 'di = "02030000"\naddress = 7').replace(
        "pattern = 'CH4=(?P<value>[-+0-9.]+)'", "pattern = 'CH4=(?P<value>[-+0-9.]+)'\nunit_id = 1"
    )
    found = errors(tmp_path, text)
    assert "devices[0].points[0].address: is not a known key" in found
    assert "devices[1].points[0].unit_id: is not a known key" in found


def test_wrong_meter_address_di_and_pattern_are_named(tmp_path):
    text = (
        EXAMPLE.replace('address = "000012345678"', 'address = "12345678"')
        .replace('di = "00010000"', 'di = "04000401"')
        .replace("pattern = 'CH4=(?P<value>[-+0-9.]+)'", "pattern = 'CH4=([-+0-9.]+)'")
    )
    found = errors(tmp_path, text)
    assert any(e.startswith("devices[0].address: ") for e in found), found
    assert any(
        e.startswith("devices[0].points[1].di: DI 04000401 is not one this driver decodes")
        for e in found
    ), found
    assert any(
        e.startswith("devices[1].points[0].pattern: pattern needs a named group value")
        for e in found
    ), found


def test_a_modbus_key_on_a_meter_and_a_meter_key_on_modbus(tmp_path):
    text = EXAMPLE.replace('address = "000012345678"', 'address = "000012345678"\nunit = 4')
    text = text.replace("unit = 3\n", 'unit = 3\nrequest = "READ"\n')
    found = errors(tmp_path, text)
    assert "devices[0].unit: is not a known key" in found
    assert "devices[3].request: is not a known key" in found


def test_outputs_refuse_a_device_that_is_not_modbus(tmp_path):
    text = (
        EXAMPLE
        + """
[[outputs]]
name = "siren"
device = "main-meter"
table = "coil"
address = 0
"""
    )
    found = errors(tmp_path, text)
    assert any(e.startswith("outputs[0].device: no device named 'main-meter'") for e in found)


def test_config_check_prints_the_key_path_and_exits_78(tmp_path):
    path = write(tmp_path, EXAMPLE.replace('line_end = "\\r"', 'line_end = "END!"'))
    done = cli("config", "check", str(path))
    assert done.returncode == EXIT_CONFIG
    assert "buses[2].line_end: line_end must be one or two characters" in done.stderr


def test_a_manifest_carries_meters_and_line_instruments_into_the_bundle(tmp_path):
    from watchpost.cli import main  # noqa: PLC0415 - the provisioning command

    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        textwrap.dedent(
            """
            site = "quarry-3"

            [broker]
            urls = ["mqtts://broker.example:8883"]

            [ca]
            cert = "ca/ca.crt"
            key = "ca/ca.key"

            [[gateways]]
            id = "gw-power"

            [[gateways.buses]]
            type = "dlt645"
            name = "meters"
            port = "/dev/ttyUSB1"

            [[gateways.devices]]
            name = "main-meter"
            bus = "meters"
            address = "000012345678"

            [[gateways.devices.points]]
            name = "plant_power"
            di = "02030000"
            scale = 80.0

            [[gateways.buses]]
            type = "serial_line"
            name = "gasline"
            port = "/dev/ttyUSB2"

            [[gateways.devices]]
            name = "gas-detector"
            bus = "gasline"

            [[gateways.devices.points]]
            name = "ch4"
            pattern = 'CH4=(?P<value>[-+0-9.]+)'
            """
        )
    )
    assert main(["ca", "create", "--out", str(tmp_path / "ca"), "--site", "quarry-3"]) == 0
    assert main(["provision", str(manifest), "--out", str(tmp_path / "out")]) == 0
    config = load_config(tmp_path / "out" / "gw-power" / "gateway.toml")
    meter, gas = config.devices
    assert isinstance(meter, Dlt645Device)
    assert meter.points[0].unit == "kW"
    assert isinstance(gas, LineDevice)
    bad = manifest.read_text().replace('di = "02030000"', 'di = "02030000"\nunit_id = 3')
    manifest.write_text(bad)
    assert main(["provision", str(manifest), "--out", str(tmp_path / "out2")]) == EXIT_CONFIG
