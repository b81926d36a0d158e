"""The anomaly runner: the shipped model on the installed LiteRT, shape checks, calibration
state across restarts, events raised and cleared, and the asyncio runner around it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pydantic
import pytest

from watchpost.anomaly import (
    AnomalyDetector,
    AnomalyRunner,
    CalibrationError,
    DetectorParams,
    LiteRTModel,
    ModelShapeError,
    open_detector,
)
from watchpost.config.anomaly import AnomalyConfig, AnomalyModelConfig
from watchpost.models import shipped_model_path
from watchpost.samples import Quality, Sample

SITE_MODEL = Path(__file__).with_name("anomaly_fixtures") / "site-3points.tflite"
PARAMS = DetectorParams(calibration_rows=300, hold=3, clear=5)


def normal_rows(n: int, p: int = 3, seed: int = 0) -> np.ndarray:
    """Noisy, gently wavy signals at different scales and offsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    base = np.array([20.0, 1.5, 230.0])[:p]
    scale = np.array([0.5, 0.05, 3.0])[:p]
    return base + scale * (rng.standard_normal((n, p)) + 0.3 * np.sin(t / 40))


def detector(points: list[str], state: Path | None = None) -> AnomalyDetector:
    model = LiteRTModel(shipped_model_path(), points, name="pump")
    return AnomalyDetector(name="pump", model=model, params=PARAMS, state_path=state)


def feed(det: AnomalyDetector, rows: np.ndarray, start: int = 0) -> list:
    return [det.push_row((start + i) * 1000, r) for i, r in enumerate(rows)]


def test_shipped_model_scores_a_window_with_installed_runtime() -> None:
    model = LiteRTModel(shipped_model_path(), ["a", "b"])
    assert model.channel_independent
    assert model.n_features == 6  # generic-v6: level, residual, roughness per point
    rng = np.random.default_rng(3)
    window = np.stack([np.full(model.window, 2.0), rng.standard_normal(model.window)], axis=1)
    feats = model.features(window)
    assert feats.shape == (6,)
    assert np.all(np.isfinite(feats))
    level_a, _resid_a, rough_a, _level_b, _resid_b, rough_b = feats
    assert level_a == pytest.approx(2.0, abs=0.05)  # a flat signal's level is its value
    assert rough_a < rough_b - 3  # a flat signal is far smoother than noise


def test_shipped_model_fits_any_number_of_points() -> None:
    for n in (1, 7, 200):
        model = LiteRTModel(shipped_model_path(), [f"p{i}" for i in range(n)])
        out = model.features_many(np.zeros((3, model.window, n)))
        assert out.shape == (3, model.features_per_row * n)
        assert model.features_per_row == 3


def test_model_whose_shape_does_not_fit_its_points_is_refused() -> None:
    with pytest.raises(ModelShapeError) as err:
        LiteRTModel(SITE_MODEL, ["flow", "pressure"], name="pump")
    text = str(err.value)
    assert "'pump'" in text
    assert "3 point(s)" in text
    assert "2 point(s): flow, pressure" in text
    cfg = AnomalyModelConfig(name="pump", points=["a", "b", "c", "d"], model=SITE_MODEL)
    with pytest.raises(ModelShapeError, match="4 point"):
        open_detector(cfg, None)


def test_site_model_with_matching_points_scores() -> None:
    model = LiteRTModel(SITE_MODEL, ["flow", "pressure", "vibration"])
    assert not model.channel_independent
    feats = model.features(np.zeros((model.window, 3)))
    assert feats.shape == (6,)
    assert np.all(np.isfinite(feats))


def test_calibration_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "anomaly" / "pump.json"
    rows = normal_rows(500)
    first = detector(["a", "b", "c"], state)
    out1 = feed(first, rows)
    assert first.calibrated
    assert state.exists()
    assert out1[PARAMS.calibration_rows - 1] is None  # the calibration rows are not scored
    assert out1[PARAMS.calibration_rows] is not None  # scoring starts right after
    saved = json.loads(state.read_text())
    assert saved["points"] == ["a", "b", "c"]
    assert saved["rows"] == PARAMS.calibration_rows

    again = detector(["a", "b", "c"], state)  # a restart: a new process reads the state
    assert again.calibrated
    assert again.calibration.threshold == pytest.approx(first.calibration.threshold)
    # after a window's worth of rows it scores exactly like the detector that calibrated
    tail = rows[PARAMS.calibration_rows :]
    out2 = feed(again, tail, PARAMS.calibration_rows)
    w = again.model.window
    s1 = [v.score for v in out1[PARAMS.calibration_rows + w - 1 :]]
    s2 = [v.score for v in out2[w - 1 :]]
    assert s1 == pytest.approx(s2)


