"""Config files that used to crash or mislead `config check` and `run`: each is refused with
exit 78 and a message that names what is wrong, by both commands, without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.processes import cli

EXIT_CONFIG = 78

BASE = """
[gateway]
site = "s1"
id = "gw-1"
[uplink]
broker = "{broker}"
[store]
path = "var/buffer.db"
[control]
socket = "var/control.sock"
[[buses]]
type = "{bus_type}"
name = "line"
{bus_keys}
[[devices]]
name = "gas"
bus = "line"
unit = {unit}
interval = {interval}
[[devices.points]]
name = "gas_a"
address = 0
"""
TCP = 'host = "127.0.0.1"\nport = 1502'
RTU = 'port = "/dev/ttyUSB0"'


def config_text(
    *,
    broker: str = "mqtt://127.0.0.1:1883",
    bus_type: str = "modbus_tcp",
    unit: int = 1,
    interval: str = "1.0",
) -> str:
    return BASE.format(
        broker=broker,
        bus_type=bus_type,
        bus_keys=RTU if bus_type == "modbus_rtu" else TCP,
        unit=unit,
        interval=interval,
    )


def refused_by_both(folder: Path, data: bytes) -> str:
    """Both commands' output; each must exit 78 without a traceback."""
    config = folder / "gateway.toml"
    config.write_bytes(data)
    config.chmod(0o640)
    output = ""
    for args in (("config", "check", str(config)), ("run", "--config", str(config))):
        result = cli(*args, cwd=folder)
        text = result.stdout + result.stderr
        assert result.returncode == EXIT_CONFIG, text
        assert "Traceback" not in text, text
        output += text
    return output


def test_the_base_config_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text())
    config.chmod(0o640)
    result = cli("config", "check", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    output = refused_by_both(tmp_path, b"\xef\xbb\xbf" + config_text().encode())
    assert output.count("byte order mark") == 2
    assert "Invalid statement" not in output


def test_a_5000_deep_array_is_a_clear_error(tmp_path: Path) -> None:
    deep = "x = " + "[" * 5000 + "]" * 5000 + "\n"
    output = refused_by_both(tmp_path, (deep + config_text()).encode())
    assert output.count("nested too deeply") == 2
    assert "RecursionError" not in output


def test_credentials_in_the_broker_url_are_refused_and_never_printed(tmp_path: Path) -> None:
    secret = "s3cr3t-Pa55"
    output = refused_by_both(
        tmp_path, config_text(broker=f"mqtt://watchpost:{secret}@10.0.0.5:1883").encode()
    )
    assert output.count("uplink.broker") == 2
    assert "password_file" in output
    assert secret not in output


@pytest.mark.parametrize("broker", ["mqtt://10.0.0.5:0", "mqtts://10.0.0.5:0"])
def test_port_0_is_refused(tmp_path: Path, broker: str) -> None:
    output = refused_by_both(tmp_path, config_text(broker=broker).encode())
    assert output.count("uplink.broker: port 0") == 2


@pytest.mark.parametrize("interval", ["1e-9", "0.0", "0.01", "nan", "inf"])
def test_an_interval_below_the_minimum_is_refused(tmp_path: Path, interval: str) -> None:
    output = refused_by_both(tmp_path, config_text(interval=interval).encode())
    assert output.count("devices[0].interval") == 2


@pytest.mark.parametrize("unit", [0, 248, 255])
def test_an_rtu_unit_that_cannot_answer_is_refused(tmp_path: Path, unit: int) -> None:
    output = refused_by_both(tmp_path, config_text(bus_type="modbus_rtu", unit=unit).encode())
    assert output.count(f"devices[0].unit: {unit} is not a unit an RTU line can poll") == 2


def test_unit_0_stays_allowed_on_modbus_tcp(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(unit=0))  # many TCP devices answer unit 0 (or 255) only
    config.chmod(0o640)
    result = cli("config", "check", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
