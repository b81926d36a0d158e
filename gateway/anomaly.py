"""On-device anomaly detection: LiteRT models fed by the poller's samples.

One *anomaly model entry* of the config names a model file and the points it watches. The
runner lines the points' samples up on a time grid (one row per period), keeps a sliding
window of rows, and asks the model for features of each window. The model knows nothing of
the site: what is normal is learned on the device by *calibration*, from the first rows of
good samples (``calibration_s``):

1. input scaling: each point's mean and standard deviation over the calibration rows;
2. feature statistics: each feature's centre and spread over the calibration windows, the
   spread widened by how far the feature wanders over ``drift_lag_s`` (a point that drifts
   slowly in normal operation is trusted less for level changes);
3. the decision threshold: ``threshold_factor`` times the highest score seen in calibration;
4. the relations between the points: the mean and covariance of the points' *level*
   features (widened by their drift over ``drift_lag_s``, like the spreads of step 2), so
   that a window whose levels are each normal but no longer fit together (flow against
   pressure against current) stands out; its own threshold is ``relation_factor`` times the
   highest calibration value.

A window's *point score* is the mean of the ``top_k`` largest squared feature z-scores; its
*relation score* is the squared Mahalanobis distance of its levels from their calibration
mean, divided by the number of points (for a single point, the point score's level term).
The score is the larger of the two, the relation score expressed in units of the point
threshold, so one threshold decides. An event is raised once the score has stayed above the
threshold for ``hold_s``, and cleared once it has stayed below for ``clear_s``. The
calibration is written atomically to the state folder and reused after a restart as long as
the model file and the list of points are unchanged.

LiteRT ``invoke`` is blocking: ``AnomalyRunner.run`` does all model work in a worker thread,
and ``AnomalyRunner.observe`` never blocks the caller (the poller's fan-out).

Errors::

    AnomalyError            base class
     +-- ModelLoadError     the model file is missing or unreadable (fix the file; no retry)
     +-- ModelShapeError    the model does not fit the configured points (fix the config)
     +-- CalibrationError   too few rows to calibrate (give it more rows)
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from watchpost import anomaly_robust as robust
from watchpost.anomaly_part import (
    CalibrationError,
    EventSink,
    ModelLoadError,
    ModelShapeError,
    UnknownModelError,
)
from watchpost.files import atomic_write
from watchpost.models import shipped_model_path
from watchpost.samples import Sample
from watchpost.settings import AnomalyConfig, AnomalyModelConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

STATE_VERSION = 2

TEXT_NO_RUNTIME = _("no LiteRT runtime: install tflite-runtime (Python < 3.12) or ai-edge-litert")
TEXT_NO_MODEL = _("anomaly model {name!r}: cannot load {path}: {error}")
TEXT_BAD_OUTPUT = _(
    "anomaly model {name!r}: {path} gives output shape {shape}; "
    "a Watchpost model gives [batch, features]"
)
TEXT_SHAPE_POINTS = _(
    "anomaly model {name!r}: {path} takes windows of {expected} point(s) "
    "(input shape {shape}), but the entry lists {given} point(s): {points}. "
    "Give it exactly the points it was trained on, in the same order, or use a "
    "channel-independent model such as the shipped one"
)
TEXT_SHAPE_RANK = _(
    "anomaly model {name!r}: {path} has input shape {shape}; "
    "a Watchpost model takes [batch, window, channels]"
)
TEXT_SHAPE_WINDOW = _(
    "anomaly model {name!r}: {path} takes windows of {expected} samples, "
    "but its sidecar {sidecar} says {given}"
)
TEXT_CALIBRATION_SHORT = _(
    "anomaly model {name!r}: calibration_s gives {rows} row(s); at least {needed} are needed "
    "(window {window} + drift lag {lag} + 8): make calibration_s longer"
)
TEXT_CALIBRATION_GAPS = _("%s; calibration goes on with more rows")
TEXT_FEW_ROWS = _(
    "anomaly model {name!r}: {rows} calibration row(s) give {windows} window(s); "
    "at least {needed} rows are needed (window {window} + drift lag {lag} + 8)"
)
TEXT_STATE_DISCARDED = _("anomaly model %r: calibration in %s does not fit (%s); calibrating anew")
TEXT_CALIBRATED = _("anomaly model %r: calibrated on %d rows, threshold %.3g")
TEXT_QUEUE_FULL = _("anomaly runner: input queue full, dropping samples until it drains")
TEXT_UNKNOWN_MODEL = _("no anomaly model {name!r} (configured: {models})")
TEXT_REBASELINE = _("anomaly model %r: rebaseline by %s; calibrating anew on the next %d rows")
TEXT_PROPOSED = _(
    "anomaly model %r: raised since %s and steady at a new level since %s; "
    "a rebaseline is proposed (never applied by itself)"
)
TEXT_QUEUE_OK = _("anomaly runner: input queue drained, %d sample(s) were dropped")


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- config


# The numbers of a model whose sidecar names none: generic-v1's and the site models'.
LEGACY_DEFAULTS: dict[str, float] = {
    "threshold": 24.0,
    "threshold_factor": 8.0,
    "relation_factor": 8.0,
    "top_k": 2,
    "roughness_weight": 1.0,
    "calibration_factor": 0.0,
    "drift_lag_s": 50.0,
    "hold_s": 5.0,
    "clear_s": 30.0,
}


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """An entry's numbers, in rows of its grid."""

    calibration_rows: int
    threshold_factor: float = 8.0
    relation_factor: float = 8.0
    top_k: int = 2
    drift_lag: int = 50
    hold: int = 5
    clear: int = 30
    threshold: float = 24.0  # robust models only: in robust units (generic-v2)
    roughness_weight: float = 1.0  # robust models only: weight of roughness deviations
    calibration_factor: float = 0.0  # robust models only: threshold >= this x calibration max
    propose_rebaseline: int = 0  # rows of steady levels while raised; 0: never propose
    period_ms: int = 1000  # one row

    @classmethod
    def from_config(
        cls, cfg: AnomalyModelConfig, defaults: Mapping[str, float] | None = None
    ) -> DetectorParams:
        """The entry's numbers: its own, else the model's ``defaults`` (its sidecar's),
        else ``LEGACY_DEFAULTS``."""
        d = {**LEGACY_DEFAULTS, **(defaults or {})}

        def pick(name: str) -> float:
            value = getattr(cfg, name)
            return float(d[name] if value is None else value)

        return cls(
            calibration_rows=cfg.rows(cfg.calibration_s),
            threshold=pick("threshold"),
            threshold_factor=pick("threshold_factor"),
            relation_factor=pick("relation_factor"),
            top_k=int(pick("top_k")),
            roughness_weight=pick("roughness_weight"),
            calibration_factor=pick("calibration_factor"),
            drift_lag=cfg.rows(pick("drift_lag_s")),
            hold=cfg.rows(pick("hold_s")),
            clear=cfg.rows(pick("clear_s")),
            propose_rebaseline=cfg.rows(cfg.propose_rebaseline_s),
            period_ms=round(cfg.period_s * 1000),
        )


