"""The `[anomaly]` section: on-device anomaly models and the points each one watches.

The runner that loads the models (and numpy, and LiteRT) is ``watchpost.anomaly``; this module
imports neither.
"""

from __future__ import annotations

from gettext import gettext as _
from pathlib import Path

from pydantic import Field, model_validator

from watchpost import settings
from watchpost.config.base import NAME_PATTERN, Model

TEXT_LISTED_TWICE = _("point {point!r} is listed more than once")
TEXT_MODEL_TWICE = _("anomaly model name {name!r} is used more than once")


class AnomalyModelConfig(Model, settings.AnomalyModelConfig):
    """One model watching a group of points."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Name of this entry; appears as `model` in anomaly events.",
    )
    points: list[str] = Field(
        min_length=1, description="Points fed to the model, in the model's order."
    )
    model: Path | None = Field(
        default=None,
        description="A .tflite file (with its .json sidecar); default: the shipped generic model.",
    )
    period_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="Time grid: one row of all points per period, seconds.",
    )
    max_age_s: float | None = Field(
        default=None,
        gt=0,
        description="A point's last good sample is used for at most this long; "
        "default: 3 periods. Older means a gap in the data.",
    )
    calibration_s: float = Field(
        default=7200.0,
        gt=0,
        description="Length of good data, seconds, learned as normal before scoring starts.",
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="Robust models (generic-v2 and later): the threshold, in robust units "
        "(how many robust spreads a point's level or roughness is from its calibration "
        "median); default: the model's (24 for generic-v6, 32 for generic-v5, 12 for "
        "generic-v4, 24 for generic-v2 and generic-v3).",
    )
    threshold_factor: float | None = Field(
        default=None,
        gt=0,
        description="Other models (generic-v1, site models): threshold = this factor times "
        "the highest calibration point score; default: 8.",
    )
    relation_factor: float | None = Field(
        default=None,
        ge=0,
        description="Threshold of the relation score (levels of the points that no longer "
        "fit together) = this factor times its highest calibration value; "
        "0 turns the relation part off; default: the model's (16 for generic-v2, v3 and v5, "
        "64 for generic-v4, 8 otherwise).",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Robust models: score = mean of the k largest level deviations over the "
        "points (roughness: the largest); others: mean of the k largest squared feature "
        "z-scores; default: the model's (1 for generic-v3 to v5, 2 otherwise).",
    )
    roughness_weight: float | None = Field(
        default=None,
        gt=0,
        description="Robust models: a point's roughness deviation counts this many times "
        "its robust units in the score (above 1: a changed noise or a chattering sensor is "
        "raised sooner); default: the model's (1 for generic-v2 to v5).",
    )
    calibration_factor: float | None = Field(
        default=None,
        ge=0,
        description="Robust models: the threshold is at least this factor times the highest "
        "score of the calibration windows (a calibration that was noisy in robust units "
        "lifts its own threshold); 0: the threshold alone; default: the model's (2 for "
        "generic-v3 to v5, 0 otherwise).",
    )
    drift_lag_s: float | None = Field(
        default=None,
        ge=0,
        description="Lag, seconds, over which calibration measures slow drift of each "
        "feature (0: no drift allowance); default: the model's (180 for generic-v2, v3 and "
        "v5, 60 for generic-v4, 50 otherwise).",
    )
    hold_s: float | None = Field(
        default=None,
        ge=0,
        description="The score must stay above the threshold this long "
        "before an event is raised, seconds; default: the model's (3 for generic-v2 and "
        "generic-v4, 5 otherwise).",
    )
    clear_s: float | None = Field(
        default=None,
        ge=0,
        description="The score must stay below the threshold this long "
        "before the event is cleared, seconds; default: the model's (60 for generic-v2 and "
        "generic-v4, 30 otherwise).",
    )
    propose_rebaseline_s: float = Field(
        default=0.0,
        ge=0,
        description="While an event stays raised and every point's level has held steady "
        "(its robust spread within twice its calibration spread) this long, seconds, send one "
        "`rebaseline_proposed` event: the process may have settled somewhere new. Never "
        "applied by itself. 0: never propose.",
    )
    test_latency_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Extra seconds the worker spends on every scored window: makes this "
        "model artificially slow, to check on a bench that alarms never wait "
        "for it. Keep 0 in service.",
    )

    @model_validator(mode="after")
    def _unique_points(self) -> AnomalyModelConfig:
        seen: set[str] = set()
        for p in self.points:
            if p in seen:
                raise ValueError(TEXT_LISTED_TWICE.format(point=p))
            seen.add(p)
        return self


class AnomalyConfig(Model, settings.AnomalyConfig):
    """The `[anomaly]` section: on-device anomaly models."""

    enabled: bool = Field(default=True, description="Run the anomaly models at all.")
    queue_size: int = Field(
        default=100_000,
        ge=100,
        description="Samples buffered between the poller and the models; when full, new "
        "samples are dropped for the models only (never for alarms or the store).",
    )
    models: list[AnomalyModelConfig] = Field(
        default_factory=list, description="Model entries, each watching a group of points."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AnomalyConfig:
        seen: set[str] = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(TEXT_MODEL_TWICE.format(name=m.name))
            seen.add(m.name)
        return self
