"""bench/anomaly_limits.py: the 2 % threshold, the oracle's first row out of the normal range
(raw and 5-row medians), the rolling mean's deviation on a discrete channel, and the rows each
figure is taken over, on small series with known answers (no SKAB file needed)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np


def _limits() -> ModuleType:
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    return importlib.import_module("anomaly_limits")


def _series(values: np.ndarray, truth: np.ndarray) -> object:
    return _limits().LabelledSeries("1", [f"c{j}" for j in range(values.shape[1])], values, truth)


def test_the_2_percent_threshold_is_the_smallest_that_leaves_2_percent_above() -> None:
    m = _limits()
    scores = np.arange(100.0)[::-1].copy()
    thr = m.smallest_threshold(scores, 0.02)
    assert thr == 97.0
    assert (scores > thr).sum() == 2
    assert (scores > thr - 0.01).sum() == 3  # any lower threshold flags a third row
    # ties: every row on the top value, none above it
    assert m.smallest_threshold(np.array([5.0, 5.0, 5.0, 1.0]), 0.25) == 5.0


def test_the_oracle_sees_the_first_row_out_of_range_and_the_channel() -> None:
    m = _limits()
    v = np.zeros((40, 2))
    v[:, 0] = np.arange(40) % 2  # 0, 1, 0, 1...
    v[:, 1] = 10 + np.arange(40) % 3  # 10, 11, 12
    ref = np.zeros(40, dtype=bool)
    ref[:20] = True
    assert m.first_outside(v, ref, 20, 39) is None
    v[23, 1] = 12.5
    v[25, 0] = -0.1
    assert m.first_outside(v, ref, 20, 39) == (3, [1])
    v[23, 0] = 1.5  # both channels out at the same row
    assert m.first_outside(v, ref, 20, 39) == (3, [0, 1])


def test_the_median_oracle_ignores_a_one_row_spike_and_sees_a_sustained_drop() -> None:
    m = _limits()
    v = (np.arange(60) % 2).astype(np.float64)[:, None]
    truth = np.zeros(60, dtype=bool)
    truth[20:40] = True
    v[22, 0] = 5.0  # one row: the raw oracle sees it, a 5-row median does not
    v[30:40, 0] = -3.0  # from row 30: the median is -3 once 3 of its 5 rows are
    raw, med = m.oracle_delays(_series(v, truth), 20, 39)
    assert raw == (2, [0])
    assert med == (12, [0])
    v[22, 0] = 1.0
    v[30:40, 0] = 0.0  # nothing leaves the range: not seen
    raw, med = m.oracle_delays(_series(v, truth), 20, 39)
    assert raw is None
    assert med is None


def test_the_mean_deviation_of_a_discrete_channel_is_its_drop_in_floored_spreads() -> None:
    m = _limits()
    n, cal, rows = 200, 100, 4
    rng = np.random.default_rng(0)
    v = np.zeros((n, 2))
    v[:, 0] = 30 + np.arange(n) % 2  # whole litres: 30, 31, 30, 31...
    v[150:, 0] -= 1  # a drop of one litre: 29, 30...
    v[:, 1] = rng.normal(size=n)  # continuous: never scored
    dev, step = m.mean_scores(v, cal, rows, lag=0)
    assert step[0] > 0
    assert step[1] == 0
    # the calibration's 4-row mean never moves: its spread is the floor step / sqrt(4), so
    # a drop of one step is sqrt(4) = 2 spreads once the mean's rows are all after it
    assert np.allclose(dev[cal:150, 0], 0.0)
    assert np.allclose(dev[150 + rows - 1 :, 0], 2.0)
    assert np.allclose(dev[150:153, 0], [0.5, 1.0, 1.5])
    assert np.all(dev[:, 1] == 0)


def test_window_normal_and_grace_rows() -> None:
    m = _limits()
    truth = np.zeros(700, dtype=bool)
    truth[450:461] = True
    inside, normal, outside = m.masks(_series(np.zeros((700, 1)), truth))
    assert np.flatnonzero(inside).tolist() == list(range(450, 461))
    assert normal.sum() == 700 - 400 - 11
    # two minutes after the window (rows 461 to 580) are normal but not outside the grace
    assert not outside[461:581].any()
    assert outside[581:].all()
    assert outside[400:450].all()
