"""A single sensor gets a useful detector from the same code: the shipped model on labelled
univariate series (tests/univariate_series.py) through `watchpost anomaly score`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from tests.univariate_series import CALIBRATION_ROWS, SIGNALS, make
from watchpost import anomaly_cli
from watchpost.anomaly_eval import Tally


def score_csv(path: Path, capsys: pytest.CaptureFixture[str]) -> np.ndarray:
    """`watchpost anomaly score` with the shipped model's defaults: the state per row."""
    parser = argparse.ArgumentParser(prog="watchpost")
    anomaly_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "anomaly",
            "score",
            str(path),
            "--calibrate-rows",
            str(CALIBRATION_ROWS),
            "--ignore-columns",
            "anomaly",
        ]
    )
    assert args.handler(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(re.fullmatch(r"\d+,[-+0-9.eE]*(inf)?,[01]", line) for line in lines)
    return np.array([line.endswith(",1") for line in lines])


def write(tmp_path: Path, signal: str, fault: str) -> tuple[Path, np.ndarray]:
    s = make(signal, fault)
    path = tmp_path / f"{s.name}.csv"
    rows = [f"{v:.6g},{int(t)}" for v, t in zip(s.values, s.truth, strict=True)]
    path.write_text("value,anomaly\n" + "\n".join(rows) + "\n")
    return path, s.truth[CALIBRATION_ROWS:]


QUANTISED = "flow"  # whole units with jitter


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_stuck_sensor_alone_is_found_every_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signal: str
) -> None:
    path, truth = write(tmp_path, signal, "stuck")
    t = Tally()
    t.add(score_csv(path, capsys), truth)
    assert t.windows == 3
    assert t.detected == 3
    assert t.median_delay_s <= 60  # a frozen value is known once a window is flat
    if signal != QUANTISED:
        assert t.false_per_hour <= 0.5


def test_a_quantised_flow_alone_stays_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = write(tmp_path, QUANTISED, "stuck")
    t = Tally()
    t.add(score_csv(path, capsys), truth)
    assert t.false_per_hour <= 0.5


def test_a_large_level_shift_of_a_pressure_is_found_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = write(tmp_path, "pump_pressure", "shift")
    t = Tally()
    t.add(score_csv(path, capsys), truth)
    assert t.detected >= 2
    assert t.median_delay_s <= 10
    assert t.false_events == 0
    assert t.nab_score > 50