def test_calibration_of_other_points_or_corrupt_state_is_not_reused(tmp_path: Path) -> None:
    state = tmp_path / "pump.json"
    feed(detector(["a", "b", "c"], state), normal_rows(PARAMS.calibration_rows))
    assert detector(["a", "b", "c"], state).calibrated
    assert not detector(["a", "b", "x"], state).calibrated
    state.write_text('{"version": 1, "points": ')  # a torn write from some other tool
    fresh = detector(["a", "b", "c"], state)
    assert not fresh.calibrated
    feed(fresh, normal_rows(PARAMS.calibration_rows))
    assert json.loads(state.read_text())["points"] == ["a", "b", "c"]


def test_too_few_calibration_rows_is_refused_up_front() -> None:
    model = LiteRTModel(shipped_model_path(), ["a"])
    with pytest.raises(CalibrationError, match="at least 120 are needed"):  # 62 + 50 + 8
        AnomalyDetector(
            name="short", model=model, params=DetectorParams(calibration_rows=40, drift_lag=50)
        )


def test_gaps_during_calibration_make_it_wait_for_more_rows_not_fail() -> None:
    model = LiteRTModel(shipped_model_path("generic-v5"), ["a"])  # a window of 32 rows
    det = AnomalyDetector(
        name="gappy", model=model, params=DetectorParams(calibration_rows=60, drift_lag=10)
    )
    for seed in range(8):  # 20 rows between gaps: never one whole window of 32
        feed(det, normal_rows(20, p=1, seed=seed))
        det.gap()
    assert not det.calibrated
    feed(det, normal_rows(120, p=1, seed=99))
    assert det.calibrated


def events(verdicts: list) -> list[dict]:
    return [v.event for v in verdicts if v is not None and v.event is not None]


def test_level_shift_raises_then_clears_naming_the_point() -> None:
    det = detector(["flow", "pressure", "temp"])
    rows = normal_rows(900, seed=5)
    rows[500:650, 0] -= 10 * 0.5  # flow drops by ten of its standard deviations
    out = feed(det, rows)
    ev = events(out)
    assert [e["event"] for e in ev] == ["raised", "cleared"]
    raised, cleared = ev
    assert raised["model"] == "pump"
    assert raised["points"][0] == "flow"
    assert raised["score"] > raised["threshold"]
    assert 500_000 <= raised["ts"] <= 520_000  # raised within seconds of the drop
    assert 650_000 <= cleared["ts"] <= 700_000
    assert set(raised) >= {"event", "model", "score", "threshold", "points", "ts"}
    assert all(v is None or not v.anomaly for v in out[300:500])  # no false alarm before


def test_stuck_sensor_raises() -> None:
    det = detector(["flow", "pressure", "temp"])
    rows = normal_rows(700, seed=6)
    rows[450:, 2] = rows[450, 2]  # temp freezes at its last value
    ev = events(feed(det, rows))
    assert ev
    assert ev[0]["event"] == "raised"
    assert ev[0]["points"][0] == "temp"


def test_config_rejects_duplicates_and_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="more than once"):
        AnomalyConfig(
            models=[
                AnomalyModelConfig(name="a", points=["x"]),
                AnomalyModelConfig(name="a", points=["y"]),
            ]
        )
    with pytest.raises(pydantic.ValidationError, match="listed more than once"):
        AnomalyModelConfig(name="a", points=["x", "x"])
    with pytest.raises(pydantic.ValidationError, match="extra"):
        AnomalyModelConfig.model_validate({"name": "a", "points": ["x"], "treshold": 3})
    for field in AnomalyModelConfig.model_fields.values():
        assert field.description


def samples_for(rows: np.ndarray, points: list[str], t0_ms: int) -> list[Sample]:
    out = []
    for i, r in enumerate(rows):
        for j, p in enumerate(points):
            out.append(Sample(p, t0_ms + i * 1000 + 10 * j, float(r[j]), Quality.GOOD))
    return out


