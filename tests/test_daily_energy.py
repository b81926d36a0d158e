"""The daily energy figure: the reading at local midnight and the energy of each day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from watchpost.energy import DailyEnergy, DayFigure
from watchpost.samples import Quality, Sample

CST = dt.timezone(dt.timedelta(hours=8))  # China Standard Time, no daylight saving
MINUTE = 60_000


def at(day: str, hh: int, mm: int = 0) -> int:
    """Epoch ms of a local (UTC+8) time."""
    when = dt.datetime.fromisoformat(f"{day}T{hh:02d}:{mm:02d}:00").replace(tzinfo=CST)
    return int(when.timestamp() * 1000)


def meter(tmp_path: Path) -> tuple[DailyEnergy, list[DayFigure]]:
    days: list[DayFigure] = []
    energy = DailyEnergy(
        {"plant_energy": "kWh"}, days.append, state=tmp_path / "energy_days.json", tz=CST
    )
    return energy, days


def reading(ts: int, value: float, quality: Quality = Quality.GOOD) -> Sample:
    return Sample("plant_energy", ts, value, quality)


def test_a_day_read_from_midnight_to_midnight_is_complete(tmp_path):
    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 0, 1), 1000.0)])
    energy.observe([reading(at("2026-11-26", 12), 1500.0), Sample("other", 0, 5.0, Quality.GOOD)])
    assert days == []
    energy.observe([reading(at("2026-11-27", 0, 1), 2234.5)])
    [day] = days
    assert day.day == "2026-11-26"
    assert (day.start, day.end, day.energy) == (1000.0, 2234.5, 1234.5)
    assert day.complete
    assert day.unit == "kWh"
    assert day.start_ts == at("2026-11-26", 0, 1)


def test_the_day_the_gateway_started_in_is_not_complete(tmp_path):
    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 9), 1000.0)])
    energy.observe([reading(at("2026-11-27", 0, 1), 1200.0)])
    assert [(d.energy, d.complete) for d in days] == [(200.0, False)]


def test_a_gap_over_midnight_is_not_complete_and_bad_samples_do_not_count(tmp_path):
    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 0, 1), 1000.0)])
    energy.observe([reading(at("2026-11-27", 0, 1), 0.0, Quality.COMM)])
    energy.observe([reading(at("2026-11-27", 3), 1900.0)])
    [day] = days
    assert day.end == 1900.0
    assert not day.complete


def test_a_reading_that_went_down_gives_no_energy(tmp_path):
    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 0, 1), 999_990.0)])
    energy.observe([reading(at("2026-11-27", 0, 1), 12.0)])
    assert days[0].energy is None


def test_the_days_start_survives_a_restart(tmp_path):
    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 0, 2), 1000.0)])
    again, days = meter(tmp_path)  # a new process, the same state folder
    again.observe([reading(at("2026-11-26", 15), 1400.0)])
    again.observe([reading(at("2026-11-27", 0, 2), 1800.0)])
    assert [(d.start, d.energy, d.complete) for d in days] == [(1000.0, 800.0, True)]


def test_several_days_in_a_row(tmp_path):
    energy, days = meter(tmp_path)
    for n, value in enumerate([100.0, 250.0, 250.0, 400.5]):
        energy.observe([reading(at("2026-11-01", 0, 1) + n * 86_400_000, value)])
    assert [d.day for d in days] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert [d.energy for d in days] == pytest.approx([150.0, 0.0, 150.5])


def test_a_day_is_an_energy_message_of_the_contract(tmp_path, validate):
    from watchpost.messages import EnergyDay  # noqa: PLC0415 - the contract's model

    energy, days = meter(tmp_path)
    energy.observe([reading(at("2026-11-26", 0, 1), 1000.0)])
    energy.observe([reading(at("2026-11-27", 0, 1), 1234.5)])
    message = EnergyDay(**days[0].body())
    assert message.stream == "energy"
    assert message.durable
    envelope = {"gateway": "gw-1", "stream": "energy", "seq": 1, "ts": days[0].end_ts}
    validate("energy", {**envelope, **message.body()})
