"""A file with type errors and wrong references gets all of them in one run: the gateway
config (`config check`, `run`), the site manifest (`provision`) and the simulator's site
file (`simulate`) alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.site_run import DEMO
from watchpost.cli import main
from watchpost.config import EXIT_CONFIG, ConfigError, load_config
from watchpost.drivers.simulator.site import load_site

EXAMPLE_MANIFEST = Path(__file__).parents[1] / "examples" / "manifest.toml"


def _edit(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def test_gateway_config_type_errors_and_an_unknown_bus_at_once(tmp_path, capsys):
    text = _edit(
        (DEMO / "gateway.toml").read_text(),
        ('name = "face-station"\nbus = "face"', 'name = "face-station"\nbus = "fcae"'),
        ("interval = 1.0", 'interval = "fast"'),
        ("scale = 0.01", 'scale = "hundredth"'),
    )
    (tmp_path / "gateway.toml").write_text(text)
    assert main(["config", "check", str(tmp_path / "gateway.toml")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "devices[0].interval: must be a number (got 'fast')" in err
    assert "devices[0].points[0].scale: must be a number (got 'hundredth')" in err
    assert "devices[0].bus: no bus named 'fcae'" in err


def test_gateway_config_references_of_anomaly_models_and_outputs_with_a_type_error(tmp_path):
    text = _edit((DEMO / "gateway.toml").read_text(), ("interval = 1.0", "interval = -1"))
    text += (
        '\n[[outputs]]\nname = "ch4_face_1"\ndevice = "nowhere"\npoints = ["no_point"]\n'
        'table = "coil"\naddress = 0\n'
    )
    (tmp_path / "gateway.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "gateway.toml")
    errors = caught.value.errors
    assert "devices[0].interval: must be at least 0.05 (got -1)" in errors
    assert "outputs[0].name: output name 'ch4_face_1' is also a point name" in errors
    assert any(e.startswith("outputs[0].device: no device named 'nowhere'") for e in errors)
    assert "outputs[0].points[0]: no point named 'no_point'" in errors


def test_a_valid_config_still_has_its_references_checked(tmp_path):
    text = _edit(
        (DEMO / "gateway.toml").read_text(), ('name = "tank1_temp"', 'name = "ch4_face_1"')
    )
    (tmp_path / "gateway.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "gateway.toml")
    assert any("point name 'ch4_face_1' is used more than once" in e for e in caught.value.errors)


def test_manifest_type_errors_and_an_unknown_bus_at_once(tmp_path, capsys):
    manifest = tmp_path / "manifest.toml"
    shutil.copy(EXAMPLE_MANIFEST, manifest)
    manifest.write_text(
        _edit(
            manifest.read_text(),
            ('bus = "level_gauge"', 'bus = "level_gage"'),
            ("scale = 0.1", 'scale = "tenth"'),
            ('id = "gw-loading"', 'id = "gw-tank-a"'),
        )
    )
    assert main(["provision", str(manifest), "--out", str(tmp_path / "out")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "gateways[0].devices[0].points[0].scale: must be a number" in err
    assert "gateways[1].devices[0].bus: no bus named 'level_gage'" in err
    assert "gateways[1].id: gateway id 'gw-tank-a' is used more than once" in err


def test_site_file_type_errors_and_an_unknown_bus_at_once(tmp_path):
    text = (DEMO / "site.toml").read_text()
    bus_line = next(line for line in text.splitlines() if line.startswith("bus = "))
    unit_line = next(line for line in text.splitlines() if line.startswith("unit = "))
    (tmp_path / "site.toml").write_text(
        _edit(text, (bus_line, 'bus = "no_such_bus"'), (unit_line, 'unit = "one"'))
    )
    with pytest.raises(ConfigError) as caught:
        load_site(tmp_path / "site.toml")
    errors = caught.value.errors
    assert any(e.startswith("devices[0].unit: must be a whole number") for e in errors), errors
    assert any(e.startswith("devices[0].bus: no bus named 'no_such_bus'") for e in errors), errors
