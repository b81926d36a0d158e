"""Config errors name their key paths; a bad file exits with status 78."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.kit.processes import cli
from watchpost.config import EXIT_CONFIG, ConfigError, load_config

GOOD = """
[gateway]
site = "mine-7"
id = "gw-01"

[uplink]
broker = "mqtt://127.0.0.1:1883"

[store]
path = "var/buffer.db"

[[buses]]
name = "face"
type = "modbus_rtu"
port = "/dev/ttyUSB0"
baudrate = 19200

[[buses]]
name = "plant"
type = "modbus_tcp"
host = "127.0.0.1"
port = 5020

[[devices]]
name = "gas"
bus = "face"
unit = 3

[[devices.points]]
name = "ch4_face_1"
unit = "%CH4"
address = 0
type = "float32"

[[devices.points.alarms]]
kind = "high"
threshold = 1.0
deadband = 0.1

[[devices]]
name = "tank"
bus = "plant"

[[devices.points]]
name = "level"
address = 10
scale = 0.01
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file_passes(tmp_path):
    result = cli("config", "check", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    config = load_config(tmp_path / "gateway.toml")
    assert [p.name for _d, p in config.points()] == ["ch4_face_1", "level"]
    assert config.uplink.broker == "mqtt://127.0.0.1:1883"


def test_five_mistakes_are_each_named_by_key_path(tmp_path):
    bad = (
        GOOD.replace('id = "gw-01"\n', "")  # missing key
        .replace("mqtt://127.0.0.1:1883", "http://broker")  # wrong scheme
        .replace("port = 5020", "port = 70000")  # out of range
        .replace('type = "float32"', 'type = "float64"')  # unknown data type
        .replace("scale = 0.01", 'scale = "0.01x"\ncolour = "red"')
    )  # not a number, unknown key
    result = cli("config", "check", str(write(tmp_path, bad)))
    assert result.returncode == EXIT_CONFIG
    err = result.stderr
    assert "gateway.id: is required" in err
    assert "uplink.broker: must be an mqtt:// or mqtts:// URL" in err
    assert "buses[1].port: must be at most 65535 (got 70000)" in err
    assert "devices[0].points[0].type: must be one of 'int16', 'uint16'" in err
    assert "devices[1].points[0].scale: must be a number (got '0.01x')" in err
    assert "devices[1].points[0].colour: is not a known key" in err
    assert "Traceback" not in err


def test_a_backup_broker_is_checked_as_the_broker_is(tmp_path):
    good = GOOD.replace(
        'broker = "mqtt://127.0.0.1:1883"\n',
        'broker = "mqtt://127.0.0.1:1883"\nbackup_brokers = ["mqtts://10.0.0.9"]\n',
    )
    assert load_config(write(tmp_path, good)).uplink.backup_brokers == ["mqtts://10.0.0.9"]
    bad = good.replace('"mqtts://10.0.0.9"', '"mqtts://10.0.0.9", "mqtt://u:p@10.0.0.8"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, bad))
    [error] = caught.value.errors
    assert error.startswith("uplink.backup_brokers: may not hold a user name or password"), error
    assert "u:p" not in error


def test_references_and_duplicates_are_checked(tmp_path):
    bad = GOOD.replace('bus = "plant"', 'bus = "plantt"').replace(
        'name = "level"', 'name = "ch4_face_1"'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, bad))
    assert "devices[1].bus: no bus named 'plantt' (buses: face, plant)" in caught.value.errors
    assert (
        "devices[1].points[0].name: point name 'ch4_face_1' is used more than once"
        in caught.value.errors
    )


def test_type_must_fit_the_table(tmp_path):
    bad = GOOD.replace("address = 10\n", 'address = 10\ntable = "coil"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, bad))
    assert any(
        e.startswith("devices[1].points[0]: type 'uint16' does not fit table 'coil'")
        for e in caught.value.errors
    ), caught.value.errors


def test_broken_toml_and_missing_file(tmp_path):
    result = cli("config", "check", str(write(tmp_path, "[gateway\nsite=1")))
    assert result.returncode == EXIT_CONFIG
    assert "not valid TOML" in result.stderr
    assert "line 1" in result.stderr
    result = cli("config", "check", str(tmp_path / "absent.toml"))
    assert result.returncode == EXIT_CONFIG
    assert "cannot read the file" in result.stderr


def test_run_refuses_a_bad_file(tmp_path):
    bad = GOOD.replace("unit = 3", "unit = 300")
    result = cli("run", "--config", str(write(tmp_path, bad)))
    assert result.returncode == EXIT_CONFIG
    assert "devices[0].unit" in result.stderr


def test_secrets_readable_by_others_are_refused_at_start(tmp_path):
    key = tmp_path / "gateway.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    for name in ("gateway.crt", "ca.crt"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    tls = GOOD.replace(
        'broker = "mqtt://127.0.0.1:1883"',
        f'''broker = "mqtts://127.0.0.1:8883"
ca_file = "{tmp_path / "ca.crt"}"
cert_file = "{tmp_path / "gateway.crt"}"
key_file = "{key}"''',
    )
    config = write(tmp_path, tls)
    key.chmod(0o644)
    config.chmod(0o640)
    result = cli("run", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert f"uplink.key_file: {key} can be read by others (mode 0o644); chmod 600" in result.stderr

    key.chmod(0o600)
    config.chmod(0o644)  # the config points at the key: others must not read it either
    result = cli("run", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "others can read this file" in result.stderr

    config.chmod(0o640)
    (tmp_path / "gateway.crt").unlink()
    result = cli("run", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "uplink.cert_file:" in result.stderr
    assert "does not exist" in result.stderr


def test_a_config_others_can_change_is_refused(tmp_path):
    config = write(tmp_path, GOOD)
    config.chmod(0o666)
    result = cli("config", "check", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "others can change this file" in result.stderr
