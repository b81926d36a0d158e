"""Robust per-sensor deviation scores: the scoring stage of the generic-v2 detector.

The model (LiteRT, ``models/generic-v2.tflite``) turns each point's window into two
features: its *level* (the mean of its last few rows) and its *roughness energy* (the mean
squared first difference over the window). This module learns, from the calibration rows,
what normal looks like for each point, and scores every window in *robust units*: how many
robust spreads the feature is from its calibration median.

Calibration, per point:

- input centre and scale: the median of the calibration rows and their robust spread
  (1.4826 x the median absolute deviation, MAD), with a **scale floor** so that a channel
  that hardly moves in calibration does not make every small change an anomaly: the floor is
  the larger of the channel's *quantisation step* (the smallest difference between two of
  its distinct calibration values: a flow meter reporting whole litres has a step of 1) and
  0.1 % of its level (instruments rarely resolve finer);
- level: the median of the calibration levels and their robust spread, widened by the
  robust spread of their change over ``drift_lag`` rows (slow normal drift), and floored at
  one quantisation step (a sustained one-step change of a coarse channel scores 1);
- roughness: ``log(energy + eps)`` where ``eps`` is the energy of one quantisation step per
  window (a quantised channel that rarely changes is not "stuck" in calibration), its median
  and robust spread, floored at 0.25 (a factor of 1.3 in energy).

A point's score is the larger of its level and roughness deviations; the window's score
combines the points by the maximum or by the mean of the two largest (``combine``). The
threshold is in the same robust units (a fixed number, not a factor of what calibration
saw), so it means the same on every site.

The *relation* part (optional, ``relation_factor > 0``) is the squared Mahalanobis distance
of the points' level deviations from their calibration relations, per point, as in
generic-v1; its threshold is ``relation_factor`` times its highest calibration value, and it
is expressed in units of the point threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533
LEVEL_FLOOR = 0.05  # input scales: a level never needs to be known finer than this
RELATIVE_FLOOR = 1e-3  # of the channel's level: instruments rarely resolve finer
ABSOLUTE_FLOOR = 1e-6
ROUGHNESS_FLOOR = 0.25  # log units: a factor of 1.3 in difference energy
ROUGHNESS_EPS = 1e-4  # squared input scales: a flat window is 1e-4, white noise about 2
RELATION_RIDGE = 1e-3


def robust_spread(x: FloatArray, axis: int = 0) -> FloatArray:
    """Spread that a few outliers do not move: the larger of 1.4826 x the median absolute
    deviation (MAD) and 1.2533 x the mean absolute deviation from the median (both the
    standard deviation for Gaussian data). The second is the floor for quantised channels:
    when more than half of the rows sit on one value, the MAD is 0, and the mean absolute
    deviation still says how often and how far the channel leaves that value."""
    med = np.median(x, axis=axis, keepdims=True)
    dev = np.abs(x - med)
    mad = MAD_TO_SIGMA * np.median(dev, axis=axis)
    mean_ad = MEAN_AD_TO_SIGMA * np.mean(dev, axis=axis)
    return np.asarray(np.maximum(mad, mean_ad), dtype=np.float64)


def input_scaling(rows: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per point: centre (median) and scale (robust spread, floored at 0.1 % of the level)."""
    center = np.median(rows, axis=0)
    scale = np.maximum(robust_spread(rows), RELATIVE_FLOOR * np.abs(center) + ABSOLUTE_FLOOR)
    return center, scale


@dataclass(frozen=True)
class RobustStats:
    """What normal looks like, per point, in the units of the scaled input."""

    level_center: FloatArray
    level_scale: FloatArray
    rough_eps: FloatArray
    rough_center: FloatArray
    rough_scale: FloatArray


def fit_stats(level: FloatArray, energy: FloatArray, drift_lag: int) -> RobustStats:
    """Fit the per-point statistics on calibration features ``[n, points]``."""
    lc = np.median(level, axis=0)
    spread = robust_spread(level)
    if drift_lag and len(level) > drift_lag + 8:
        drift = robust_spread(level[drift_lag:] - level[:-drift_lag])
        spread = np.sqrt(spread**2 + drift**2)
    ls = np.maximum(spread, LEVEL_FLOOR)
    eps = np.full(level.shape[1], ROUGHNESS_EPS)
    rough = np.log(energy + eps)
    rc = np.median(rough, axis=0)
    rs = np.maximum(robust_spread(rough), ROUGHNESS_FLOOR)
    return RobustStats(lc, ls, eps, rc, rs)


def point_scores(
    stats: RobustStats, level: FloatArray, energy: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per point, its level and its roughness deviations, each ``[..., points]``."""
    zl = np.abs(level - stats.level_center) / stats.level_scale
    zr = np.abs(np.log(energy + stats.rough_eps) - stats.rough_center) / stats.rough_scale
    return zl, zr


def window_score(zl: FloatArray, zr: FloatArray, how: str) -> FloatArray:
    """The window's score: levels combined by ``how`` (a process fault moves several points),
    roughness by the maximum (a stuck or chattering sensor is one sensor's fault)."""
    return np.maximum(combine(zl, how), zr.max(axis=-1))


def combine(z: FloatArray, how: str) -> FloatArray:
    """Combine per-point scores ``[..., points]`` by ``max`` or ``top2`` (mean of two largest)."""
    if how == "max" or z.shape[-1] == 1:
        return np.asarray(z.max(axis=-1), dtype=np.float64)
    if how != "top2":
        raise ValueError(f"combine must be 'max' or 'top2', not {how!r}")
    part = np.partition(z, z.shape[-1] - 2, axis=-1)[..., -2:]
    return np.asarray(part.mean(axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class Relation:
    """The points' level relations seen in calibration (robust units)."""

    center: FloatArray
    precision: FloatArray
    max_value: float

    def scores(self, zl: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Relation score per window and each point's share of it, for signed level
        deviations ``zl`` ``[n, points]``."""
        d = zl - self.center
        share = d * (d @ self.precision.T) / d.shape[-1]
        return np.asarray(share.sum(axis=-1), dtype=np.float64), share


def fit_relation(zl: FloatArray, drift_lag: int) -> Relation:
    """Mean and precision of the signed level deviations ``[n, points]`` (with drift)."""
    center = zl.mean(axis=0)
    dev = zl - center
    cov = dev.T @ dev / len(dev)
    if drift_lag and len(zl) > drift_lag + 8:
        drift = zl[drift_lag:] - zl[:-drift_lag]
        cov += drift.T @ drift / len(drift)
    p = zl.shape[1]
    cov += (RELATION_RIDGE * np.trace(cov) / p + 1e-6) * np.eye(p)
    precision = np.linalg.inv(cov)
    rel = Relation(center, precision, 0.0)
    values, _share = rel.scores(zl)
    return Relation(center, precision, float(values.max()))


def feature_stats(
    feats: FloatArray, drift: FloatArray | None, level_index: list[int]
) -> tuple[FloatArray, FloatArray]:
    """Centre (median) and scale of calibration features ``[n, features]`` in robust
    units; ``drift``: feature changes over the drift lag (widens the scale), or None.
    Level features are floored at ``LEVEL_FLOOR``, the others (roughness) at
    ``ROUGHNESS_FLOOR``."""
    center = np.median(feats, axis=0)
    spread = robust_spread(feats)
    if drift is not None and len(drift):
        spread = np.sqrt(spread**2 + robust_spread(drift) ** 2)
    floor = np.full(feats.shape[1], ROUGHNESS_FLOOR)
    floor[level_index] = LEVEL_FLOOR
    return center, np.maximum(spread, floor)
