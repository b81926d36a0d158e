"""generic-v2, generic-v3 and generic-v5: the LiteRT graph (one for all three) computes what
the cards say, each model's (and the default generic-v6's) defaults apply where an entry
gives none, a calibration too short for them is refused up front, and the benches'
vectorised hold/clear rule is the detector's own."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_anomaly import normal_rows
from watchpost.anomaly import AnomalyDetector, DetectorParams, LiteRTModel, open_detector
from watchpost.anomaly_eval import hold_clear
from watchpost.anomaly_part import CalibrationError
from watchpost.config.anomaly import AnomalyModelConfig
from watchpost.models import SHIPPED_MODEL, shipped_model_path


def test_the_shipped_graph_is_a_rolling_median_and_a_log_difference_energy() -> None:
    model = LiteRTModel(shipped_model_path("generic-v5"), ["a", "b", "c"])
    assert model.robust
    rng = np.random.default_rng(4)
    windows = rng.standard_normal((5, model.window, 3))
    windows[0, :, 2] = 7.0  # flat: the roughness floor
    feats = model.features_many(windows).reshape(5, 3, 2)
    level_rows = int(model.meta["level_rows"])
    median = np.median(windows[:, -level_rows:, :], axis=1)
    rough = np.log(np.mean(np.diff(windows, axis=1) ** 2, axis=1) + 1e-4)
    assert feats[..., 0] == pytest.approx(median, abs=1e-5)
    assert feats[..., 1] == pytest.approx(rough, abs=1e-4)
    assert feats[0, 2, 1] == pytest.approx(np.log(1e-4), abs=1e-4)


def test_an_entry_takes_the_models_defaults_where_it_gives_none() -> None:
    cfg = AnomalyModelConfig(name="pump", points=["a"], period_s=0.5, hold_s=4.0)
    v6 = open_detector(cfg, None).params
    assert SHIPPED_MODEL == "generic-v6"  # round 13 (tests/test_anomaly_v6.py)
    assert (v6.threshold, v6.top_k, v6.relation_factor) == (24.0, 1, 16.0)
    assert (v6.drift_lag, v6.hold, v6.clear) == (360, 8, 60)  # rows of 0.5 s; hold given
    v5_model = cfg.model_copy(update={"model": shipped_model_path("generic-v5")})
    v5 = open_detector(v5_model, None).params
    assert (v5.threshold, v5.top_k, v5.relation_factor) == (32.0, 1, 16.0)
    assert (v5.roughness_weight, v5.calibration_factor) == (1.0, 2.0)
    assert (v5.drift_lag, v5.hold, v5.clear) == (360, 8, 60)  # rows of 0.5 s; hold given
    v3_model = cfg.model_copy(update={"model": shipped_model_path("generic-v3")})
    v3 = open_detector(v3_model, None).params
    assert (v3.threshold, v3.top_k, v3.relation_factor) == (24.0, 1, 16.0)
    assert (v3.roughness_weight, v3.calibration_factor) == (1.0, 2.0)
    assert (v3.drift_lag, v3.hold, v3.clear) == (360, 8, 60)  # rows of 0.5 s; hold given
    v2 = open_detector(cfg.model_copy(update={"model": shipped_model_path("generic-v2")}), None)
    assert (v2.params.threshold, v2.params.top_k, v2.params.relation_factor) == (24.0, 2, 16.0)
    assert (v2.params.roughness_weight, v2.params.calibration_factor) == (1.0, 0.0)
    assert (v2.params.drift_lag, v2.params.hold, v2.params.clear) == (360, 8, 120)
    old = cfg.model_copy(update={"model": shipped_model_path("generic-v1")})
    v1 = open_detector(old, None).params
    assert (v1.threshold_factor, v1.relation_factor, v1.drift_lag, v1.hold, v1.clear) == (
        8.0,
        8.0,
        100,
        8,
        60,
    )


def test_a_calibration_too_short_for_the_defaults_is_refused_up_front() -> None:
    v2 = shipped_model_path("generic-v2")
    cfg = AnomalyModelConfig(name="pump", points=["a", "b"], calibration_s=120, model=v2)
    with pytest.raises(CalibrationError) as err:
        open_detector(cfg, None)
    text = str(err.value)
    assert "'pump'" in text
    assert "120 row(s)" in text
    assert "at least 220" in text  # window 32 + drift lag 180 + 8
    assert "drift lag 180" in text
    v5 = shipped_model_path("generic-v5")
    v3 = cfg.model_copy(update={"model": v5, "calibration_s": 219})  # the same lag
    with pytest.raises(CalibrationError, match="at least 220"):
        open_detector(v3, None)
    assert open_detector(v3.model_copy(update={"calibration_s": 220}), None).params


def test_the_benches_hold_and_clear_rule_is_the_detectors() -> None:
    params = DetectorParams(calibration_rows=300, hold=3, clear=5, drift_lag=20)
    model = LiteRTModel(shipped_model_path(), ["flow", "pressure", "temp"])
    det = AnomalyDetector(name="pump", model=model, params=params)
    rows = normal_rows(1200, seed=3)
    rows[500:540, 0] += 8.0  # long enough to raise
    rows[700:702, 1] += 3.0  # too short to raise
    rows[900:1000, 2] += np.linspace(0, 6, 100)  # a drift
    verdicts = [det.push_row(i * 1000, r) for i, r in enumerate(rows)]
    scored = [v for v in verdicts if v is not None]
    assert any(v.anomaly for v in scored)
    score = np.array([v.score for v in scored])
    state = hold_clear(score, scored[0].threshold, params.hold, params.clear)
    assert state.tolist() == [v.anomaly for v in scored]