# --------------------------------------------------------------------------- the model


def _interpreter_class() -> Any:
    try:
        from tflite_runtime.interpreter import Interpreter  # noqa: PLC0415
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        except ImportError as exc:
            raise ModelLoadError(TEXT_NO_RUNTIME) from exc
    return Interpreter


class LiteRTModel:
    """A Watchpost model file bound to a list of points.

    Input ``[batch, window, channels]``, output ``[batch, features]``. A channel-independent
    model (``channels == 1`` and a free batch dimension) scores each point as one batch row,
    so it fits any number of points; any other model must have exactly one channel per point.
    Not thread-safe: one caller at a time.
    """

    def __init__(
        self, path: Path, points: Sequence[str], *, name: str = "", num_threads: int = 1
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.points = list(points)
        try:
            blob = self.path.read_bytes()
            self.sha256 = hashlib.sha256(blob).hexdigest()
            self._it = _interpreter_class()(model_content=blob, num_threads=num_threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                TEXT_NO_MODEL.format(name=self.name, path=self.path, error=exc)
            ) from exc
        sidecar = self.path.with_suffix(".json")
        # the sidecar holds the scoring's numbers: its hash is part of the model's identity
        self.meta, self.sidecar_sha256 = self._read_sidecar(sidecar)
        inp = self._it.get_input_details()[0]
        out = self._it.get_output_details()[0]
        shape = [int(d) for d in inp["shape_signature"]]
        fmt = {"name": self.name, "path": self.path.name, "shape": shape}
        if len(shape) != 3:
            raise ModelShapeError(TEXT_SHAPE_RANK.format(**fmt))
        self.window = shape[1]
        if "window" in self.meta and int(self.meta["window"]) != self.window:
            raise ModelShapeError(
                TEXT_SHAPE_WINDOW.format(
                    **fmt, expected=self.window, sidecar=sidecar.name, given=self.meta["window"]
                )
            )
        self.channel_independent = shape[2] == 1 and shape[0] == -1
        n = len(self.points)
        if not self.channel_independent and shape[2] != n:
            raise ModelShapeError(
                TEXT_SHAPE_POINTS.format(
                    **fmt, expected=shape[2], given=n, points=", ".join(self.points)
                )
            )
        out_shape = [int(d) for d in out["shape_signature"]]
        if len(out_shape) != 2 or out_shape[1] < 1:
            raise ModelLoadError(TEXT_BAD_OUTPUT.format(**fmt | {"shape": out_shape}))
        self._in, self._out = inp["index"], out["index"]
        self.features_per_row = out_shape[1]
        self._batch = 0
        if self.channel_independent:
            self.n_features = n * self.features_per_row
            self.feature_points = [p for p in self.points for _ in range(self.features_per_row)]
        else:
            self.n_features = self.features_per_row
            # site models put per-point features point by point, group after group
            self.feature_points = [self.points[i % n] for i in range(self.n_features)]
            self._it.allocate_tensors()
            self._batch = 1
        self.level_index = self._level_features()
        # robust scoring (generic-v2): features scored in robust units, see anomaly_robust
        self.robust = self.meta.get("scoring") == "robust"
        if self.robust and (not self.channel_independent or not self.level_index):
            raise ModelLoadError(
                TEXT_NO_MODEL.format(
                    name=self.name,
                    path=sidecar,
                    error="robust scoring needs a channel-independent model with a level",
                )
            )
        # robust models: per point, level-like features, then the roughness (the last one);
        # generic-v6 has two level-like ones (the level and its predictor's residual)
        self.levels = max(1, self.features_per_row - 1)
        # generic-v3: a quantised point (MAD 0 in calibration) is never "stuck"
        self.quantised_not_stuck = bool(self.meta.get("quantised_not_stuck", False))
        self.defaults: dict[str, float] = {
            str(k): float(v) for k, v in dict(self.meta.get("defaults", {})).items()
        }

    def _read_sidecar(self, sidecar: Path) -> tuple[dict[str, Any], str]:
        """The sidecar's content and SHA-256 (empty and "" without one); ModelLoadError."""
        if not sidecar.exists():
            return {}, ""
        try:
            text = sidecar.read_bytes()
            return dict(json.loads(text)), hashlib.sha256(text).hexdigest()
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(
                TEXT_NO_MODEL.format(name=self.name, path=sidecar, error=exc)
            ) from exc

    def _level_features(self) -> list[int]:
        """Indices of the features that are a point's level (sidecar names ``level`` or
        ``<point>:level``): the inputs of the relation part. Empty without a sidecar."""
        names = [str(n) for n in self.meta.get("features", [])]
        if self.channel_independent:
            if len(names) != self.features_per_row:
                return []
            names = names * len(self.points)
        elif len(names) != self.n_features:
            return []
        return [i for i, n in enumerate(names) if n == "level" or n.endswith(":level")]

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self._it.resize_tensor_input(self._in, [batch, self.window, 1])
            self._it.allocate_tensors()
            self._batch = batch

    def features(self, window: FloatArray) -> FloatArray:
        """Features of one window ``[window, points]`` of calibrated values (blocking)."""
        features: FloatArray = self.features_many(window[None])[0]
        return features

    def features_many(self, windows: FloatArray) -> FloatArray:
        """Features of many windows ``[n, window, points]`` -> ``[n, n_features]``."""
        batch = np.asarray(windows, dtype=np.float32)
        n, w, p = batch.shape
        if self.channel_independent:
            rows = batch.transpose(0, 2, 1).reshape(n * p, w, 1)
            out = np.empty((n * p, self.features_per_row), dtype=np.float32)
            # one batch size per call pattern: every resize re-plans the interpreter
            chunk = min(n * p, max(p, 1024 - 1024 % p))  # bounds the arena: ~20 MiB
            self._resize(chunk)
            buf = np.zeros((chunk, w, 1), dtype=np.float32)
            for start in range(0, n * p, chunk):
                part = rows[start : start + chunk]
                buf[: len(part)] = part
                self._it.set_tensor(self._in, buf)
                self._it.invoke()
                out[start : start + len(part)] = self._it.get_tensor(self._out)[: len(part)]
            return out.reshape(n, p * self.features_per_row).astype(np.float64)
        features = np.empty((n, self.n_features), dtype=np.float64)
        for i in range(n):
            self._it.set_tensor(self._in, batch[i : i + 1])
            self._it.invoke()
            features[i] = self._it.get_tensor(self._out)[0]
        return features


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """What normal looks like for one entry; persisted as JSON in the state folder."""

    model_sha256: str
    points: list[str]
    rows: int
    input_mean: FloatArray
    input_scale: FloatArray
    feature_center: FloatArray
    feature_scale: FloatArray
    max_score: float
    threshold: float
    created_ms: int
    relation_index: list[int] = field(default_factory=list)  # empty: no relation part
    relation_center: FloatArray = field(default_factory=lambda: np.zeros(0))
    relation_precision: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    relation_max: float = 0.0
    relation_threshold: float = 0.0
    robust: bool = False  # scored in robust units (generic-v2); else squared z-scores
    flat_seen: FloatArray = field(default_factory=lambda: np.zeros(0))  # robust: per feature
    sidecar_sha256: str = ""  # the model's sidecar (its scoring numbers) when calibrated

    def relation(self, feats: FloatArray) -> tuple[float, FloatArray]:
        """Relation score of one window's features, and each level's share of it."""
        if not self.relation_index:
            return 0.0, np.zeros(0)
        d = feats[self.relation_index] - self.relation_center
        share = d * (self.relation_precision @ d) / len(d)
        return float(share.sum()), share

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "model_sha256": self.model_sha256,
            "points": self.points,
            "rows": self.rows,
            "input_mean": self.input_mean.tolist(),
            "input_scale": self.input_scale.tolist(),
            "feature_center": self.feature_center.tolist(),
            "feature_scale": self.feature_scale.tolist(),
            "max_score": self.max_score,
            "threshold": self.threshold,
            "created_ms": self.created_ms,
            "relation_index": self.relation_index,
            "relation_center": self.relation_center.tolist(),
            "relation_precision": self.relation_precision.tolist(),
            "relation_max": self.relation_max,
            "relation_threshold": self.relation_threshold,
            "robust": self.robust,
            "flat_seen": self.flat_seen.tolist(),
            "sidecar_sha256": self.sidecar_sha256,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"state version {d.get('version')!r}, expected {STATE_VERSION}")
        arrays = {
            k: np.asarray(d[k], dtype=np.float64)
            for k in (
                "input_mean",
                "input_scale",
                "feature_center",
                "feature_scale",
                "relation_center",
            )
        }
        index = [int(i) for i in d["relation_index"]]
        precision = np.asarray(d["relation_precision"], dtype=np.float64)
        if precision.shape != (len(index), len(index)) or arrays["relation_center"].shape != (
            len(index),
        ):
            raise ValueError("relation part: inconsistent shapes")
        return cls(
            model_sha256=str(d["model_sha256"]),
            points=[str(p) for p in d["points"]],
            rows=int(d["rows"]),
            max_score=float(d["max_score"]),
            threshold=float(d["threshold"]),
            created_ms=int(d["created_ms"]),
            relation_index=index,
            relation_precision=precision.reshape(len(index), len(index)),
            relation_max=float(d["relation_max"]),
            relation_threshold=float(d["relation_threshold"]),
            robust=bool(d.get("robust", False)),
            flat_seen=np.asarray(d.get("flat_seen", []), dtype=np.float64),
            sidecar_sha256=str(d.get("sidecar_sha256", "")),
            **arrays,
        )

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a restart) sees the old file or the new one."""
        atomic_write(path, json.dumps(self.to_json()).encode())


def input_scaling(rows: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-point mean and scale; a point that never moved gets a small, non-zero scale."""
    mean = rows.mean(axis=0)
    scale = np.maximum(rows.std(axis=0), 1e-6 + 1e-3 * np.abs(mean))
    return mean, scale


