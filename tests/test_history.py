"""The commissioning history: per-minute aggregates, alarm events, communication counters,
retention and damaged files, on a fake clock."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kit.clock import FakeClock
from watchpost.alarms import AlarmEngine
from watchpost.config.alarms import ThresholdRule
from watchpost.config.history import HistoryConfig
from watchpost.history import MINUTE_MS, HistoryRecorder, NoHistoryError, history_path, read_history
from watchpost.samples import Quality, Sample

T0 = 1_700_000_040_000  # a minute boundary (UTC epoch ms)
assert T0 % MINUTE_MS == 0


@dataclass
class Health:
    polls: int = 0
    failures: int = 0


def good(point: str, ts: int, value: float) -> Sample:
    return Sample(point, ts, value, Quality.GOOD)


def make(
    tmp_path: Path,
    clock: FakeClock,
    devices: dict[str, Health] | None = None,
    retention_days: float = 30,
) -> HistoryRecorder:
    return HistoryRecorder(
        tmp_path / "history.db",
        retention_days=retention_days,
        devices=(lambda: devices) if devices is not None else None,
        now_ms=clock,
    )


def test_minute_aggregates_of_good_and_failed_samples(tmp_path):
    clock = FakeClock(T0)
    rec = make(tmp_path, clock)
    rec.observe([good("ch4", T0 + 1000, 0.5), good("co", T0 + 1000, 10.0)])
    rec.observe([good("ch4", T0 + 2000, 0.9), Sample("ch4", T0 + 3000, None, Quality.COMM)])
    rec.observe(
        [
            Sample("ch4", T0 + 4000, None, Quality.BAD),
            Sample("ch4", T0 + 4500, 99.0, Quality.BAD),  # implausible: not in min/max
            Sample("ch4", T0 + 5000, None, Quality.STALE),
            good("ch4", T0 + 6000, 0.7),
        ]
    )
    rec.observe([good("ch4", T0 + MINUTE_MS + 1, 2.0)])  # the next minute
    clock.ms = T0 + 2 * MINUTE_MS
    rec.flush()
    rec.close()
    history = read_history(tmp_path / "history.db")
    first, second = history.points["ch4"]
    assert (first.minute, first.good, first.bad, first.comm, first.stale) == (
        T0 // MINUTE_MS,
        3,
        2,
        1,
        1,
    )
    assert first.low == 0.5
    assert first.high == 0.9
    assert first.mean == pytest.approx(0.7)
    assert (second.good, second.low, second.mean, second.high) == (1, 2.0, 2.0, 2.0)
    assert history.points["co"][0].mean == 10.0
    assert history.first_ms == T0
    assert history.last_ms == T0 + 2 * MINUTE_MS


def test_a_minute_written_in_two_pieces_is_merged_exactly(tmp_path):
    clock = FakeClock(T0 + 20_000)
    rec = make(tmp_path, clock)
    rec.observe([good("p", T0 + 1000, 4.0), Sample("p", T0 + 1500, None, Quality.COMM)])
    rec.flush()  # mid-minute (a shutdown): the rest of the minute comes later
    rec.observe([good("p", T0 + 30_000, 1.0), good("p", T0 + 40_000, 7.0)])
    rec.flush()
    rec.observe([Sample("q", T0 + 2000, None, Quality.COMM)])  # no good value at all
    rec.flush()
    rec.observe([Sample("q", T0 + 3000, None, Quality.BAD)])
    rec.close()
    history = read_history(tmp_path / "history.db")
    (row,) = history.points["p"]
    assert (row.good, row.comm, row.low, row.high) == (3, 1, 1.0, 7.0)
    assert row.mean == pytest.approx(4.0)
    (empty,) = history.points["q"]
    assert (empty.good, empty.comm, empty.bad, empty.low, empty.mean, empty.high) == (
        0,
        1,
        1,
        None,
        None,
        None,
    )


def test_nothing_is_written_on_the_poll_path(tmp_path):
    rec = make(tmp_path, FakeClock(T0))
    rec.observe([good("p", T0 + i, float(i)) for i in range(1000)])
    assert not (tmp_path / "history.db").exists()
    rec.close()
    assert (tmp_path / "history.db").exists()


def test_alarm_events_are_recorded_as_the_engine_emits_them(tmp_path):
    clock = FakeClock(T0)
    rec = make(tmp_path, clock)
    engine = AlarmEngine({"ch4": [ThresholdRule(kind="high", threshold=1.0, deadband=0.1)]}, clock)
    engine.add_listener(rec.record_alarm)
    clock.ms = T0 + 5000
    engine.evaluate([good("ch4", T0 + 5000, 1.2)])
    clock.ms = T0 + 6000
    engine.acknowledge("ch4/high_alarm", by="ops", note="checked at the face")
    clock.ms = T0 + 70_000
    engine.evaluate([good("ch4", T0 + 70_000, 0.5)])
    rec.close()
    alarms = read_history(tmp_path / "history.db").alarms
    assert [(a["event"], a["alarm"]) for a in alarms] == [
        ("raised", "ch4/high_alarm"),
        ("acknowledged", "ch4/high_alarm"),
        ("cleared", "ch4/high_alarm"),
    ]
    assert alarms[0]["value"] == 1.2
    assert alarms[0]["threshold"] == 1.0
    assert alarms[1]["by"] == "ops"


def test_device_counters_per_minute(tmp_path):
    clock = FakeClock(T0 + 500)
    devices = {"face": Health(polls=3, failures=1), "tank": Health()}
    rec = make(tmp_path, clock, devices)  # counts before the recorder started are not its own
    devices["face"].polls, devices["face"].failures = 60, 1
    devices["tank"].polls, devices["tank"].failures = 60, 20
    clock.ms = T0 + MINUTE_MS + 500  # the flush just after the boundary
    rec.flush()
    devices["face"].polls = 118
    devices["tank"].polls, devices["tank"].failures = 120, 80
    clock.ms = T0 + 2 * MINUTE_MS + 500
    rec.flush()
    devices["face"] = Health(polls=5, failures=0)  # the daemon restarted: counters anew
    clock.ms = T0 + 3 * MINUTE_MS + 500
    rec.close()
    comm = read_history(tmp_path / "history.db").comm
    base = T0 // MINUTE_MS
    assert [(r.minute - base, r.polls, r.failures) for r in comm["face"]] == [
        (0, 57, 0),
        (1, 58, 0),
        (2, 5, 0),
    ]
    assert [(r.minute - base, r.polls, r.failures) for r in comm["tank"]] == [
        (0, 60, 20),
        (1, 60, 60),
    ]


def test_retention_deletes_what_is_older(tmp_path):
    clock = FakeClock(T0)
    rec = make(tmp_path, clock, retention_days=1)
    day = 86_400_000
    rec.observe([good("p", T0, 1.0)])
    rec.flush()
    clock.ms = T0 + day // 2
    rec.observe([good("p", clock.ms, 2.0)])
    rec.flush()
    assert len(read_history(tmp_path / "history.db").points["p"]) == 2
    clock.ms = T0 + day + MINUTE_MS  # the first row is now more than a day old
    rec.observe([good("p", clock.ms, 3.0)])
    rec.flush()
    rows = read_history(tmp_path / "history.db").points["p"]
    assert [r.mean for r in rows] == [2.0, 3.0]
    rec.close()


def test_period_selection_and_no_history(tmp_path):
    with pytest.raises(NoHistoryError):
        read_history(tmp_path / "history.db")
    clock = FakeClock(T0)
    rec = make(tmp_path, clock)
    for minute in range(5):
        rec.observe([good("p", T0 + minute * MINUTE_MS, float(minute))])
    rec.close()
    rows = read_history(tmp_path / "history.db", since_ms=T0 + 2 * MINUTE_MS).points["p"]
    assert [r.mean for r in rows] == [2.0, 3.0, 4.0]
    rows = read_history(
        tmp_path / "history.db", since_ms=T0 + MINUTE_MS, until_ms=T0 + 3 * MINUTE_MS
    ).points["p"]
    assert [r.mean for r in rows] == [1.0, 2.0]
    with pytest.raises(NoHistoryError):
        read_history(tmp_path / "history.db", since_ms=T0 + 10 * MINUTE_MS)


@pytest.mark.parametrize("damage", ["garbage", "foreign_sqlite", "truncated"])
def test_a_damaged_file_is_moved_aside_and_a_fresh_history_starts(tmp_path, damage):
    path = tmp_path / "history.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all" * 200)
    elif damage == "foreign_sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE other(x)")
        conn.commit()
        conn.close()
    else:
        rec = make(tmp_path, FakeClock(T0))
        rec.observe([good("p", T0 + i * 1000, float(i)) for i in range(2000)])
        rec.close()
        data = path.read_bytes()
        path.write_bytes(data[:4096] + b"\x00" * 512 + data[4096 + 512 :])
    rec = make(tmp_path, FakeClock(T0))
    asyncio.run(_run_briefly(rec))
    assert rec.moved_to is not None
    assert rec.moved_to.exists()
    rec = make(tmp_path, FakeClock(T0))
    rec.observe([good("p", T0, 5.0)])
    rec.close()
    assert read_history(path).points["p"][0].mean == 5.0


async def _run_briefly(rec: HistoryRecorder) -> None:
    task = asyncio.create_task(rec.run())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_disk_that_refuses_writes_costs_no_crash_and_keeps_the_batch(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    blocker = folder / "history.db"
    blocker.mkdir()  # a folder where the file should be: SQLite cannot open it
    rec = HistoryRecorder(blocker, now_ms=FakeClock(T0))
    rec.observe([good("p", T0, 1.0)])
    rec.flush()  # fails, logged, kept
    assert rec.moved_to is None
    blocker.rmdir()
    rec.observe([good("p", T0 + 1000, 3.0)])
    rec.close()
    (row,) = read_history(blocker).points["p"]
    assert (row.good, row.mean) == (2, 2.0)


def test_disabled_records_nothing(tmp_path):
    config = HistoryConfig(enabled=False)
    rec = HistoryRecorder.from_config(config, state_dir=tmp_path, now_ms=FakeClock(T0))
    rec.observe([good("p", T0, 1.0)])
    asyncio.run(rec.run())
    rec.close()
    assert not (tmp_path / "history.db").exists()


def test_config_defaults_and_path():
    config = HistoryConfig()
    assert config.enabled is True
    assert config.retention_days == 30
    assert history_path(config, Path("/var/lib/watchpost")) == Path("/var/lib/watchpost/history.db")
    assert history_path(HistoryConfig(path=Path("/data/h.db")), Path("/x")) == Path("/data/h.db")
    with pytest.raises(ValueError, match="extra"):
        HistoryConfig.model_validate({"retention": 3})
    for name, info in HistoryConfig.model_fields.items():
        assert info.description, name
