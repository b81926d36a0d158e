"""Anomaly models in the running daemon, end to end: a simulated pump house (Modbus TCP on
loopback) with injected sensor faults, the gateway daemon with an `[anomaly]` section, a
real Mosquitto, and a subscriber standing in for the platform."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, Subscriber
from tests.site_run import SimulatedSite, stop

SITE, GATEWAY = "pump-house", "gw-anomaly"
ROOT = f"watchpost/v1/{SITE}/{GATEWAY}/"
POLL_S = 0.1  # the gateway polls the pump station ten times a second
FAULT_AT = 26.0  # seconds after the simulator is ready: the models are calibrated by then
CALIBRATION = """\
period_s = 0.2
calibration_s = 16
drift_lag_s = 2
hold_s = 1
clear_s = 2
"""

SITE_TOML = """\
[site]
name = "pump-house"
seed = 11
tick = 0.05

[[buses]]
type = "modbus_tcp"
name = "plant"
port = 0

[[devices]]
name = "pump-station"
bus = "plant"
unit = 1

[[devices.points]]
name = "flow"
table = "input"
address = 0
type = "int16"
scale = 0.01
signal = {{ kind = "wander", base = 30.0, noise = 0.3, tau = 0.3 }}

[[devices.points]]
name = "pressure"
table = "input"
address = 1
type = "int16"
scale = 0.01
signal = {{ kind = "wander", base = 5.0, noise = 0.05, tau = 0.3 }}

[[devices.points]]
name = "temp"
table = "input"
address = 2
type = "int16"
scale = 0.01
signal = {{ kind = "wander", base = 40.0, noise = 0.2, tau = 0.3 }}

[[devices.points]]
name = "level"
table = "input"
address = 3
type = "int16"
scale = 0.01
signal = {{ kind = "wander", base = 2.0, noise = 0.02, tau = 0.3 }}

[[devices.points]]
name = "ch4"
table = "input"
address = 4
type = "int16"
scale = 0.01
marks = [1.0]
signal = {{ kind = "wander", base = 0.3, noise = 0.01, tau = 0.3 }}
{extra}
"""

FAULTS = f"""
[[faults]]
kind = "drift"
point = "flow"
rate = 0.3
start = {FAULT_AT}

[[faults]]
kind = "stuck"
point = "temp"
start = {FAULT_AT}
"""

GAS_RAMP = f"""
[[script]]
at = {FAULT_AT}
name = "gas rises"
changes = [{{ point = "ch4", to = 1.9, over = 8 }}]
"""

GATEWAY_TOML = """\
[gateway]
site = "{site}"
id = "{gateway}"

[uplink]
broker = "{broker}"
health_interval = 1.0

[store]
path = "var/buffer.db"

[control]
socket = "var/control.sock"

[[buses]]
type = "modbus_tcp"
name = "plant"
host = "127.0.0.1"
port = {port}

