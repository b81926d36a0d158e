"""The platform view of `watchpost monitor`: readings, alarm lines and seq gap detection."""

from __future__ import annotations

import json

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
    assert "value=1.035" in alarm
    assert alarm.endswith("(replay)")
    screen = view.screen("mqtt://127.0.0.1:1883")
    assert "0.420" in screen
    assert "%CH4" in screen
    counters = view.streams["gw/telemetry"]
    assert (counters.messages, counters.last_seq, counters.gaps) == (2, 3, 1)
    assert view.streams["gw/alarms"].replayed == 1
    assert view.receive(ROOT + "alarms", b"not json") == []
