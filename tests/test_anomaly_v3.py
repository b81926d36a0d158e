"""generic-v3 (the previous default; generic-v5 is its graph and numbers with threshold 32):
the generic-v2 graph scored with its own numbers. A
quantised channel is never "stuck", a noisy calibration lifts its own threshold, the
roughness weight counts, and a calibration saved under another model's numbers is not
reused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_anomaly import normal_rows
from watchpost.anomaly import AnomalyDetector, DetectorParams, LiteRTModel, open_detector
from watchpost.config.anomaly import AnomalyModelConfig
from watchpost.models import shipped_model_path


def quantised_flow(n: int, seed: int) -> np.ndarray:
    """A flow meter reading whole litres: 32 most of the time, 31 or 33 now and then."""
    rng = np.random.default_rng(seed)
    return 32.0 + rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], size=n)


def v3_detector(points: list[str], **changes: float) -> AnomalyDetector:
    v3 = shipped_model_path("generic-v3")
    cfg = AnomalyModelConfig(name="pump", points=points, calibration_s=300, model=v3)
    det = open_detector(cfg, None)
    if changes:
        det.params = dataclasses.replace(det.params, **changes)  # type: ignore[arg-type]
    return det


def scores(det: AnomalyDetector, rows: np.ndarray) -> np.ndarray:
    out = [det.push_row(i * 1000, r) for i, r in enumerate(rows)]
    return np.array([v.score for v in out if v is not None])


def test_a_quantised_channel_resting_on_its_value_is_not_stuck() -> None:
    rows = np.stack([normal_rows(700, p=1, seed=2)[:, 0], quantised_flow(700, seed=3)], axis=1)
    rows[420:520, 1] = 32.0  # rests on its usual value for 100 rows
    v3 = scores(v3_detector(["level", "flow"]), rows)
    # a quieter meter, scored by how much quieter (its roughness), not an infinite verdict
    assert np.isfinite(v3).all()
    assert v3[100:].max() > v3[:80].max()
    v2_model = LiteRTModel(shipped_model_path("generic-v2"), ["level", "flow"], name="pump")
    v2 = AnomalyDetector(
        name="pump",
        model=v2_model,
        params=DetectorParams(calibration_rows=300, drift_lag=0, hold=3, clear=5),
    )
    assert np.isinf(scores(v2, rows)).any()  # generic-v2 took it for a stuck sensor


def test_a_smooth_channel_that_freezes_is_still_stuck() -> None:
    rows = normal_rows(700, seed=6)
    rows[450:, 2] = rows[450, 2]
    det = v3_detector(["a", "b", "c"])
    s = scores(det, rows)
    assert np.isinf(s[-100:]).all()
    assert det.raised
    assert det.holding == ["c"]


def test_a_noisy_calibration_lifts_its_own_threshold() -> None:
    quiet = v3_detector(["a", "b", "c"])
    scores(quiet, normal_rows(320, seed=1))
    assert quiet.calibration is not None
    assert quiet.calibration.threshold == pytest.approx(
        max(24.0, 2.0 * quiet.calibration.max_score)
    )
    rows = normal_rows(320, seed=1)
    rows[100:103, 0] += 50.0  # a burst inside calibration: normal by definition
    noisy = v3_detector(["a", "b", "c"])
    scores(noisy, rows)
    assert noisy.calibration is not None
    assert noisy.calibration.threshold == pytest.approx(2.0 * noisy.calibration.max_score)
    assert noisy.calibration.threshold > 24.0


def test_the_roughness_weight_raises_a_changed_noise() -> None:
    rows = normal_rows(900, seed=8)
    rng = np.random.default_rng(9)
    rows[500:700, 1] += 0.05 * 2.5 * rng.standard_normal(200)  # the noise grows 2.7-fold
    plain = scores(v3_detector(["a", "b", "c"]), rows)
    heavy = scores(v3_detector(["a", "b", "c"], roughness_weight=4.0), rows)
    window = slice(500 - 300 - 31 + 32, 700 - 300 - 31)
    assert plain[window].max() < 24.0
    assert heavy[window].max() > 24.0
    assert heavy[: window.start].max() < 24.0  # before the change: quiet either way


def test_a_calibration_saved_under_another_models_numbers_is_not_reused(
    tmp_path: Path,
) -> None:
    cfg = AnomalyModelConfig(
        name="pump",
        points=["a", "b", "c"],
        calibration_s=300,
        model=shipped_model_path("generic-v2"),
    )
    v2 = open_detector(cfg, tmp_path)
    scores(v2, normal_rows(320, seed=4))
    saved = tmp_path / "anomaly" / "pump.json"
    assert json.loads(saved.read_text())["robust"]
    # same graph, same bytes: only the sidecar (the numbers) differs
    assert open_detector(cfg, tmp_path).calibrated
    v5 = cfg.model_copy(update={"model": shipped_model_path("generic-v5")})
    v3 = open_detector(v5, tmp_path)
    assert v3.model.sha256 == v2.model.sha256
    assert not v3.calibrated


def test_a_level_still_moving_gets_no_rebaseline_proposal() -> None:
    cfg = AnomalyModelConfig(
        name="pump",
        points=["flow", "pressure", "temp"],
        calibration_s=300,
        propose_rebaseline_s=300,
    )
    events: dict[str, list[str]] = {}
    for case, ramp in (("settled", 0.0), ("moving", 40 * 0.05)):
        rows = normal_rows(1400, seed=11)
        rows[500:, 1] += 40 * 0.05 + np.linspace(0, ramp, 900)
        det = open_detector(cfg, None)
        verdicts = [det.push_row(i * 1000, r) for i, r in enumerate(rows)]
        events[case] = [v.event["event"] for v in verdicts if v is not None and v.event]
    assert events == {"settled": ["raised", "rebaseline_proposed"], "moving": ["raised"]}
