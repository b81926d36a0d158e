"""Rounds 14 and 15 of bench/anomaly_search.py (bench/anomaly_step.py): the step of two
adjacent rolling means and the departure computed as their docstring says, on series with
known answers (the rounds' figures rest on these)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np


def _step() -> ModuleType:
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    return importlib.import_module("anomaly_step")


def test_the_step_is_the_difference_of_two_adjacent_means() -> None:
    m = _step()
    z = np.stack([np.arange(10.0), np.r_[np.zeros(6), np.full(4, 3.0)]], axis=1)
    step = m.step_means(z, 3)
    assert np.isnan(step[:5]).all()
    # a ramp of 1 a row: the mean of rows 3-5 minus that of rows 0-2 is 3
    assert np.allclose(step[5:, 0], 3.0)
    # a jump of 3 at row 6: seen in part while the last 3 rows straddle it, then whole
    assert np.allclose(step[5:, 1], [0.0, 1.0, 2.0, 3.0, 2.0])


def test_a_departure_counts_a_step_away_from_calibration_and_never_a_return() -> None:
    m = _step()
    # one point, features [mean, step]; calibration median of the mean 0, step scale 0.5
    center = np.array([0.0, 0.0])
    scale = np.array([1.0, 0.5])
    feats = np.array(
        [
            [4.0, 4.0],  # moved from 0 to 4: 4 away, in units of 0.5
            [0.0, -4.0],  # came back from 4 to 0: a return, not a departure
            [-4.0, -4.0],  # moved from 0 to -4: away on the other side
            [5.0, 1.0],  # drifted from 4 to 5: 1 further away
            [4.0, -1.0],  # from 5 back to 4: towards calibration
        ]
    )
    dep = m.departures(feats, center, scale, 2, mean_index=0, step_index=1)
    assert dep.shape == (5, 1)
    assert np.allclose(dep[:, 0], [8.0, 0.0, 8.0, 2.0, 0.0])
