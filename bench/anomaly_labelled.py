"""Row- and event-level figures for any labelled CSV: `python bench/anomaly_labelled.py CSV...`.

Each CSV is one series: a label column (``--label``, default ``anomaly``: 1 inside an
anomaly window), an optional time column, and the numeric columns the detector sees. For
each file, calibrate on the first ``--calibrate-rows`` rows and score the rest with the very
code of `watchpost anomaly score`, once with the shipped model (generic-v6, its defaults)
and once with the previous one (generic-v5, its defaults), generic-v3, generic-v2 and
generic-v1 (still shipped) and generic-v4 (round 11 of `bench/anomaly_search.py`, shipped,
not the default);
print them side by side:
row level (F1, false-alarm rate, missed-alarm rate over the pooled scored rows) and event
level (windows detected, median delay from a window's start to the event, false events per
hour of normal rows; see `watchpost.anomaly_eval`). One row is one second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))

from skab_data import LabelledSeries, read_labelled

from watchpost.anomaly_cli import CsvTable, score_table
from watchpost.anomaly_eval import Tally
from watchpost.models import PREVIOUS_MODEL, SHIPPED_MODEL, shipped_model_path

DETECTORS = {
    f"shipped ({SHIPPED_MODEL})": shipped_model_path(SHIPPED_MODEL),
    f"previous ({PREVIOUS_MODEL})": shipped_model_path(PREVIOUS_MODEL),
    "generic-v3": shipped_model_path("generic-v3"),  # the default before generic-v5
    "generic-v2": shipped_model_path("generic-v2"),  # still shipped, selectable
    "generic-v1": shipped_model_path("generic-v1"),
    "round 11 (generic-v4)": shipped_model_path("generic-v4"),  # shipped, not the default
}


def predict(
    s: LabelledSeries, model: Path, cal: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The detector's event state per scored row, and the truth, after ``cal`` rows."""
    table = CsvTable(columns=s.columns or ["x"], rows=[list(map(float, r)) for r in s.values])
    pred = np.zeros(len(s.values), dtype=bool)
    for r in score_table(table, model_path=model, calibrate_rows=cal):
        pred[r.row] = r.anomaly
    return pred[cal:], s.truth[cal:]


def tally(series: Iterable[LabelledSeries], model: Path, cal: int) -> Tally:
    return Tally().extend(predict(s, model, cal) for s in series)


def report(title: str, series: Sequence[LabelledSeries], cal: int) -> None:
    """Print one block: the shipped and the previous detector on ``series``."""
    print(f"{title} ({len(series)} series, calibration {cal} rows each)")
    for name, model in DETECTORS.items():
        t = tally(series, model, cal)
        print(f"  {name:22s} {t.row_line()}; {t.event_line()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--calibrate-rows", type=int, default=400)
    ap.add_argument("--sep", default=",")
    ap.add_argument("--time-column", default=None)
    ap.add_argument("--label", default="anomaly")
    args = ap.parse_args(argv)
    series = [
        read_labelled(p, sep=args.sep, time_column=args.time_column, label=args.label)
        for p in args.csv
    ]
    report(", ".join(p.name for p in args.csv[:3]), series, args.calibrate_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
