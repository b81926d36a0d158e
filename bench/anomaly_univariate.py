"""Univariate faults, NAB-style: `python bench/anomaly_univariate.py`.

Runs every series of `tests/univariate_series.py` (five realistic sensor signals, each with
three faults of one of five kinds, fixed seed) through the very code of `watchpost anomaly
score`, each series alone (one point), calibrated on its first hour, with the shipped
detector (generic-v6) and the previous one (generic-v5), each with its own defaults (and
generic-v3, v2, v1 and v4). Prints
per fault kind and pooled: windows detected, median delay, false events per hour of normal
rows, and the NAB-style score (`watchpost.anomaly_eval`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from anomaly_labelled import DETECTORS, predict
from skab_data import LabelledSeries

from tests.univariate_series import CALIBRATION_ROWS, FAULTS, every_series
from watchpost.anomaly_eval import Tally


def main() -> int:
    t0 = time.perf_counter()
    series = every_series()
    print(
        f"{len(series)} univariate series of {len(series[0].values) // 3600} h, "
        f"calibration {CALIBRATION_ROWS} rows each"
    )
    for name, model in DETECTORS.items():
        pooled = Tally()
        print(name)
        for fault in FAULTS:
            t = Tally()
            for s in series:
                if s.fault != fault:
                    continue
                ls = LabelledSeries(s.name, [s.signal], s.values[:, None], s.truth)
                pred, truth = predict(ls, model, CALIBRATION_ROWS)
                t.add(pred, truth)
                pooled.add(pred, truth)
            print(f"  {fault:7s} {t.event_line()}; NAB {t.nab_score:.0f}", flush=True)
        print(f"  all     {pooled.event_line()}; NAB {pooled.nab_score:.0f}; {pooled.row_line()}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
