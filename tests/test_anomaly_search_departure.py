"""Rounds 14 to 18 of bench/anomaly_search.py (bench/anomaly_step.py): the step of two
adjacent rolling means and the departure computed as their docstring says, on series with
known answers, round 16's discrete channels and floored rolling mean, round 17's threshold
(the mean out of the calibration factor) and round 18's (the mean's share lifted by its own
calibration maximum); the rounds' figures rest on these."""

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


def test_a_channel_on_whole_values_is_discrete_with_its_step_and_a_smooth_one_is_not() -> None:
    m = _step()
    rng = np.random.default_rng(3)
    whole = rng.choice([31.0, 32.0, 33.0], size=400, p=[0.2, 0.5, 0.3])
    flow = whole + rng.uniform(-0.004, 0.004, size=400)  # a jitter of thousandths
    smooth = 20.0 + rng.standard_normal(400)
    resting = np.full(400, 5.0)
    two = np.where(np.arange(400) % 3 == 0, 0.0, 2.5)  # a switch: two levels 2.5 apart
    steps = m.discrete_step(np.stack([flow, smooth, resting, two], axis=1))
    assert abs(steps[0] - 1.0) < 0.01
    assert steps[1] == 0.0
    assert steps[2] == 0.0
    assert np.isclose(steps[3], 2.5)


def test_the_mean_is_scored_on_discrete_points_only_and_never_finer_than_its_floor() -> None:
    m = _step()
    means = np.array([[0.5, 0.5, 9.0], [2.0, 0.0, 9.0]])
    center = np.zeros(3)
    scale = np.array([0.01, 0.25, 1.0])
    step = np.array([1.0, 1.0, 0.0])  # the third point is not discrete
    dev = m.mean_deviations(means, center, scale, step, 16)
    # floor 1 / sqrt(16) = 0.25: the first point's spread 0.01 is raised to it
    assert np.allclose(dev, [[2.0, 2.0, 0.0], [8.0, 0.0, 0.0]])


def test_round_17_keeps_the_mean_out_of_the_calibration_factor_with_a_fixed_share() -> None:
    m = _step()
    # rows 0-4: level 28 (below the lifted threshold 2 x 15 = 30); rows 5-9: the mean at 6.5
    # (x weight 4 = 26, above the searched threshold 24, never lifted); then quiet
    n = 15
    level = np.r_[np.full(5, 28.0), np.zeros(10)]
    mean = np.r_[np.zeros(5), np.full(5, 6.5), np.zeros(5)]
    sc = m.Scored14(
        level=level,
        step=mean,
        rough=np.zeros(n),
        cal_level=15.0,
        cal_step=10.0,  # x weight 4 = 40: would lift the threshold to 80 in round 16
        cal_rough=1.0,
        relation=np.zeros(n),
        truth=np.zeros(n, dtype=bool),
    )
    dec = (4.0, 2.0, 0.0, 24.0, 1, 1)
    assert m.decide17(sc, dec).tolist() == [False] * 5 + [True] * 5 + [False] * 5
    # round 16 lifts the threshold by the mean's calibration too: nothing is raised
    assert not m.decide14(sc, dec).any()
    # without the calibration factor the level's 28 is raised too
    assert m.decide17(sc, (4.0, 0.0, 0.0, 24.0, 1, 1)).tolist() == [True] * 10 + [False] * 5
    # weight 0: the states of round 16's rule (generic-v6's)
    off = (0.0, 2.0, 0.0, 24.0, 1, 1)
    assert m.decide17(sc, off).tolist() == m.decide14(sc, off).tolist()


def test_round_18_lifts_the_means_share_by_its_own_calibration_maximum_only() -> None:
    m = _step()
    # rows 0-4: level 28 (below the lifted threshold 2 x 15 = 30); rows 5-9: the mean at 6.5;
    # rows 10-14: the mean at 25; then quiet. The mean's calibration maximum is 10.
    n = 20
    level = np.r_[np.full(5, 28.0), np.zeros(15)]
    mean = np.r_[np.zeros(5), np.full(5, 6.5), np.full(5, 25.0), np.zeros(5)]
    sc = m.Scored14(
        level=level,
        step=mean,
        rough=np.zeros(n),
        cal_level=15.0,
        cal_step=10.0,
        cal_rough=1.0,
        relation=np.zeros(n),
        truth=np.zeros(n, dtype=bool),
    )
    # weight 4, mean factor 2: the mean's own threshold is max(24, 2 x 4 x 10) = 80, so 4 x
    # 6.5 = 26 is not raised (round 17 raised it) and 4 x 25 = 100 is; the level's threshold
    # stays 30 (lifted by the level's maximum alone), so its 28 is not raised either
    dec = (4.0, 2.0, 2.0, 0.0, 24.0, 1, 1)
    assert m.decide18(sc, dec).tolist() == [False] * 10 + [True] * 5 + [False] * 5
    # a factor of 0.5 leaves the mean's threshold at the searched 24 (max(24, 20))
    low = m.decide18(sc, (4.0, 0.5, 2.0, 0.0, 24.0, 1, 1)).tolist()
    assert low == [False] * 5 + [True] * 10 + [False] * 5
    # mean factor 0: round 17's states; weight 0: generic-v6's (round 16's rule)
    r17 = (4.0, 2.0, 0.0, 24.0, 1, 1)
    assert m.decide18(sc, (4.0, 0.0, 2.0, 0.0, 24.0, 1, 1)).tolist() == m.decide17(sc, r17).tolist()
    off = (0.0, 2.0, 0.0, 24.0, 1, 1)
    assert m.decide18(sc, (0.0, 3.0, 2.0, 0.0, 24.0, 1, 1)).tolist() == m.decide14(sc, off).tolist()
