"""Speed and memory of the anomaly runner: `python bench/anomaly_speed.py [--points 200]`.

Prints, for the shipped model on this machine: the time of one scored window (LiteRT
invoke plus the runner's numpy work) for N points, the time per point-second at a 1 s grid,
the time to calibrate on two hours of rows, and the process's resident memory before the
runner is built, after it is calibrated, and after scoring.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from watchpost.anomaly import AnomalyDetector, DetectorParams, LiteRTModel
from watchpost.config.anomaly import AnomalyModelConfig
from watchpost.models import shipped_model_path


def rss_mib() -> float:
    """Current resident set size (Linux), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--calibration-s", type=float, default=7200)
    ap.add_argument("--windows", type=int, default=500)
    args = ap.parse_args()
    n = args.points
    rss0 = rss_mib()
    points = [f"p{i}" for i in range(n)]
    cfg = AnomalyModelConfig(name="bench", points=points, calibration_s=args.calibration_s)
    model = LiteRTModel(shipped_model_path(), points, name="bench")
    det = AnomalyDetector(name="bench", model=model, params=DetectorParams.from_config(cfg))
    rng = np.random.default_rng(0)
    cal_rows = DetectorParams.from_config(cfg).calibration_rows
    rows = rng.standard_normal((cal_rows + args.windows, n))
    t0 = time.perf_counter()
    for i in range(cal_rows):
        det.push_row(i * 1000, rows[i])
    t_cal = time.perf_counter() - t0
    rss_cal = rss_mib()
    t0 = time.perf_counter()
    for i in range(cal_rows, cal_rows + args.windows):
        det.push_row(i * 1000, rows[i])
    per_window = (time.perf_counter() - t0) / args.windows
    t0 = time.perf_counter()
    for _ in range(args.windows):
        model.features(rows[: model.window])
    per_invoke = (time.perf_counter() - t0) / args.windows
    print(f"model {model.path.name}: window {model.window} samples, {n} points, 1 thread")
    print(
        f"scored window (invoke + runner): {per_window * 1e3:.2f} ms  "
        f"= {per_window / n * 1e6:.1f} us per point-second at a 1 s grid "
        f"({per_window * 100:.2f} % of one core)"
    )
    print(f"LiteRT invoke alone: {per_invoke * 1e3:.2f} ms per window")
    print(
        f"calibration on {cal_rows} rows ({args.calibration_s / 3600:.1f} h at 1 s): {t_cal:.1f} s"
    )
    print(
        f"resident memory: {rss0:.0f} MiB before the model, {rss_cal:.0f} MiB calibrated, "
        f"{rss_mib():.0f} MiB after scoring, peak "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