STEADY_SPREAD = 2.0  # calibration spreads: levels whose robust spread is within this are steady
RELATION_RIDGE = 1e-3  # of the mean level variance, added to the diagonal


def topk_mean(z2: FloatArray, k: int) -> FloatArray:
    """Mean of the k largest values along the last axis."""
    k = min(k, z2.shape[-1])
    means: FloatArray = np.partition(z2, z2.shape[-1] - k, axis=-1)[..., -k:].mean(axis=-1)
    return means


def _robust_stats(
    model: LiteRTModel,
    rows: FloatArray,
    feats: FloatArray,
    drift: FloatArray | None,
    params: DetectorParams,
) -> tuple[FloatArray, FloatArray, FloatArray, float, float]:
    """Robust models: feature centre, scale and flat flags, the highest calibration score,
    and the threshold (the entry's, lifted by ``calibration_factor`` x that score)."""
    exempt = robust.quantised(rows) if model.quantised_not_stuck else None
    center, fscale, flat_seen = robust.feature_stats(
        feats, drift, model.features_per_row, exempt, levels=model.levels
    )
    z = robust.deviations(feats, center, fscale, flat_seen, model.features_per_row)
    scores = robust.window_scores(z, params.top_k, params.roughness_weight, model.levels)
    max_score = float(scores.max())
    threshold = max(params.threshold, params.calibration_factor * max_score)
    return center, fscale, flat_seen, max_score, threshold