def test_runner_turns_samples_into_events_and_keeps_state(tmp_path: Path) -> None:
    points = ["flow", "pressure", "temp"]
    cfg = AnomalyConfig(
        models=[
            AnomalyModelConfig(name="pump", points=points, calibration_s=300, hold_s=3, clear_s=5)
        ]
    )
    rows = normal_rows(800, seed=7)
    rows[500:600, 1] += 10 * 0.05
    got: list[dict] = []

    async def emit(event: dict) -> None:
        got.append(event)

    async def main() -> AnomalyRunner:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=emit)
        task = asyncio.create_task(runner.run(), name="anomaly")
        t0 = 1_700_000_000_000
        for s in samples_for(rows, points, t0):
            runner.observe(s)
            runner.observe(Sample("unrelated", s.ts, 1.0, Quality.GOOD))  # ignored
        await asyncio.wait_for(runner.idle(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return runner

    runner = asyncio.run(main())
    assert [e["event"] for e in got] == ["raised", "cleared"]
    assert got[0]["points"][0] == "pressure"
    assert got[0]["model"] == "pump"
    st = runner.status()["models"]["pump"]
    assert st["calibrated"]
    assert not st["raised"]
    assert (tmp_path / "anomaly" / "pump.json").exists()
    assert runner.dropped == 0


def test_runner_treats_bad_samples_as_gaps_not_anomalies(tmp_path: Path) -> None:
    points = ["flow", "pressure", "temp"]
    cfg = AnomalyConfig(
        models=[
            AnomalyModelConfig(name="pump", points=points, calibration_s=300, hold_s=3, clear_s=5)
        ]
    )
    got: list[dict] = []
    samples = samples_for(normal_rows(700, seed=8), points, 0)
    # the flow meter stops answering for 60 s: no rows, no scores, no event
    samples = [
        s
        if not (s.point == "flow" and 450_000 <= s.ts < 510_000)
        else Sample(s.point, s.ts, None, Quality.COMM)
        for s in samples
    ]

    async def main() -> AnomalyRunner:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=got.append)
        task = asyncio.create_task(runner.run())
        for s in samples:
            runner.observe(s)
        await asyncio.wait_for(runner.idle(), 30)
        task.cancel()
        return runner

    runner = asyncio.run(main())
    assert got == []
    assert runner.status()["models"]["pump"]["calibrated"]


def test_observe_never_blocks_and_counts_drops(tmp_path: Path) -> None:
    cfg = AnomalyConfig(queue_size=100, models=[AnomalyModelConfig(name="m", points=["a"])])

    async def main() -> AnomalyRunner:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=lambda e: None)
        for i in range(250):  # no run() task: nothing drains the queue
            runner.observe(Sample("a", i * 1000, 1.0, Quality.GOOD))
        return runner

    assert asyncio.run(main()).dropped == 150


def test_slow_model_does_not_delay_the_loop(tmp_path: Path) -> None:
    """A model call that waits for the poll path to go on never holds that path up.

    Each model call blocks until the poller has made five more beats (or has finished): a
    model run on the event loop would wait for beats that cannot come, and time out. No
    wall-clock bound is asserted, so a loaded machine cannot fail it.
    """
    points = ["flow", "pressure", "temp"]
    cfg = AnomalyConfig(
        models=[AnomalyModelConfig(name="pump", points=points, calibration_s=100, drift_lag_s=10)]
    )
    rows = normal_rows(160, seed=11)
    beats = 0
    beat_lock = threading.Lock()
    call_threads: list[int] = []
    waited_out: list[bool] = []
    poller_done = threading.Event()

    def beats_so_far() -> int:
        with beat_lock:
            return beats

    async def main() -> int:
        nonlocal beats
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=lambda e: None)
        det = runner.detectors["pump"]
        fast = det.model.features

        def slow(window: np.ndarray) -> np.ndarray:
            call_threads.append(threading.get_ident())
            start = beats_so_far()
            deadline = time.monotonic() + 5.0
            while beats_so_far() < start + 5 and not poller_done.is_set() and not any(waited_out):
                if time.monotonic() > deadline:
                    waited_out.append(True)
                    break
                time.sleep(0.005)
            else:
                waited_out.append(False)
            return fast(window)

        det.model.features = slow  # type: ignore[method-assign]
        task = asyncio.create_task(runner.run())
        samples = samples_for(rows, points, 0)
        per_beat = len(points)
        for i in range(0, len(samples), per_beat):  # the poller: one row every 20 ms
            for s in samples[i : i + per_beat]:
                runner.observe(s)
            await asyncio.sleep(0.02)
            with beat_lock:
                beats += 1
        poller_done.set()
        task.cancel()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert call_threads  # the slow model was really in use while the beat went on
    assert loop_thread not in call_threads
    assert not any(waited_out), "a model call held the poll path up"


