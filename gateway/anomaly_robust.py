"""Robust per-sensor deviation scores: the scoring stage of generic-v2 and generic-v3.

The model (LiteRT, ``models/generic-v2.tflite``; generic-v3 is the same graph) turns each
point's window of scaled input into two features: its *level* (the median of its last 5
rows) and its *roughness*
(``log(mean squared first difference + 1e-4)`` over the 32-row window). This module learns,
from the calibration rows, what normal looks like for each point, and scores every window
in *robust units*: how many robust spreads a feature is from its calibration median.

- **Input scaling**, per point: the median of the calibration rows and their robust spread.
  The robust spread is the larger of 1.4826 x the median absolute deviation (MAD) and
  1.2533 x the mean absolute deviation (both the standard deviation for Gaussian data).
  **Scale floor for quantised channels**: when more than half of the calibration rows sit on
  one value (a flow meter that reads whole litres, a level switch), the MAD is 0 and every
  small change would be an anomaly; the mean absolute deviation still says how often and
  how far the channel leaves that value. A second floor, 0.1 % of the channel's level,
  stands for the resolution of real instruments.
- **Feature statistics**: the median and robust spread of each feature over the
  calibration windows (widened by the spread of its change over ``drift_lag`` rows when
  that is not 0), floored at 0.05 input scales for levels and 0.25 for roughness (a factor
  of 1.3 in difference energy).
- **Stuck sensors**: a window with no change at all (roughness at the floor) of a point
  that changed in every calibration window is infinitely far: an exact flat line is what a
  frozen transmitter or a lost loop looks like. A quantised channel that rested on one
  value in calibration is exempt.
- **Score**: the mean of the ``top_k`` largest level deviations over the points, or the
  largest roughness deviation when that is larger (a stuck or chattering sensor is one
  sensor's fault, never diluted by the others). The threshold is in the same robust units
  (a fixed number, not a factor of what calibration saw), so it means the same on every
  site.

The optional *relation* part (``relation_factor > 0``) is generic-v1's, on these levels.

generic-v3 (its sidecar) adds: ``roughness_weight`` (roughness deviations count this many
times in the score), a threshold lifted to ``calibration_factor`` x the highest calibration
score (the gateway's ``fit_calibration``), and ``quantised``: a point with more than half of
its calibration rows on one value is exempt from the stuck-sensor rule. ``feature_stats``'s
``cap`` was tried by the search (round 10) and is not used by any shipped model.

generic-v6's graph gives two level-like features per point (its level and the residual of
its trained predictor, ``watchpost.models.train_predictor``) before the roughness:
``levels=2`` in ``feature_stats`` and ``window_scores``; a point's level deviation is the
larger of the two.
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
# a window whose roughness is at most this is flat: log(2 x ROUGHNESS_EPS)
FLAT_ROUGHNESS = float(np.log(2 * ROUGHNESS_EPS))
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


def topk_mean(x: FloatArray, k: int) -> FloatArray:
    """Mean of the k largest values along the last axis."""
    k = min(k, x.shape[-1])
    return np.asarray(np.partition(x, x.shape[-1] - k, axis=-1)[..., -k:].mean(axis=-1))


def quantised(rows: FloatArray) -> npt.NDArray[np.bool_]:
    """Per point: more than half of the calibration ``rows`` sit on its median value (its MAD
    is 0: a flow meter reading whole litres, a level switch)."""
    return np.asarray((rows == np.median(rows, axis=0)).mean(axis=0) > 0.5, dtype=np.bool_)


def feature_stats(
    feats: FloatArray,
    drift: FloatArray | None,
    features_per_point: int,
    exempt: npt.NDArray[np.bool_] | None = None,
    *,
    cap: float = 0.0,
    levels: int = 1,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Centre (median), scale and flat flags of calibration features ``[n, features]``
    (per point: ``levels`` level-like features, then roughness; generic-v4 has more than one
    level-like feature: rolling means, a slope). ``drift``: feature changes over the drift lag
    (widens the scale), or None. Levels are floored at ``LEVEL_FLOOR``, roughness at
    ``ROUGHNESS_FLOOR``. ``flat_seen`` is 1 for a roughness feature that was flat in some
    calibration window (a quantised channel that rests on one value), or whose point is
    ``exempt`` (per point: see ``quantised``): for the others, a flat window is a stuck
    sensor. ``cap`` (> 0): each scale is widened so that no calibration window deviates by
    more than ``cap`` of it (a feature that was wild in calibration is trusted less)."""
    center = np.median(feats, axis=0)
    spread = robust_spread(feats)
    if drift is not None and len(drift):
        spread = np.sqrt(spread**2 + robust_spread(drift) ** 2)
    is_level = np.arange(feats.shape[1]) % features_per_point < levels
    scale = np.maximum(spread, np.where(is_level, LEVEL_FLOOR, ROUGHNESS_FLOOR))
    if cap > 0:
        widest = np.abs(feats - center).max(axis=0) / scale
        scale = scale * np.maximum(1.0, widest / cap)
    flat = (feats <= FLAT_ROUGHNESS).any(axis=0)
    if exempt is not None:
        flat = flat | np.repeat(np.asarray(exempt, dtype=bool), features_per_point)
    flat_seen = np.where(is_level, 1.0, flat)
    return center, scale, flat_seen.astype(np.float64)


