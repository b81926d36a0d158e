"""generic-v6 (round 13 of bench/anomaly_search.py, the default): its LiteRT graph computes
what its card says (per point the median of the last 5 of 62 rows, that level minus the
sidecar's linear prediction from the first 32 rows, and the log difference energy of the
last 32), its sidecar's numbers apply, and the device scores a series exactly as the search
that chose it did."""

from __future__ import annotations

import importlib
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
from watchpost.models import PREVIOUS_MODEL, SHIPPED_MODEL, shipped_model_path

V6 = shipped_model_path("generic-v6")


def _round13() -> ModuleType:
    """bench/anomaly_predictor.py (round 13 of bench/anomaly_search.py)."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    return importlib.import_module("anomaly_predictor")


def _search() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "anomaly_search.py"
    spec = importlib.util.spec_from_file_location("anomaly_search_for_v6", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _weights(model: LiteRTModel) -> tuple[np.ndarray, float]:
    (layer,) = model.meta["predictor"]["layers"]
    return np.array(layer["kernel"], dtype=np.float64)[:, 0], float(layer["bias"][0])


def test_it_is_the_default_and_generic_v5_the_previous() -> None:
    assert (SHIPPED_MODEL, PREVIOUS_MODEL) == ("generic-v6", "generic-v5")
    assert shipped_model_path() == V6


def test_the_graph_is_level_residual_of_its_predictor_and_roughness() -> None:
    model = LiteRTModel(V6, ["a", "b", "c"])
    assert model.robust
    assert model.window == 62
    assert model.levels == 2
    assert model.meta["features"] == ["level", "residual", "roughness"]
    assert (model.meta["predictor"]["rows"], model.meta["predictor"]["horizon"]) == (32, 30)
    kernel, bias = _weights(model)
    assert kernel.shape == (32,)
    rng = np.random.default_rng(21)
    windows = rng.standard_normal((6, 62, 3))
    windows[0, 30:, 2] = 3.0  # flat over the last 32 rows only: the roughness floor
    windows[1, :32, 1] += 5.0  # the past moves the prediction, not the level
    feats = model.features_many(windows).reshape(6, 3, 3)
    median = np.median(windows[:, -5:, :], axis=1)
    prediction = np.einsum("npr,r->np", windows[:, :32, :].transpose(0, 2, 1), kernel) + bias
    rough = np.log(np.mean(np.diff(windows[:, -32:, :], axis=1) ** 2, axis=1) + 1e-4)
    assert feats[..., 0] == pytest.approx(median, abs=1e-5)
    assert feats[..., 1] == pytest.approx(median - prediction, abs=1e-4)
    assert feats[..., 2] == pytest.approx(rough, abs=1e-4)
    assert feats[0, 2, 2] == pytest.approx(np.log(1e-4), abs=1e-4)
    assert feats[1, 1, 1] < feats[2, 1, 1] - 1.0  # a higher past, a higher prediction


def test_its_sidecar_numbers_apply_and_its_calibration_needs_250_rows() -> None:
    cfg = AnomalyModelConfig(name="pump", points=["a", "b"])
    p = open_detector(cfg, None).params
    assert (p.threshold, p.top_k, p.relation_factor) == (24.0, 1, 16.0)
    assert (p.roughness_weight, p.calibration_factor) == (1.0, 2.0)
    assert (p.drift_lag, p.hold, p.clear) == (180, 5, 30)
    with pytest.raises(CalibrationError, match="at least 250"):  # window 62 + lag 180 + 8
        open_detector(cfg.model_copy(update={"calibration_s": 249}), None)
    assert open_detector(cfg.model_copy(update={"calibration_s": 250}), None).params


def test_the_device_scores_as_the_search_that_chose_it() -> None:
    search, r13 = _search(), _round13()
    rows = normal_rows(1400, seed=14)
    rows[600:700, 0] -= 1.2  # a small level shift
    rows[900:1000, 1] += np.linspace(0, 10, 100)  # a ramp
    rows[1100:1200, 2] = rows[1100, 2]  # a stuck point
    rows = np.round(rows, 4)
    table = CsvTable(columns=["a", "b", "c"], rows=[list(map(float, r)) for r in rows])
    device = np.array([r.anomaly for r in score_table(table, calibrate_rows=400)], dtype=bool)
    kernel, bias = _weights(LiteRTModel(V6, ["a"]))
    pred = r13.Predictor("past", 30, [[(kernel[:, None], np.array([bias]))]])
    series = search.LabelledSeries("t", [], rows, np.zeros(len(rows), dtype=bool))
    scored = r13.score13(series, 400, pred, "add", 180)
    proxy = search.decide9(scored, (1.0, 2.0, 16.0, 24.0, 5, 30))
    assert device.any()
    assert device.tolist() == proxy.tolist()


def test_the_training_windows_line_up_with_the_graph_and_skip_labelled_rows() -> None:
    """The training pipeline's inputs (``train_predictor``) are the graph's: the residual of
    the window ending at row t is level(t) minus the prediction from rows t-61 .. t-30; and a
    window that touches a labelled row is never trained on."""
    from watchpost.models import train_predictor as tp  # noqa: PLC0415

    model = LiteRTModel(V6, ["a", "b"])
    kernel, bias = _weights(model)
    rng = np.random.default_rng(22)
    z = np.cumsum(rng.standard_normal((160, 2)), axis=0) * 0.3
    ends = np.arange(61, 160)
    feats = model.features_many(np.stack([z[t - 61 : t + 1] for t in ends])).reshape(-1, 2, 3)
    layers = [(kernel[:, None], np.array([bias]))]
    past = tp.past_inputs(z, 30)[ends]  # [windows, points, 32]
    expected = tp.level5(z)[ends] - tp.run_layers(layers, past.reshape(-1, 32)).reshape(-1, 2)
    assert feats[..., 1] == pytest.approx(expected, abs=1e-4)

    values = 10.0 + rng.standard_normal((500, 2))
    truth = np.zeros(500, dtype=bool)
    truth[450:460] = True
    x, y = tp.training_pairs([(values, truth)], "past", 30)
    # rows 61 .. 449 end a window of 62 normal rows; windows ending at 450 .. 499 (50) do not
    assert len(x) == len(y) == 2 * (450 - 61)
    clean, _ = tp.training_pairs([(values, np.zeros(500, dtype=bool))], "past", 30)
    assert len(clean) == 2 * (500 - 61)
