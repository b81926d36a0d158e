"""`watchpost scan --dlt645` against emulated DL/T 645 meters on a real pseudo-terminal."""

from __future__ import annotations

import argparse
import tomllib

import pytest

from tests.dlt645_meter import Meter, MeterLine, bcd
from watchpost.cli import main
from watchpost.config import GatewayConfig
from watchpost.config.dlt645 import Dlt645Device
from watchpost.provisioning.scan_meters import parse_addresses

ENERGY = {"00010000": bcd("00123456")}  # 1234.56 kWh


def scan(*args: str) -> int:
    return main(["scan", "--dlt645", "--baud", "2400", "--timeout", "0.3", *args])


def as_config(proposed: dict[str, object]) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"site": "s", "id": "g"},
            "uplink": {"broker": "mqtt://127.0.0.1"},
            "store": {"path": "/tmp/x.db"},
            **proposed,
        }
    )


def test_the_only_meter_on_a_line_is_found_by_the_broadcast_read(capsys):
    with MeterLine(Meter("201900001234", ENERGY)) as line:
        status = scan("--port", line.path, "--bus-name", "meters")
    out, err = capsys.readouterr()
    assert status == 0
    assert "found 1 meter(s)" in err
    assert "2400 8E1: meter 201900001234" in err
    proposed = tomllib.loads(out)
    assert proposed["buses"] == [
        {"type": "dlt645", "name": "meters", "port": line.path, "baudrate": 2400, "parity": "E"}
    ]
    [device] = as_config(proposed).devices  # pasted as it is, the proposal is a valid config
    assert isinstance(device, Dlt645Device)
    assert device.address == "201900001234"
    assert [p.di for p in device.points] == ["00010000", "02030000"]


def test_meters_are_found_by_their_addresses(capsys):
    meters = [Meter("000012345671", ENERGY), Meter("000012345673", mode="abnormal")]
    with MeterLine(*meters) as line:
        status = scan("--port", line.path, "--addresses", "000012345670-000012345674")
    out, err = capsys.readouterr()
    assert status == 0
    assert "several meters answered at once" in err  # the broadcast read collided
    devices = as_config(tomllib.loads(out)).devices
    assert [d.address for d in devices if isinstance(d, Dlt645Device)] == [
        "000012345671",
        "000012345673",
    ]
    assert "meter 000012345671: forward active energy 1234.56 kWh during the scan" in out
    assert "meter 000012345673: answered DI 00010000 with an abnormal reply" in out


def test_nothing_on_the_line(capsys):
    with MeterLine(Meter("000000000001", mode="silent")) as line:
        status = scan("--port", line.path)
    assert status == 1
    assert "no meter answered" in capsys.readouterr().err


def test_address_lists():
    assert parse_addresses("000000000001,000000000003-000000000004") == [
        "000000000001",
        "000000000003",
        "000000000004",
    ]
    for bad in ("12345", "000000000009-000000000001", "000000000000-000000099999"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_addresses(bad)
