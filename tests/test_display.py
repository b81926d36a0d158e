"""Values as a crew reads them (``display``) and strict JSON (``textout``)."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import pytest

from tests.site_run import DEMO
from watchpost.config import load_config
from watchpost.crew_output import print_read
from watchpost.display import Resolution, format_number, formats_of
from watchpost.textout import dumps, print_json


@pytest.mark.parametrize(
    ("value", "decimals", "shown"),
    [
        (-12345, 0, "-12345"),
        (65535.0, 0, "65535"),
        (48213.55, 2, "48213.55"),
        (1.8900000000000001, 2, "1.89"),
        (1.8900000000000001, None, "1.89"),
        (4294967.295, 3, "4294967.295"),
        (0.0001234, None, "0.0001234"),
        (123456789.0, None, "123456789"),
        (-0.001, 1, "0"),
        (1e16, 0, "1.000000e+16"),
        (2.5e-9, None, "2.500000e-09"),
        (float("nan"), None, "nan"),
    ],
)
def test_numbers_without_exponent_for_ordinary_magnitudes(value, decimals, shown):
    assert format_number(value, decimals) == shown


def test_a_points_resolution_follows_its_config():
    formats = formats_of(load_config(DEMO / "gateway.toml"))
    assert formats["ch4_face_1"] == Resolution(2)  # uint16, scale 0.01
    assert formats["co_face_1"] == Resolution(1)  # scale 0.1
    assert formats["fan_run_hours"] == Resolution(3)  # uint32, scale 0.001
    assert formats["fan_on"] == Resolution(0)  # uint16, scale 1
    assert formats["tank1_level"] == Resolution()  # float32: no fixed resolution
    assert formats["vent_running"] == Resolution(boolean=True)
    assert formats["ch4_face_1"].format(1.8900000000000001) == "1.89"
    assert formats["ch4_face_1"].format(1.8) == "1.80"
    assert formats["vent_running"].format(1.0) == "on"
    assert formats["fan_on"].format(None) == "-"


def test_json_is_strict():
    text = dumps({"values": [float("nan"), float("inf"), 1.5], "nested": {"x": -math.inf}})
    assert json.loads(text, parse_constant=_refuse) == {
        "values": [None, None, 1.5],
        "nested": {"x": None},
    }


def test_read_prints_nan_as_null_in_json_and_as_nan_in_its_table():
    result = {
        "addresses": [0, 2],
        "raw": [[0x7FC0, 0], [0x4049, 0x0FDB]],
        "values": [math.nan, 3.1415927],
    }
    out = io.StringIO()
    with redirect_stdout(out):
        print_json(result)
        print_read(result)
    text = out.getvalue()
    assert "NaN" not in text
    assert '"values": [\n    null,\n    3.1415927\n  ]' in text
    assert "3.141593" in text  # the table: 7 significant digits


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")
