"""The platform view of `watchpost monitor`: readings, alarm lines and seq gap detection."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from paho.mqtt import publish

from watchpost.display import Resolution
from watchpost.monitor import PlatformView

ROOT = "watchpost/v1/site/gw/"


def message(stream: str, seq: int, **body) -> bytes:
    return json.dumps(
        {"gateway": "gw", "stream": stream, "seq": seq, "ts": 1_700_000_000_000, **body}
    ).encode()


def test_readings_alarms_and_gaps():
    view = PlatformView(units={"ch4": "%CH4"})
    view.receive(
        ROOT + "telemetry",
        message(
            "telemetry",
            1,
            samples=[{"point": "ch4", "ts": 1_700_000_000_000, "value": 0.42, "quality": "good"}],
        ),
    )
    lines = view.receive(ROOT + "telemetry", message("telemetry", 3, samples=[]))
    assert lines == ["GAP in telemetry: expected seq 2, got 3"]
    [alarm] = view.receive(
        ROOT + "alarms",
        message(
            "alarms",
            1,
            event="raised",
            alarm="ch4/high_alarm",
            level="alarm",
            value=1.034567,
            threshold=1.0,
            sample_ts=1_700_000_000_000,
            replay=True,
        ),
    )
    assert "ch4/high_alarm" in alarm
    assert "value=1.034567" in alarm  # no config: the value as it came, 7 digits at most
    assert alarm.endswith("(replay)")
    screen = view.screen("mqtt://127.0.0.1:1883")
    assert " 0.42 " in screen
    assert "%CH4" in screen
    counters = view.streams["gw/telemetry"]
    assert (counters.messages, counters.last_seq, counters.gaps) == (2, 3, 1)
    assert view.streams["gw/alarms"].replayed == 1
    assert view.receive(ROOT + "alarms", b"not json") == []


def test_values_at_the_points_resolution_and_a_line_per_reading():
    view = PlatformView(units={"ch4": "%CH4"}, formats={"ch4": Resolution(2)}, every_reading=True)
    lines = view.receive(
        ROOT + "telemetry",
        message(
            "telemetry",
            1,
            samples=[
                {
                    "point": "ch4",
                    "ts": 1_700_000_000_000,
                    "value": 1.8900000000000001,
                    "quality": "good",
                },
                {
                    "point": "fan_energy",
                    "ts": 1_700_000_000_000,
                    "value": 48213.55,
                    "quality": "good",
                },
            ],
        ),
    )
    assert lines == [
        "22:13:20 gw ch4 = 1.89 %CH4 (good)",
        "22:13:20 gw fan_energy = 48213.55 (good)",
    ]
    [alarm] = view.receive(
        ROOT + "alarms",
        message(
            "alarms",
            1,
            event="raised",
            alarm="ch4/high_alarm",
            level="alarm",
            value=1.8900000000000001,
            threshold=1.0,
        ),
    )
    assert "value=1.89 threshold=1.00" in alarm


def test_monitor_prints_lines_when_its_output_is_not_a_terminal(broker):
    monitor = subprocess.Popen(
        [sys.executable, "-m", "watchpost", "monitor", "--broker", broker.url, "--seconds", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.5)  # subscribed by then
        publish.single(
            ROOT + "telemetry",
            message(
                "telemetry",
                1,
                samples=[
                    {"point": "ch4", "ts": 1_700_000_000_000, "value": 0.42, "quality": "good"}
                ],
            ),
            hostname=broker.host,
            port=broker.port,
        )
        out, err = monitor.communicate(timeout=30)
    finally:
        monitor.kill()
    assert monitor.returncode == 0, err
    assert "gw ch4 = 0.42 (good)" in out
    assert "\x1b[" not in out  # no screen drawing into a pipe
