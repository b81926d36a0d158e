"""alarms.json that cannot be used, and shelves whose end is not a number.

A shelf ending at NaN, Infinity or 1e400 is refused before it touches the engine; a state
file that does not validate is moved aside and reported as the latched `state_damaged`
fault, and the daemon starts: never a crash loop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import alarm, gas, gas_gateway, write_config
from tests.kit.control import wait_status
from tests.kit.processes import running_gateway
from tests.modbus_servers import MisshapenAnswers
from watchpost.alarm_state import AlarmStateFile
from watchpost.alarms import AlarmEngine
from watchpost.config.alarms import ThresholdRule
from watchpost.control import ControlError, request
from watchpost.samples import Quality, Sample

ROOT = "watchpost/v1/state-site/gw-a/"
T0 = 1_700_000_000_000

BAD_FILES = {
    "not_json": b'{"version": 1, "alarms": {',
    "alarms_null": b'{"version": 1, "alarms": null}',
    "text_for_a_number": b'{"version": 1, "alarms": {"gas_a/high_alarm": {"raised": true, '
    b'"shelved_until": "tomorrow"}}}',
    "nan_shelf": b'{"version": 1, "alarms": {"gas_a/high_alarm": {"raised": true, '
    b'"shelved_until": NaN}}}',
    "infinite_value": b'{"version": 1, "alarms": {"gas_a/high_alarm": {"value": Infinity}}}',
    "other_version": b'{"version": 7, "alarms": {}}',
    "a_list": b"[1, 2, 3]",
    "deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_an_unusable_state_file_is_moved_aside_and_named(tmp_path: Path, name: str) -> None:
    path = tmp_path / "alarms.json"
    path.write_bytes(BAD_FILES[name])
    state = AlarmStateFile(path)
    assert state.load() is None
    assert state.damage is not None
    assert state.damage.reason
    assert state.damage.moved_to is not None
    assert state.damage.moved_to.read_bytes() == BAD_FILES[name]
    assert not path.exists()


def test_a_good_state_file_loads_and_a_missing_one_is_no_damage(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    state = AlarmStateFile(path)
    assert state.load() is None
    assert state.damage is None
    state.save({"version": 1, "alarms": {"p/high_alarm": {"raised": True, "raised_ts": T0}}})
    loaded = state.load()
    assert loaded is not None
    assert loaded["alarms"]["p/high_alarm"]["raised"] is True
    assert state.damage is None


def test_the_state_file_is_never_written_with_nan(tmp_path: Path) -> None:
    state = AlarmStateFile(tmp_path / "alarms.json")
    with pytest.raises(ValueError, match="not JSON compliant"):
        state.save({"version": 1, "alarms": {"p/high_alarm": {"value": math.nan}}})


def test_state_damaged_is_a_latched_fault_that_an_acknowledgement_clears() -> None:
    engine = AlarmEngine({"p": [ThresholdRule(kind="high", threshold=1.0)]}, lambda: T0)
    [raised] = engine.report_state_damaged(reason="not JSON", moved_to="/x/alarms.json.d")
    body = raised.body()
    assert (body["alarm"], body["kind"], body["level"], body["event"]) == (
        "gateway/state_damaged",
        "state_damaged",
        "fault",
        "raised",
    )
    assert (body["reason"], body["moved_to"], body["latch"]) == (
        "not JSON",
        "/x/alarms.json.d",
        True,
    )
    assert [a["alarm"] for a in engine.active()] == ["gateway/state_damaged"]
    events = engine.acknowledge("gateway/state_damaged", by="crew")
    assert [e.event for e in events] == ["acknowledged", "cleared"]
    assert engine.active() == []
    engine.evaluate([Sample("p", T0, 0.5, Quality.GOOD)])  # nothing else moved


# -- against the daemon ----------------------------------------------------------------------


def gateway(folder: Path, broker: str, port: int) -> Path:
    """gas_a in %LEL (register / 100), high alarm at 10, shelves of up to 600 s."""
    config = gas_gateway(
        broker,
        port,
        gas("gas_a", 0, alarm("high", threshold=10.0, max_shelve=600)),
        site="state-site",
        gateway_id="gw-a",
        interval=0.2,
    )
    return write_config(folder / "gateway.toml", config)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nan_shelf", "alarms_null", "text_for_a_number"])
def test_the_daemon_starts_on_an_unusable_state_file_and_reports_it(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], name: str
) -> None:
    state = tmp_path / "var" / "alarms.json"
    state.parent.mkdir()
    state.write_bytes(BAD_FILES[name])
    sub = subscriber(ROOT + "alarms", ROOT + "telemetry")
    with MisshapenAnswers({1: "exact"}, value=500) as server:  # 5 %LEL: normal
        config = gateway(tmp_path, broker.url, server.port)
        for run in range(2):  # and once more: no crash loop, no second report
            with running_gateway(config) as process:
                status = wait_status(tmp_path / "var" / "control.sock")
                assert status["daemon"] == "running"
                sub.wait_for(ROOT + "telemetry", count=run + 1, timeout=20)
                assert process.poll() is None
    faults = [m for m in sub.get(ROOT + "alarms") if m["kind"] == "state_damaged"]
    assert len(faults) == 1, faults
    [fault] = faults
    assert (fault["level"], fault["event"], fault["point"]) == ("fault", "raised", "gateway")
    assert Path(fault["moved_to"]).read_bytes() == BAD_FILES[name]
    assert fault["reason"]
    saved = json.loads(state.read_text())  # the new file is valid, and keeps the fault latched
    assert saved["alarms"]["gateway/state_damaged"]["raised"] is True


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [math.nan, math.inf, 1e400, -math.inf])
def test_a_shelf_ending_at_nan_or_infinity_changes_nothing(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], minutes: float
) -> None:
    sub = subscriber(ROOT + "alarms")
    sock = tmp_path / "var" / "control.sock"
    with MisshapenAnswers({1: "exact"}, value=1500) as server:  # 15 %LEL: raised
        config = gateway(tmp_path, broker.url, server.port)
        with running_gateway(config):
            wait_status(sock)
            sub.wait_for(
                ROOT + "alarms", predicate=lambda ms: any(m["event"] == "raised" for m in ms)
            )
            with pytest.raises(ControlError) as refused:
                request(
                    sock, "shelve", alarm="gas_a/high_alarm", by="crew", reason="x", minutes=minutes
                )
            assert "Traceback" not in str(refused.value)
            [state] = wait_status(sock)["alarms"]
            assert state["state"] == "unacknowledged"
            assert state["shelved_until"] is None
            time.sleep(1.5)  # the housekeeper saves within a second of a change
        saved = json.loads(
            (tmp_path / "var" / "alarms.json").read_text(), parse_constant=pytest.fail
        )
        assert saved["alarms"]["gas_a/high_alarm"]["shelved_until"] is None
        with running_gateway(config):  # the next start is a start
            assert wait_status(sock)["alarms"][0]["state"] == "unacknowledged"
    assert not [m for m in sub.get(ROOT + "alarms") if m["event"] == "shelved"]
