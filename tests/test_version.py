"""`watchpost version`: what runs, and what the update guard's state says about it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kit.processes import cli
from watchpost import __version__
from watchpost.models import SHIPPED_MODEL, shipped_model_path
from watchpost.version import update_info

REPO = Path(__file__).resolve().parents[1]


def test_version_json_names_the_libraries_and_the_model() -> None:
    result = cli("version", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    card = json.loads(shipped_model_path().with_suffix(".json").read_text())
    assert info["version"] == __version__
    assert info["architecture"] == "source"  # not installed from a Debian package
    assert info["libraries"]["numpy"].startswith("1.")
    assert {"pydantic", "pymodbus", "paho-mqtt"} <= set(info["libraries"])
    assert {"tflite-runtime", "ai-edge-litert"} & set(info["libraries"])
    assert info["model"] == {"id": SHIPPED_MODEL, "sha256": card["sha256"]}


def test_a_rollback_is_reported_only_by_the_version_it_led_to(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    rollback = {"from": "9.9.9", "to": __version__, "reason": "not up within 180 s", "ts_ms": 5}
    state.write_text(json.dumps({"previous": "9.9.9", "last_rollback": rollback}))
    info = update_info(state)
    assert info["previous"] == "9.9.9"
    assert info["rolled_back_from"] == "9.9.9"
    assert info["rollback_reason"] == "not up within 180 s"
    state.write_text(json.dumps({"last_rollback": {**rollback, "to": "0.0.1"}}))
    assert update_info(state)["rolled_back_from"] is None
    assert update_info(tmp_path / "missing.json")["rolled_back_from"] is None
