"""SKAB for the anomaly detector: `python bench/skab.py VALVE1_DIR [ANOMALY_FREE_CSV]`.

The shipped detector (generic-v6) and the previous one (generic-v5), each with its own
defaults, side by side (and generic-v3, v2, v1 and v4), at row level (F1, FAR, MAR: the
SKAB outlier protocol) and at event level (windows detected, median delay, false events
per hour of normal rows: see `watchpost.anomaly_eval`), each file calibrated on its first
400 rows and scored with the very code of `watchpost anomaly score` (label columns dropped
before the model sees anything):

- `valve1`, all 16 files pooled, then by group of files (0-3, 4-7, 8-11, 12-15). The
  defaults were chosen on all of these files (in-sample); the held-out figures, each group
  measured with the choice made on the other three, come from `bench/anomaly_search.py`.
  generic-v6's predictor was also trained on the normal rows of these 16 files, so its
  valve1 figures here are in-sample twice over; its held-out figure (round 13) trains each
  fold's predictor on the other three groups only;
- the `anomaly-free` file as a gate: cut into chunks (calibrate on 400 rows, score 750),
  and calibrated on its first two hours (7,200 rows) scoring the rest.

The SKAB data is GPL-3.0 and is never copied into this repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from anomaly_labelled import report
from skab_data import CHUNK_CAL, LONG_CAL, anomaly_free_series, valve_series

GROUPS = [(0, 3), (4, 7), (8, 11), (12, 15)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("valve1", type=Path, metavar="VALVE1_DIR")
    p.add_argument("anomaly_free", type=Path, nargs="?", metavar="ANOMALY_FREE_CSV")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    files = valve_series(args.valve1)
    if not files:
        print(f"no CSV files under {args.valve1}", file=sys.stderr)
        return 2
    report("valve1, all files", files, CHUNK_CAL)
    for a, b in GROUPS:
        report(f"valve1, files {a}-{b}", files[a : b + 1], CHUNK_CAL)
    if args.anomaly_free:
        chunks, whole = anomaly_free_series(args.anomaly_free)
        report("anomaly-free, chunks of 400 + 750 rows", chunks, CHUNK_CAL)
        report("anomaly-free, two hours of calibration", [whole], LONG_CAL)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
