"""The whole chain on real parts: simulated site (Modbus TCP and RTU on a pseudo-terminal),
the gateway daemon, a real Mosquitto, and a subscriber standing in for the platform."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.site_run import SiteRun, stop

ROOT = "watchpost/v1/demo-colliery/gw-01/"
POLL_PERIOD = 1.0  # the demo gateway polls every device once a second


def wall_time_of(message) -> float:
    """paho stamps each message with time.monotonic() on arrival."""
    return time.time() - (time.monotonic() - message.timestamp)


def alarm_messages(sub: Subscriber, alarm: str, event: str):
    return [
        m
        for m in sub.raw
        if m.topic == ROOT + "alarms"
        and f'"alarm":"{alarm}"' in m.payload.decode().replace(" ", "")
        and f'"event":"{event}"' in m.payload.decode().replace(" ", "")
    ]


@pytest.fixture
def site(tmp_path: Path):
    """``site(broker_url)``: the demo site and its gateway in ``tmp_path``, stopped at the end."""
    runs: list[SiteRun] = []

    def make(broker_url: str) -> SiteRun:
        run = SiteRun(tmp_path, broker_url)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


@pytest.mark.slow
def test_incident_alarm_reaches_the_platform_in_time_and_clears(broker, subscriber, site, validate):
    sub = subscriber(ROOT + "#")
    run = site(broker.url)
    run.start_gateway()

    sub.wait_for(
        ROOT + "alarms",
        timeout=60,
        predicate=lambda got: any(
            m["alarm"] == "ch4_face_1/high_alarm" and m["event"] == "raised" for m in got
        ),
    )
    crossing = run.crossing("ch4_face_1", 1.0, "up")
    assert crossing is not None, "the simulator announced no crossing"
    [raised] = alarm_messages(sub, "ch4_face_1/high_alarm", "raised")
    delay = wall_time_of(raised) - crossing
    # noise on the ramp may cross a little early; late must stay within a poll period + 1 s
    assert -1.0 < delay <= POLL_PERIOD + 1.0, delay

    sub.wait_for(
        ROOT + "alarms",
        timeout=60,
        predicate=lambda got: any(
            m["alarm"] == "ch4_face_1/high_alarm" and m["event"] == "cleared" for m in got
        ),
    )
    assert stop(run.gateway) == 0, run.log("gateway")

    alarms = sub.get(ROOT + "alarms")
    for message in alarms:
        validate("alarms", message)
        assert message["gateway"] == "gw-01"
    assert [m["seq"] for m in alarms] == list(range(1, len(alarms) + 1))
    events = [
        (m["event"], m["value"] >= m["threshold"])
        for m in alarms
        if m["alarm"] == "ch4_face_1/high_alarm"
    ]
    assert events == [("raised", True), ("cleared", False)]
    critical = [m["event"] for m in alarms if m["alarm"] == "ch4_face_1/high_critical"]
    assert critical[:1] == ["raised"]

    telemetry = sub.get(ROOT + "telemetry")
    assert telemetry
    for message in telemetry[:5]:
        validate("telemetry", message)
    points = {s["point"] for m in telemetry for s in m["samples"]}
    assert {"ch4_face_1", "ch4_return_1", "fan_energy", "tank1_level"} <= points
    rtu = [s for m in telemetry for s in m["samples"] if s["point"] == "ch4_return_1"]
    assert any(s["quality"] == "good" for s in rtu), "nothing read over the RTU line"
    statuses = sub.get(ROOT + "status")
    for message in statuses:
        validate("status", message)
    assert statuses[0]["state"] == "online"
    assert statuses[-1]["state"] == "offline"


@pytest.mark.slow
def test_thirty_second_outage_loses_nothing(tmp_path, persistent_broker: Broker, site, validate):
    broker = persistent_broker
    sub = Subscriber(broker, ROOT + "#", client_id="platform", persistent=True)
    try:
        run = site(broker.url)
        run.start_gateway()
        sub.wait_for(ROOT + "telemetry", count=2, timeout=30)
        broker.stop()  # t ~ 5 s: the outage spans the scripted incident (t = 15 to 35 s)
        time.sleep(30)
        assert run.gateway.poll() is None, run.log("gateway")
        restarted = time.time()
        broker.start()

        def caught_up(got) -> bool:
            seqs = {m["seq"] for m in got}
            return seqs == set(range(1, max(seqs) + 1)) and any(
                wall_time_of(m) > restarted + 2
                for m in sub.raw
                if m.topic == ROOT + "telemetry" and b'"replay"' not in m.payload
            )

        sub.wait_for(ROOT + "telemetry", timeout=60, predicate=caught_up)
        assert stop(run.gateway) == 0, run.log("gateway")
        time.sleep(1.0)
    finally:
        sub.close()

    with sqlite3.connect(tmp_path / "var" / "buffer.db") as db:
        last = dict(db.execute("SELECT stream, last_seq FROM streams"))
        pending = set(db.execute("SELECT stream, seq FROM outbox"))
    for stream in ("telemetry", "alarms"):
        got = {m["seq"] for m in sub.get(ROOT + stream)}
        missing = [
            seq
            for seq in range(1, last[stream] + 1)
            if seq not in got and (stream, seq) not in pending
        ]
        assert not missing, f"{stream}: lost {missing[:10]}"
    alarms = sub.get(ROOT + "alarms")
    raised_in_outage = [
        m for m in alarms if m["alarm"] == "ch4_face_1/high_alarm" and m["event"] == "raised"
    ]
    assert raised_in_outage, "the incident's alarm never arrived"
    assert raised_in_outage[0].get("replay") is True
    for message in alarms:
        validate("alarms", message)
    replayed = [m for m in sub.get(ROOT + "telemetry") if m.get("replay")]
    assert len(replayed) >= 20  # about one batch a second for 30 s
