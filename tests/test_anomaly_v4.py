"""generic-v4 (round 11 of bench/anomaly_search.py; shipped, not the default): its LiteRT graph
computes what its card says (per point the mean of the last 10 of 64 rows and the log
difference energy of the last 32), its sidecar's numbers apply, and the device scores a
series exactly as the search that chose those numbers did; so does generic-v5 (round 12,
the default until round 13)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.test_anomaly import normal_rows
from watchpost.anomaly import LiteRTModel, open_detector
from watchpost.anomaly_cli import CsvTable, score_table
from watchpost.anomaly_part import CalibrationError
from watchpost.config.anomaly import AnomalyModelConfig
from watchpost.models import SHIPPED_MODEL, shipped_model_path

V4 = shipped_model_path("generic-v4")


def _search() -> ModuleType:
    """bench/anomaly_search.py, the search that chose generic-v4's numbers."""
    path = Path(__file__).resolve().parents[1] / "bench" / "anomaly_search.py"
    spec = importlib.util.spec_from_file_location("anomaly_search_for_tests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_graph_is_a_10_row_mean_and_the_last_32_rows_difference_energy() -> None:
    model = LiteRTModel(V4, ["a", "b", "c"])
    assert model.robust
    assert model.window == 64
    assert (model.meta["level"], model.meta["level_rows"], model.meta["roughness_rows"]) == (
        "mean",
        10,
        32,
    )
    rng = np.random.default_rng(11)
    windows = rng.standard_normal((6, 64, 3))
    windows[0, 32:, 2] = 3.0  # flat over the last 32 rows only: the roughness floor
    windows[1, :32, 1] += 50.0  # a jump in the first 32 rows is not in the roughness
    feats = model.features_many(windows).reshape(6, 3, 2)
    mean = windows[:, -10:, :].mean(axis=1)
    rough = np.log(np.mean(np.diff(windows[:, -32:, :], axis=1) ** 2, axis=1) + 1e-4)
    assert feats[..., 0] == pytest.approx(mean, abs=1e-5)
    assert feats[..., 1] == pytest.approx(rough, abs=1e-4)
    assert feats[0, 2, 1] == pytest.approx(np.log(1e-4), abs=1e-4)


def test_its_sidecar_numbers_apply_and_it_is_not_the_default() -> None:
    assert SHIPPED_MODEL == "generic-v6"  # round 11's rule did not choose generic-v4
    cfg = AnomalyModelConfig(name="pump", points=["a", "b"], model=V4)
    p = open_detector(cfg, None).params
    assert (p.threshold, p.top_k, p.relation_factor) == (12.0, 1, 64.0)
    assert (p.roughness_weight, p.calibration_factor) == (1.0, 2.0)
    assert (p.drift_lag, p.hold, p.clear) == (60, 3, 60)
    with pytest.raises(CalibrationError, match="at least 132"):  # window 64 + lag 60 + 8
        open_detector(cfg.model_copy(update={"calibration_s": 131}), None)
    assert open_detector(cfg.model_copy(update={"calibration_s": 132}), None).params


def test_the_device_scores_as_the_search_that_chose_it() -> None:
    search = _search()
    rows = normal_rows(1400, seed=12)
    rows[600:700, 0] -= 1.5  # a small level shift
    rows[900:960, 1] += np.linspace(0, 4, 60)  # a ramp
    rows[1100:1200, 2] *= 3.0  # louder noise
    rows = np.round(rows, 4)
    table = CsvTable(columns=["a", "b", "c"], rows=[list(map(float, r)) for r in rows])
    device = np.array(
        [r.anomaly for r in score_table(table, model_path=V4, calibrate_rows=400)], dtype=bool
    )
    series = search.LabelledSeries("t", [], rows, np.zeros(len(rows), dtype=bool))
    scored = search.score_series11(series, 400, ("short", 10, 30, 10, 60))
    proxy = search.decide9(scored, (1.0, 2.0, 64.0, 12.0, 3, 60))
    assert device.any()
    assert device.tolist() == proxy.tolist()


def test_generic_v5_scores_as_the_search_that_chose_it() -> None:
    """generic-v5 (the default of round 12, the previous since round 13): the device
    against the search's proxy."""
    search = _search()
    rows = normal_rows(1400, seed=13)
    rows[600:700, 0] -= 6.0  # a drop
    rows[900:1000, 1] += np.linspace(0, 12, 100)  # a ramp
    rows[1100:1200, 2] = rows[1100, 2]  # a stuck point
    rows = np.round(rows, 4)
    table = CsvTable(columns=["a", "b", "c"], rows=[list(map(float, r)) for r in rows])
    v5 = shipped_model_path("generic-v5")
    device = np.array(
        [r.anomaly for r in score_table(table, model_path=v5, calibrate_rows=400)], dtype=bool
    )
    series = search.LabelledSeries("t", [], rows, np.zeros(len(rows), dtype=bool))
    scored = search.score_series12(series, 400, ("median5", "mahalanobis", 180))
    proxy = search.decide9(scored, (1.0, 2.0, 16.0, 32.0, 5, 30))
    assert device.any()
    assert device.tolist() == proxy.tolist()