def coupled_rows(n: int, seed: int) -> np.ndarray:
    """Flow and pump current that move together over a wide range, plus a free point."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    flow = 30 + 5 * np.sin(t / 25) + 0.3 * rng.standard_normal(n)
    current = 1.0 + 0.1 * (flow - 30) + 0.02 * rng.standard_normal(n)
    temp = 40 + 0.2 * rng.standard_normal(n)
    return np.stack([flow, current, temp], axis=1)


def test_broken_relation_between_points_raises_by_the_relation_part() -> None:
    """Each point stays in its normal range; only their relation breaks."""
    rows = coupled_rows(800, seed=12)
    noise = 0.02 * np.random.default_rng(13).standard_normal(150)
    rows[500:650, 1] = 1.0 - 0.1 * (rows[500:650, 0] - 30) + noise  # falls as flow rises
    points = ["flow", "current", "temp"]
    params = DetectorParams(calibration_rows=300, hold=3, clear=5)
    with_relation = AnomalyDetector(
        name="pump", model=LiteRTModel(shipped_model_path(), points), params=params
    )
    ev = events(feed(with_relation, rows))
    assert ev
    assert ev[0]["event"] == "raised"
    assert 500_000 <= ev[0]["ts"] <= 560_000
    assert set(ev[0]["points"][:2]) == {"flow", "current"}
    assert "temp" not in ev[0]["points"]
    point_only = AnomalyDetector(
        name="pump",
        model=LiteRTModel(shipped_model_path(), points),
        params=dataclasses.replace(params, relation_factor=0),
    )
    out = feed(point_only, rows)
    # each point alone looks normal once the switch-over (a step in the current) is past
    assert all(out[i].score < out[i].threshold / 2 for i in range(540, 650))


def test_relation_part_of_a_single_point_is_its_level() -> None:
    det = detector(["flow"])
    feed(det, normal_rows(400, p=1))
    cal = det.calibration
    assert cal.relation_index == [0]
    assert cal.relation_precision.shape == (1, 1)
    assert cal.relation_threshold > 0


def test_poll_jitter_does_not_break_the_rows(tmp_path: Path) -> None:
    """Samples a little early or late (a period without a new sample) repeat the latest
    values instead of opening a gap, so scoring goes on."""
    points = ["flow", "pressure", "temp"]
    cfg = AnomalyConfig(
        models=[AnomalyModelConfig(name="pump", points=points, calibration_s=300, drift_lag_s=20)]
    )
    rng = np.random.default_rng(4)
    samples = [
        Sample(s.point, s.ts + int(rng.integers(-400, 400)), s.value, s.quality)
        for s in samples_for(normal_rows(500, seed=4), points, 1_000_000)
    ]

    async def main() -> AnomalyRunner:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=lambda e: None)
        task = asyncio.create_task(runner.run())
        for s in samples:
            runner.observe(s)
        await asyncio.wait_for(runner.idle(), 30)
        task.cancel()
        return runner

    runner = asyncio.run(main())
    assert runner.status()["models"]["pump"]["calibrated"]
    assert runner.rows_scored >= 500 - 300 - 10


def test_rows_only_kept_are_added_on_the_loop_and_the_model_runs_in_a_worker(
    tmp_path: Path,
) -> None:
    """While a model calibrates, a row only joins a list: the runner adds it on the event
    loop instead of waking a worker thread each second; the fit and every score (a model
    call) still run in a worker thread, and the events are the same."""
    points = ["flow", "pressure", "temp"]
    cfg = AnomalyConfig(
        models=[AnomalyModelConfig(name="pump", points=points, calibration_s=100, drift_lag_s=10)]
    )
    rows = normal_rows(160, seed=11)
    seen: list[tuple[bool, bool]] = []  # per row pushed: (calibrated before it, on the loop)

    async def main() -> AnomalyRunner:
        runner = AnomalyRunner(config=cfg, state_dir=tmp_path, emit=lambda e: None)
        det = runner.detectors["pump"]
        push = det.push_row
        loop_thread = threading.get_ident()

        def spy(ts: int, values: np.ndarray) -> object:
            seen.append((det.calibrated, threading.get_ident() == loop_thread))
            return push(ts, values)

        det.push_row = spy  # type: ignore[method-assign]
        task = asyncio.create_task(runner.run())
        samples = samples_for(rows, points, 0)
        for i in range(0, len(samples), len(points)):  # one row a period, as polled
            for s in samples[i : i + len(points)]:
                runner.observe(s)
            await asyncio.wait_for(runner.idle(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return runner

    runner = asyncio.run(main())
    rows_needed = runner.detectors["pump"].params.calibration_rows
    assert runner.status()["models"]["pump"]["calibrated"]
    assert len(seen) == len(rows) - 1  # the last row waits for the next period
    on_loop = [i for i, (_calibrated, loop) in enumerate(seen) if loop]
    # every calibration row but the one that completes the fit; never a scored row
    assert on_loop == list(range(rows_needed - 1))
    assert all(calibrated for calibrated, _loop in seen[rows_needed:])
    assert runner.rows_scored == len(rows) - 1 - rows_needed