def fit_calibration(
    model: LiteRTModel,
    rows: FloatArray,
    breaks: npt.NDArray[np.bool_],
    params: DetectorParams,
    now_ms: int,
) -> Calibration:
    """Fit the calibration of ``model`` on ``rows`` ``[n, points]``.

    ``breaks[i]`` is true where row ``i`` does not follow row ``i - 1`` (a gap in the data);
    windows across a gap are not used.
    """
    w, lag = model.window, params.drift_lag
    needed = w + lag + 8
    n = len(rows)
    if n < needed:
        raise CalibrationError(
            TEXT_FEW_ROWS.format(
                name=model.name, rows=n, windows=max(0, n - w + 1), needed=needed, window=w, lag=lag
            )
        )
    mean, scale = robust.input_scaling(rows) if model.robust else input_scaling(rows)
    z = (rows - mean) / scale
    seg = np.cumsum(breaks)  # segment id of each row
    ends = np.array([i for i in range(w - 1, n) if seg[i] == seg[i - w + 1]], dtype=int)
    if len(ends) < lag + 8:
        raise CalibrationError(
            TEXT_FEW_ROWS.format(
                name=model.name, rows=n, windows=len(ends), needed=needed, window=w, lag=lag
            )
        )
    chunk = 256  # windows per call: the stacked windows of hours of rows would not fit
    feats = np.concatenate(
        [
            model.features_many(np.stack([z[e - w + 1 : e + 1] for e in ends[i : i + chunk]]))
            for i in range(0, len(ends), chunk)
        ]
    )
    drift: FloatArray | None = None  # feature changes over `lag` rows within a segment
    if lag:
        pos = {int(e): i for i, e in enumerate(ends)}
        pairs = [(pos[e], pos[e - lag]) for e in pos if e - lag in pos and seg[e] == seg[e - lag]]
        if pairs:
            a, b = np.array(pairs).T
            drift = feats[a] - feats[b]
    flat_seen = np.zeros(0)
    if model.robust:
        center, fscale, flat_seen, max_score, threshold = _robust_stats(
            model, rows, feats, drift, params
        )
    else:
        center = feats.mean(axis=0)
        var = feats.var(axis=0)
        if drift is not None:
            var = var + (drift**2).mean(axis=0)  # drift allowance
        fscale = np.maximum(np.sqrt(var), 1e-3)
        scores = topk_mean(((feats - center) / fscale) ** 2, params.top_k)
        max_score = float(scores.max())
        threshold = params.threshold_factor * max(max_score, 1e-6)
    relation: dict[str, Any] = {}
    index = list(model.level_index) if params.relation_factor > 0 else []
    if index:
        levels = feats[:, index]
        rcenter = levels.mean(axis=0)
        dev = levels - rcenter
        cov = dev.T @ dev / len(dev)
        if drift is not None:  # the same drift allowance, between points too
            cov += drift[:, index].T @ drift[:, index] / len(drift)
        # a light ridge: a few hundred rows pin down the main relations, not the faint ones
        cov += (RELATION_RIDGE * np.trace(cov) / len(index) + 1e-6) * np.eye(len(index))
        precision = np.linalg.inv(cov)
        rscores = np.einsum("ij,jk,ik->i", dev, precision, dev) / len(index)
        rmax = float(rscores.max())
        relation = {
            "relation_index": index,
            "relation_center": rcenter,
            "relation_precision": precision,
            "relation_max": rmax,
            "relation_threshold": params.relation_factor * max(rmax, 1e-6),
        }
    return Calibration(
        model_sha256=model.sha256,
        points=list(model.points),
        rows=n,
        input_mean=mean,
        input_scale=scale,
        feature_center=center,
        feature_scale=fscale,
        max_score=max_score,
        threshold=threshold,
        created_ms=now_ms,
        robust=model.robust,
        flat_seen=flat_seen,
        sidecar_sha256=model.sidecar_sha256,
        **relation,
    )


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one scored row."""

    ts: int
    score: float
    threshold: float
    anomaly: bool  # the entry's state after this row: an event is raised
    event: dict[str, Any] | None = None  # set on the row that raised or cleared


@dataclass
class _Calibrating:
    rows: list[FloatArray] = field(default_factory=list)
    breaks: list[bool] = field(default_factory=list)
    gap: bool = False
    warned: bool = False


class AnomalyDetector:
    """One entry's detector: synchronous and blocking, the same for the daemon and the CLI.

    Feed it rows with ``push_row``; it calibrates on the first ``calibration_rows`` rows
    (or loads a calibration from ``state_path``), then scores every row that completes a
    window. ``gap()`` says the next row does not follow the last one.
    """

    def __init__(
        self,
        *,
        name: str,
        model: LiteRTModel,
        params: DetectorParams,
        state_path: Path | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.params = params
        self.state_path = state_path
        self.calibration: Calibration | None = None
        self._cal = _Calibrating()
        self._window: list[FloatArray] = []
        self._above = 0
        self._below = 0
        self.raised = False
        self._raised_points: list[str] = []
        self._above_since: int | None = None  # ts of the first row of the current run above
        self.raised_since: int | None = None  # while raised: since when (its first row above)
        self.holding: list[str] = []  # while raised: the points above the threshold now
        self.last_verdict: tuple[float, float] = (0.0, math.inf)  # (score, threshold)
        self._levels: collections.deque[FloatArray] = collections.deque()  # while raised
        self._proposed = False
        needed = model.window + params.drift_lag + 8
        if params.calibration_rows < needed:
            raise CalibrationError(
                TEXT_CALIBRATION_SHORT.format(
                    name=name,
                    rows=params.calibration_rows,
                    needed=needed,
                    window=model.window,
                    lag=params.drift_lag,
                )
            )
        if state_path is not None:
            self.calibration = self._load_state(state_path)

    def _load_state(self, path: Path) -> Calibration | None:
        if not path.exists():
            return None
        try:
            cal = Calibration.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(TEXT_STATE_DISCARDED, self.name, path, exc)
            return None
        reason = None
        if cal.model_sha256 != self.model.sha256:
            reason = "another model file"
        elif cal.sidecar_sha256 != self.model.sidecar_sha256:
            reason = "another model sidecar (the model's scoring numbers)"
        elif cal.points != self.model.points:
            reason = "another list of points"
        elif len(cal.feature_center) != self.model.n_features:
            reason = "another number of features"
        if reason:
            log.warning(TEXT_STATE_DISCARDED, self.name, path, reason)
            return None
        return cal

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def calibration_progress(self) -> tuple[int, int]:
        """(rows collected, rows needed); both equal once calibrated."""
        if self.calibration is not None:
            return self.calibration.rows, self.calibration.rows
        return len(self._cal.rows), self.params.calibration_rows

    def rows_kept_only(self) -> int:
        """How many next rows this detector only keeps (a calibration row short of the fit,
        a window not yet full): rows that cost microseconds, not a fit or a model call."""
        if self.calibration is None:
            return max(0, self.params.calibration_rows - 1 - len(self._cal.rows))
        return max(0, self.model.window - 1 - len(self._window))

    def gap(self) -> None:
        """The data has a hole: the next row starts a new window."""
        self._window.clear()
        self._cal.gap = True

    def push_row(self, ts: int, values: FloatArray) -> Verdict | None:
        """Add one row (all points, in order); returns a verdict once a window is scored."""
        values = np.asarray(values, dtype=np.float64)
        if self.calibration is None:
            self._collect(ts, values)
            return None
        cal = self.calibration
        self._window.append((values - cal.input_mean) / cal.input_scale)
        if len(self._window) > self.model.window:
            del self._window[0]
        if len(self._window) < self.model.window:
            return None
        feats = self.model.features(np.stack(self._window))
        if cal.robust:
            z = robust.deviations(
                feats,
                cal.feature_center,
                cal.feature_scale,
                cal.flat_seen,
                self.model.features_per_row,
            )
            levels = self.model.levels
            weights = np.ones(self.model.features_per_row)
            weights[levels:] = self.params.roughness_weight
            z2 = (z * weights).reshape(-1)  # per feature, weighted as in the score
            point_score = float(
                robust.window_scores(z, self.params.top_k, self.params.roughness_weight, levels)
            )
        else:
            z2 = ((feats - cal.feature_center) / cal.feature_scale) ** 2
            point_score = float(topk_mean(z2, self.params.top_k))
        rel, share = cal.relation(feats)
        if cal.relation_threshold > 0:  # in units of the point threshold: one threshold
            to_points = cal.threshold / cal.relation_threshold
            rel, share = rel * to_points, share * to_points
        score = max(point_score, rel)
        if not math.isfinite(score):
            score = math.inf
        verdict = self._decide(ts, score, z2, share)
        proposal = self._proposal(ts, feats)
        if proposal is not None and verdict.event is None:
            return dataclasses.replace(verdict, event=proposal)
        return verdict

    def _collect(self, ts: int, values: FloatArray) -> None:
        c = self._cal
        c.rows.append(values)
        c.breaks.append(c.gap)
        c.gap = False
        if len(c.rows) < self.params.calibration_rows:
            return
        rows = np.stack(c.rows)
        try:
            self.calibration = fit_calibration(
                self.model, rows, np.array(c.breaks), self.params, now_ms=ts
            )
        except CalibrationError as exc:
            # gaps in the data left too few whole windows: keep learning from more rows,
            # and forget the oldest half rather than grow without bound
            if len(c.rows) >= 4 * self.params.calibration_rows:
                half = len(c.rows) // 2
                c.rows, c.breaks = c.rows[half:], [True, *c.breaks[half + 1 :]]
            if not c.warned:
                c.warned = True
                log.warning(TEXT_CALIBRATION_GAPS, exc)
            return
        log.info(TEXT_CALIBRATED, self.name, len(rows), self.calibration.threshold)
        if self.state_path is not None:
            self.calibration.save(self.state_path)
        # the window goes on from the calibration's last rows, so scoring starts at once
        seg = np.cumsum(c.breaks)
        tail = [i for i in range(len(rows)) if seg[i] == seg[-1]][-(self.model.window - 1) :]
        cal = self.calibration
        self._window = [(rows[i] - cal.input_mean) / cal.input_scale for i in tail]
        self._cal = _Calibrating()

    def _decide(self, ts: int, score: float, z2: FloatArray, share: FloatArray) -> Verdict:
        threshold = self.calibration.threshold if self.calibration else math.inf
        event = None
        if score > threshold:
            if not self._above:
                self._above_since = ts
            self._above += 1
            self._below = 0
        else:
            self._below += 1
            self._above = 0
        if not self.raised and self._above >= max(1, self.params.hold):
            self.raised = True
            self.raised_since = self._above_since
            self._raised_points = self._points_involved(z2, share, threshold)
            event = self._event("raised", ts, score, threshold, self._raised_points)
        elif self.raised and self._below >= max(1, self.params.clear):
            self.raised = False
            event = self._event("cleared", ts, score, threshold, self._raised_points)
            self.raised_since = None
        if self.raised:
            above = score > threshold
            self.holding = self._points_involved(z2, share, threshold) if above else []
        else:
            self.holding = []
        self.last_verdict = (score, threshold)
        return Verdict(ts=ts, score=score, threshold=threshold, anomaly=self.raised, event=event)

    def _proposal(self, ts: int, feats: FloatArray) -> dict[str, Any] | None:
        """Once per raised event: a ``rebaseline_proposed`` event when every point's level
        has held steady (its robust spread over the rows within ``STEADY_SPREAD`` of its
        calibration spreads: the noise it had, not a level still moving) for
        ``propose_rebaseline`` rows while raised (the process settled somewhere new)."""
        n = self.params.propose_rebaseline
        if not n or self.calibration is None or not self.model.level_index:
            return None
        if not self.raised:
            self._levels.clear()
            self._proposed = False
            return None
        index = self.model.level_index
        self._levels.append(feats[index] / self.calibration.feature_scale[index])
        if len(self._levels) > n:
            self._levels.popleft()
        if self._proposed or len(self._levels) < n:
            return None
        levels = np.stack(self._levels)
        if float(robust.robust_spread(levels).max()) > STEADY_SPREAD:
            return None
        self._proposed = True
        since = ts - (n - 1) * self.params.period_ms
        log.warning(TEXT_PROPOSED, self.name, self.raised_since, since)
        event = self._event("rebaseline_proposed", ts, *self.last_verdict, self._raised_points)
        return {**event, "steady_since": since}

    def rebaseline(self, ts: int) -> dict[str, Any] | None:
        """Forget what normal was: the next rows calibrate anew (``calibration_rows`` of
        them), and the saved calibration is deleted at once, so a restart calibrates anew
        too. Returns the ``cleared`` event of the event raised until now, if one was."""
        event = None
        if self.raised:
            score, threshold = self.last_verdict
            event = self._event("cleared", ts, score, threshold, self._raised_points)
        self.calibration = None
        self._cal = _Calibrating()
        self._window.clear()
        self._above = self._below = 0
        self.raised, self.raised_since, self.holding = False, None, []
        self._raised_points = []
        self._levels.clear()
        self._proposed = False
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)
        return event

    def _points_involved(self, z2: FloatArray, share: FloatArray, threshold: float) -> list[str]:
        """Points whose features crossed the threshold, strongest first; then, if the
        relation score crossed it, the points that make up most (80 %) of it."""
        fp = self.model.feature_points
        hot = [fp[i] for i in np.argsort(-z2) if z2[i] > threshold]
        if share.size and share.sum() > threshold:
            index = self.calibration.relation_index if self.calibration else []
            order = [int(i) for i in np.argsort(-share) if share[i] > 0]
            total, acc = float(share[order].sum()), 0.0
            for i in order:
                hot.append(fp[index[i]])
                acc += float(share[i])
                if acc >= 0.8 * total:
                    break
        if not hot:
            hot = [fp[int(np.argmax(z2))]]
        return list(dict.fromkeys(hot))  # unique, strongest first

    def _event(
        self,
        kind: Literal["raised", "cleared", "rebaseline_proposed"],
        ts: int,
        score: float,
        threshold: float,
        points: list[str],
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": kind,
            "model": self.name,
            "score": _json_float(score),
            "threshold": _json_float(threshold),
            "points": list(points),
            "ts": ts,
        }
        if self.raised_since is not None:
            event["since"] = self.raised_since
        return event


def _json_float(x: float) -> float:
    """A score for JSON: finite (JSON has no infinity), anything beyond is ``SCORE_MAX``."""
    return round(x, 6) if math.isfinite(x) and abs(x) < SCORE_MAX else SCORE_MAX


SCORE_MAX = 1e12


def open_detector(cfg: AnomalyModelConfig, state_dir: Path | None) -> AnomalyDetector:
    """Load an entry's model (checking its shape) and its saved calibration, if any."""
    path = cfg.model or shipped_model_path()
    model = LiteRTModel(path, cfg.points, name=cfg.name)
    state = state_dir / "anomaly" / f"{cfg.name}.json" if state_dir is not None else None
    return AnomalyDetector(
        name=cfg.name,
        model=model,
        params=DetectorParams.from_config(cfg, model.defaults),
        state_path=state,
    )