def deviations(
    feats: FloatArray,
    center: FloatArray,
    scale: FloatArray,
    flat_seen: FloatArray,
    features_per_point: int,
) -> FloatArray:
    """Robust deviations ``[..., points, features per point]`` (level first); a flat window
    of a point that was never flat in calibration is infinitely far (stuck)."""
    z = np.abs(feats - center) / scale
    if flat_seen.size:
        stuck = (feats <= FLAT_ROUGHNESS) & (flat_seen < 0.5)
        z = np.where(stuck, np.inf, z)
    return np.asarray(z.reshape(*z.shape[:-1], -1, features_per_point), dtype=np.float64)


def window_scores(
    z: FloatArray, top_k: int, roughness_weight: float = 1.0, levels: int = 1
) -> FloatArray:
    """Window scores from ``deviations``: the mean of the ``top_k`` largest level deviations
    over the points (a point's level deviation: the largest of its ``levels`` level-like
    features), or ``roughness_weight`` times the largest roughness deviation if that is
    larger (a stuck, chattering or quietened sensor is one sensor's fault, never diluted by
    the others)."""
    rough = roughness_weight * z[..., levels:].max(axis=(-2, -1))
    return np.asarray(np.maximum(topk_mean(z[..., :levels].max(axis=-1), top_k), rough))


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


@dataclass(frozen=True)
class Residuals:
    """Each point's level predicted from the other points' levels (ridge regression on the
    calibration windows): the *residual* relation part searched by round 12 of
    ``bench/anomaly_search.py``. ``coef[i, j]`` weighs point j's level in point i's
    prediction (``coef[i, i]`` is 0); residuals are scored in robust units of their own
    calibration spread (widened by their drift), and the score is the largest over the
    points."""

    center: FloatArray  # [points] calibration mean of the levels
    coef: FloatArray  # [points, points]
    scale: FloatArray  # [points] robust spread of the calibration residuals
    max_value: float  # the highest calibration score

    def deviations(self, levels: FloatArray) -> FloatArray:
        """Per window and point: |level - prediction| in robust units ``[..., points]``."""
        d = levels - self.center
        return np.asarray(np.abs(d - d @ self.coef.T) / self.scale, dtype=np.float64)

    def scores(self, levels: FloatArray) -> FloatArray:
        """The largest residual deviation over the points, per window."""
        return np.asarray(self.deviations(levels).max(axis=-1), dtype=np.float64)


def fit_residuals(levels: FloatArray, drift_lag: int) -> Residuals | None:
    """Fit ``Residuals`` on calibration levels ``[n, points]``; None for a single point."""
    n, p = levels.shape
    if p < 2:
        return None
    center = levels.mean(axis=0)
    d = levels - center
    cov = d.T @ d / n
    coef = np.zeros((p, p))
    for i in range(p):
        others = [j for j in range(p) if j != i]
        a = cov[np.ix_(others, others)]
        a = a + (RELATION_RIDGE * np.trace(a) / len(others) + 1e-6) * np.eye(len(others))
        coef[i, others] = np.linalg.solve(a, cov[others, i])
    r = d - d @ coef.T
    spread = robust_spread(r)
    if drift_lag and n > drift_lag + 8:
        spread = np.sqrt(spread**2 + robust_spread(r[drift_lag:] - r[:-drift_lag]) ** 2)
    scale = np.maximum(spread, LEVEL_FLOOR)
    fitted = Residuals(center, coef, scale, 0.0)
    return Residuals(center, coef, scale, float(fitted.scores(levels).max()))
