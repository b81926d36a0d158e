"""Rebaseline end to end: the crew's `watchpost anomaly rebaseline MODEL` and the platform's
`cmd/anomaly_rebaseline` against the real daemon (a simulated pump house over Modbus TCP on
loopback, a real Mosquitto): the event reaches the broker through the store, the model
calibrates anew, and a restart before the new calibration is complete calibrates anew too."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Subscriber
from tests.kit.platform import Platform
from tests.kit.processes import cli
from tests.site_run import stop
from tests.test_anomaly_e2e import ROOT, PumpHouse, entry

CALIBRATION_ROWS = 80  # calibration_s = 16 at period_s = 0.2 (tests/test_anomaly_e2e.py)


@pytest.fixture
def house(broker, tmp_path: Path) -> Iterator[PumpHouse]:
    """The pump house with one model over flow and pressure, stopped at the end."""
    made = PumpHouse(tmp_path, broker, site_extra="", models=entry("pump", ["flow", "pressure"]))
    yield made
    made.close()


def model_state(got: list[dict[str, Any]]) -> dict[str, Any] | None:
    return got[-1]["anomaly"]["models"].get("pump") if got else None


def rebaseline_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # from the config's folder: its paths (var/control.sock) are the daemon's, from there
    command = ["anomaly", "rebaseline", *args, "--config", str(config)]
    return cli(*command, cwd=config.parent, timeout=30)


def wait_calibrated(
    sub: Subscriber, calibrated: bool, timeout: float, after: int = 0
) -> dict[str, Any]:
    """The model's state in the first `health` (after the first ``after``) that shows it
    ``calibrated`` or not."""

    def seen(got: list[dict[str, Any]]) -> bool:
        state = model_state(got[after:])
        return state is not None and state["calibrated"] is calibrated

    got = sub.wait_for(ROOT + "health", timeout=timeout, predicate=seen)
    state = model_state(got[after:])
    assert state is not None
    return state


def rebaselines(sub: Subscriber) -> list[dict[str, Any]]:
    return [m for m in sub.get(ROOT + "anomalies") if m["event"] == "rebaseline"]


@pytest.mark.slow
def test_rebaseline_from_crew_and_platform_is_recorded_and_survives_a_restart(
    broker, subscriber, house, validate
):
    sub: Subscriber = subscriber(ROOT + "#")
    config = house.folder / "gateway.toml"
    state = house.folder / "var" / "anomaly" / "pump.json"
    wait_calibrated(sub, True, timeout=45)
    assert state.exists()

    # the crew, at the cabinet
    done = rebaseline_cli(config, "pump", "--by", "crew-li")
    assert done.returncode == 0, done.stderr + house.log("gateway")
    assert done.stdout.startswith("pump: "), done.stdout
    assert f" {CALIBRATION_ROWS} " in done.stdout
    assert not state.exists()  # forgotten on disk before the answer
    sub.wait_for(ROOT + "anomalies", timeout=10, predicate=lambda got: rebaselines(sub))
    [by_crew] = rebaselines(sub)
    validate("anomalies", by_crew)
    assert by_crew["by"] == "crew-li"
    assert by_crew["model"] == "pump"
    assert by_crew["points"] == ["flow", "pressure"]
    assert "score" not in by_crew
    calibrating = wait_calibrated(sub, False, timeout=10)
    assert calibrating["calibration_rows"][1] == CALIBRATION_ROWS

    # a name that is not configured: refused, naming the configured ones, nothing recorded
    wrong = rebaseline_cli(config, "pumpp", "--by", "crew-li")
    assert wrong.returncode == 1
    assert "'pumpp'" in wrong.stderr
    assert "pump" in wrong.stderr.replace("'pumpp'", "")

    # the platform
    platform = Platform(broker, sub, ROOT)
    try:
        reply = platform.send("anomaly_rebaseline", {"model": "pump", "by": "platform-ops"})
        validate("reply", reply)
        assert reply["ok"] is True, reply
        assert reply["result"] == {"model": "pump", "calibration_rows": CALIBRATION_ROWS}
        refused = platform.send("anomaly_rebaseline", {"model": "nope", "by": "platform-ops"})
        validate("reply", refused)
        assert refused["ok"] is False
        assert "'nope'" in refused["error"]
        malformed = platform.send("anomaly_rebaseline", {"by": "platform-ops"})
        assert malformed["ok"] is False
        assert "model" in malformed["error"]
    finally:
        platform.close()
    sub.wait_for(ROOT + "anomalies", timeout=10, predicate=lambda got: len(rebaselines(sub)) == 2)
    by_platform = rebaselines(sub)[1]
    validate("anomalies", by_platform)
    assert by_platform["by"] == "platform-ops"

    # a restart before the new calibration is complete (16 s) calibrates anew, too
    assert stop(house.gateway) == 0, house.log("gateway")
    assert not state.exists()
    before = len(sub.get(ROOT + "health"))
    house.start_gateway_with(config)
    restarted = wait_calibrated(sub, False, timeout=20, after=before)
    assert restarted["calibration_rows"][1] == CALIBRATION_ROWS
    wait_calibrated(sub, True, timeout=45, after=before)
    assert state.exists()
    assert stop(house.gateway) == 0, house.log("gateway")

    # recorded once each, in order, through the store: no gap, no duplicate
    anomalies = sub.get(ROOT + "anomalies")
    assert [m["seq"] for m in anomalies] == list(range(1, len(anomalies) + 1))
    assert [m["by"] for m in rebaselines(sub)] == ["crew-li", "platform-ops"]