# --------------------------------------------------------------------------- the runner


class _RowAssembler:
    """Lines one entry's samples up on its time grid: one row of all points per period."""

    def __init__(self, cfg: AnomalyModelConfig) -> None:
        self.points = list(cfg.points)
        self.index = {p: i for i, p in enumerate(self.points)}
        self.period_ms = round(cfg.period_s * 1000)
        self.max_age_ms = round((cfg.max_age_s or 3 * cfg.period_s) * 1000)
        self.last: list[tuple[int, float] | None] = [None] * len(self.points)
        self.tick: int | None = None

    def add(self, s: Sample) -> list[tuple[int, FloatArray | None]]:
        """Take a sample; returns finished rows ``(ts, values)``, ``values`` None for a gap."""
        out: list[tuple[int, FloatArray | None]] = []
        tick = s.ts // self.period_ms
        if self.tick is None:
            self.tick = tick
        elif tick > self.tick:
            # a period without a new sample (poll jitter) repeats the latest values while
            # they are fresh (max_age_ms); after that, a gap
            fresh = min(tick, self.tick + 1 + self.max_age_ms // self.period_ms)
            out.extend(self._row(t) for t in range(self.tick, fresh))
            if tick > fresh:
                out.append((fresh * self.period_ms, None))  # missed periods
            self.tick = tick
        i = self.index[s.point]
        self.last[i] = (s.ts, float(s.value)) if s.good and s.value is not None else None
        return out

    def _row(self, tick: int) -> tuple[int, FloatArray | None]:
        end = (tick + 1) * self.period_ms
        vals = []
        for last in self.last:
            if last is None or end - last[0] > self.max_age_ms or not math.isfinite(last[1]):
                return end, None
            vals.append(last[1])
        return end, np.array(vals)


class AnomalyRunner:
    """Runs every configured model entry next to the daemon's event loop.

    ``observe(sample)`` is cheap and never blocks: call it for every sample from the loop.
    ``run()`` is the task that does the work: it assembles rows, runs calibration and the
    model in a worker thread (``asyncio.to_thread``; rows that are only kept, while a model
    calibrates or its window fills, are added on the loop), and hands each raised/cleared event
    (a dict: ``event``, ``model``, ``score``, ``threshold``, ``points``, ``ts``) to ``emit``,
    which may be a plain function or a coroutine function.

    Constructing it loads every model and checks its shape: a ``ModelLoadError`` or
    ``ModelShapeError`` here is a configuration error.
    """

    def __init__(self, *, config: AnomalyConfig, state_dir: Path | None, emit: EventSink) -> None:
        self.config = config
        self._emit = emit
        self.detectors: dict[str, AnomalyDetector] = {}
        self._assemblers: dict[str, _RowAssembler] = {}
        self._by_point: dict[str, list[str]] = {}
        self._latency: dict[str, float] = {}
        if config.enabled:
            for entry in config.models:
                self.detectors[entry.name] = open_detector(entry, state_dir)
                self._latency[entry.name] = entry.test_latency_s
                self._assemblers[entry.name] = _RowAssembler(entry)
                for p in entry.points:
                    self._by_point.setdefault(p, []).append(entry.name)
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(maxsize=config.queue_size)
        self.dropped = 0
        self._dropping = False
        self.rows_scored = 0
        self.last_score: dict[str, float] = {}
        # set when run() is cancelled: the worker thread stops between rows, so a slow
        # model never holds up the daemon's shutdown (a thread cannot be cancelled)
        self._stopping = threading.Event()
        self._work_lock = asyncio.Lock()

    def observe(self, sample: Sample) -> None:
        """Hand a sample to the models; never blocks, drops (and counts) when overloaded."""
        if sample.point not in self._by_point:
            return
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(TEXT_QUEUE_FULL)

    def status(self) -> dict[str, Any]:
        """Per entry: calibration progress, raised or not, last score; and drops."""
        return {
            "dropped": self.dropped,
            "rows_scored": self.rows_scored,
            "models": {
                name: {
                    "calibrated": d.calibrated,
                    "calibration_rows": list(d.calibration_progress),
                    "raised": d.raised,
                    "raised_since": d.raised_since,
                    "holding": list(d.holding),
                    "threshold": d.calibration.threshold if d.calibration else None,
                    "score": self.last_score.get(name),
                }
                for name, d in self.detectors.items()
            },
        }

    async def run(self) -> None:
        """Process samples until cancelled."""
        self._stopping.clear()
        try:
            await self._run()
        finally:
            self._stopping.set()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 10_000:
                batch.append(self._queue.get_nowait())
            if self._dropping and self._queue.qsize() < self._queue.maxsize // 2:
                self._dropping = False
                log.warning(TEXT_QUEUE_OK, self.dropped)
            work: list[tuple[str, int, FloatArray | None]] = []
            for s in batch:
                for name in self._by_point[s.point]:
                    work.extend((name, ts, v) for ts, v in self._assemblers[name].add(s))
            try:
                if work:
                    async with self._work_lock:  # a rebaseline waits for these rows
                        if self._rows_kept_only(work):  # no thread woken for a list append
                            verdicts = self._process(work)
                        else:
                            verdicts = await asyncio.to_thread(self._process, work)
                        for v in verdicts:
                            if v.event is not None:
                                await self._send(v.event)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _rows_kept_only(self, work: list[tuple[str, int, FloatArray | None]]) -> bool:
        """True when ``work`` only adds rows to lists (calibrating, a window filling up):
        it is done on the loop, since a worker thread's hand-off costs more than it."""
        rows = collections.Counter(name for name, _ts, values in work if values is not None)
        return all(self.detectors[name].rows_kept_only() >= n for name, n in rows.items())

    async def _send(self, event: dict[str, Any]) -> None:
        result = self._emit(event)
        if inspect.isawaitable(result):
            await result

    async def rebaseline(self, name: str, *, by: str) -> dict[str, Any]:
        """Recalibrate model entry ``name`` from the next rows, at the request of ``by`` (a
        crew member, the platform). The saved calibration is deleted before anything else
        (a restart calibrates anew); an event still raised is cleared; then a
        ``rebaseline`` event is sent (through the store: it is durable when this returns).
        Raises UnknownModelError for a name that is not configured."""
        det = self.detectors.get(name)
        if det is None:
            raise UnknownModelError(
                TEXT_UNKNOWN_MODEL.format(name=name, models=", ".join(self.detectors) or "-")
            )
        async with self._work_lock:  # not while the worker thread holds the detector
            cleared = det.rebaseline(int(time.time() * 1000))
            self.last_score.pop(name, None)
            log.warning(TEXT_REBASELINE, name, by, det.params.calibration_rows)
            if cleared is not None:
                cleared.pop("ts")  # stamped by the daemon's clock, like the next one
                await self._send(cleared)
            await self._send(
                {"event": "rebaseline", "model": name, "by": by, "points": list(det.model.points)}
            )
        return {"model": name, "calibration_rows": det.params.calibration_rows}

    async def idle(self) -> None:
        """Wait until every sample observed so far has been processed (and its events sent)."""
        await self._queue.join()

    def _process(self, work: list[tuple[str, int, FloatArray | None]]) -> list[Verdict]:
        """Worker thread: feed rows to detectors (blocking LiteRT calls)."""
        out = []
        for name, ts, values in work:
            if self._stopping.is_set():
                break
            det = self.detectors[name]
            if values is None:
                det.gap()
                continue
            v = det.push_row(ts, values)
            if v is not None:
                if self._latency[name]:
                    time.sleep(self._latency[name])  # a slow model, on request (tests)
                self.rows_scored += 1
                self.last_score[name] = v.score
                out.append(v)
        return out