[[devices]]
name = "pump-station"
bus = "plant"
unit = 1
interval = {poll}
timeout = 1.0
{points}
[anomaly]
{models}
"""

POINT = """
[[devices.points]]
name = "{name}"
table = "input"
address = {address}
type = "int16"
scale = 0.01
"""

CH4_ALARM = """
[[devices.points.alarms]]
kind = "high"
level = "alarm"
threshold = 1.0
deadband = 0.1
"""


class PumpHouse(SimulatedSite):
    """The simulated pump house and a gateway daemon watching it, in ``folder``."""

    def __init__(self, folder: Path, broker: Broker, *, site_extra: str, models: str) -> None:
        super().__init__(folder, SITE_TOML.format(extra=site_extra))
        points = "".join(
            POINT.format(name=name, address=i) + (CH4_ALARM if name == "ch4" else "")
            for i, name in enumerate(["flow", "pressure", "temp", "level", "ch4"])
        )
        config = folder / "gateway.toml"
        config.write_text(
            GATEWAY_TOML.format(
                site=SITE,
                gateway=GATEWAY,
                broker=broker.url,
                poll=POLL_S,
                points=points,
                port=self.events["buses"]["plant"]["port"],
                models=models,
            )
        )
        self.ready_at = float(self.events["started_at"])
        self.start_gateway_with(config)


@pytest.fixture
def pump_house(tmp_path: Path):
    """``pump_house(broker, site_extra=..., models=...)``, stopped at the end of the test."""
    made: list[PumpHouse] = []

    def make(broker: Broker, **kwargs: str) -> PumpHouse:
        made.append(PumpHouse(tmp_path, broker, **kwargs))
        return made[-1]

    yield make
    for house in made:
        house.close()


def entry(name: str, points: list[str], extra: str = "") -> str:
    return (
        f'[[anomaly.models]]\nname = "{name}"\npoints = {json.dumps(points)}\n'
        f"{CALIBRATION}{extra}\n"
    )


def wall_time_of(message: Any) -> float:
    """paho stamps each message with time.monotonic() on arrival."""
    return time.time() - (time.monotonic() - message.timestamp)


@pytest.mark.slow
def test_drift_and_stuck_sensor_raise_anomaly_events_at_the_broker(
    broker, subscriber, pump_house, validate
):
    sub: Subscriber = subscriber(ROOT + "#")
    house = pump_house(
        broker,
        site_extra=FAULTS,
        models=(
            entry("flow-pressure", ["flow", "pressure"]) + entry("temp-level", ["temp", "level"])
        ),
    )

    def both_raised(got: list[dict[str, Any]]) -> bool:
        return {m["model"] for m in got if m["event"] == "raised"} >= {
            "flow-pressure",
            "temp-level",
        }

    sub.wait_for(ROOT + "anomalies", timeout=FAULT_AT + 30, predicate=both_raised)
    assert stop(house.gateway) == 0, house.log("gateway")

    anomalies = sub.get(ROOT + "anomalies")
    for message in anomalies:
        validate("anomalies", message)
        assert message["gateway"] == GATEWAY
    assert [m["seq"] for m in anomalies] == list(range(1, len(anomalies) + 1))
    raised = {m["model"]: m for m in anomalies if m["event"] == "raised"}
    fault_time = house.ready_at + FAULT_AT
    for model, point in (("flow-pressure", "flow"), ("temp-level", "temp")):
        event = raised[model]
        assert event["points"][0] == point, event
        assert event["score"] > event["threshold"]
        # raised after the fault began, never during the calibration or the quiet time
        assert fault_time <= event["ts"] / 1000 <= fault_time + 20, (event, fault_time)


@pytest.mark.slow
def test_slow_model_does_not_delay_alarms(broker, subscriber, pump_house, validate):
    """The model takes 1 s per 0.2 s row (five times slower than real time) while the gas
    rises: the gas alarm reaches the platform as fast as the poll allows all the same."""
    sub: Subscriber = subscriber(ROOT + "#")
    house = pump_house(
        broker,
        site_extra=GAS_RAMP,
        models=entry("all", ["flow", "pressure", "temp", "level", "ch4"], "test_latency_s = 1.0\n"),
    )

    sub.wait_for(
        ROOT + "alarms",
        timeout=FAULT_AT + 20,
        predicate=lambda got: any(m["point"] == "ch4" and m["event"] == "raised" for m in got),
    )
    crossing = house.crossing("ch4", 1.0)
    assert crossing is not None, "the simulator announced no crossing"
    [raised] = [
        m
        for m in sub.raw
        if m.topic == ROOT + "alarms" and json.loads(m.payload)["event"] == "raised"
    ]
    body = json.loads(raised.payload)
    validate("alarms", body)
    # noise may cross a little early; late only by a poll period and the way to the broker
    assert -1.0 < wall_time_of(raised) - crossing <= POLL_S + 1.0
    assert body["decided_ts"] - body["sample_ts"] <= 100
    assert abs(body["sample_ts"] / 1000 - crossing) <= POLL_S + 1.0

    # the model really was in use, and far behind, while the alarm went through
    sub.wait_for(
        ROOT + "health",
        timeout=5,
        predicate=lambda got: any(wall_time_of_health(m) > crossing for m in got),
    )
    health = sub.get(ROOT + "health")[-1]["anomaly"]
    model = health["models"]["all"]
    assert model["calibrated"], health
    assert model["score"] is not None, health
    calibrated_at = house.ready_at + 16  # at the earliest
    rows_since = (time.time() - calibrated_at) / 0.2
    assert health["rows_scored"] < rows_since / 2, (health, rows_since)
    assert stop(house.gateway) == 0, house.log("gateway")


def wall_time_of_health(message: dict[str, Any]) -> float:
    return message["ts"] / 1000
