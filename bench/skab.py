"""SKAB outlier protocol for the anomaly detector: `python bench/skab.py DIR [DIR ...]`.

For every `;`-separated CSV under the folders given: calibrate on the first 400 rows, score
the rest with the very code of `watchpost anomaly score` (the `anomaly` and `changepoint`
label columns are dropped before the model sees anything), and compare the `anomaly` output
with the file's labels. Prints F1, false-alarm rate FP/(FP+TN) and missed-alarm rate
FN/(FN+TP) over all scored rows pooled, and per file with ``--per-file``.

The SKAB data is GPL-3.0 and is never copied into this repository.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from watchpost.anomaly_cli import read_table, score_table
from watchpost.config.anomaly import AnomalyModelConfig

LABELS = ("anomaly", "changepoint")
TIME_COLUMN = "datetime"
CALIBRATION_ROWS = 400
DEFAULTS = AnomalyModelConfig(name="skab", points=["x"])


def labels(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        reader = csv.reader(f, delimiter=";")
        header = [h.strip() for h in next(reader)]
        col = header.index("anomaly")
        return np.array([float(r[col]) > 0.5 for r in reader if r], dtype=bool)


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    tn = int((~pred & ~truth).sum())
    return tp, fp, fn, tn


def rates(tp: int, fp: int, fn: int, tn: int) -> tuple[float, float, float]:
    f1 = 2 * tp / max(1, 2 * tp + fp + fn)
    far = fp / max(1, fp + tn)
    mar = fn / max(1, fn + tp)
    return f1, far, mar


def score_file(path: Path, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    table = read_table(
        path, sep=";", time_column=TIME_COLUMN, ignore=[c for c in LABELS if c in _header(path)]
    )
    out = list(
        score_table(
            table,
            model_path=args.model,
            calibrate_rows=CALIBRATION_ROWS,
            threshold_factor=args.threshold_factor,
            relation_factor=args.relation_factor,
            hold=args.hold,
            clear=args.clear,
        )
    )
    truth = labels(path)
    pred = np.zeros(len(truth), dtype=bool)
    for r in out:
        pred[r.row] = r.anomaly
    return pred[CALIBRATION_ROWS:], truth[CALIBRATION_ROWS:]


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [h.strip() for h in next(csv.reader(f, delimiter=";"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    p.add_argument("--model", type=Path, help="a .tflite model (default: the shipped one)")
    p.add_argument("--threshold-factor", type=float, default=DEFAULTS.threshold_factor)
    p.add_argument(
        "--relation-factor",
        type=float,
        default=DEFAULTS.relation_factor,
        help="0: the point score alone (the model before the relation part)",
    )
    p.add_argument("--hold", type=int)
    p.add_argument("--clear", type=int)
    p.add_argument("--per-file", action="store_true", help="print each file's figures too")
    args = p.parse_args(argv)
    files = sorted(f for d in args.dirs for f in d.rglob("*.csv"))
    if not files:
        print(f"no CSV files under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    total = np.zeros(4, dtype=int)
    t0 = time.perf_counter()
    for f in files:
        pred, truth = score_file(f, args)
        c = np.array(confusion(pred, truth))
        total += c
        if args.per_file:
            f1, far, mar = rates(*c)
            print(f"{f}: rows {len(truth)}  F1 {f1:.3f}  FAR {far:.1%}  MAR {mar:.1%}")
    f1, far, mar = rates(*total)
    print(
        f"SKAB outlier protocol, {len(files)} file(s), {int(total.sum())} scored rows "
        f"(calibration: first {CALIBRATION_ROWS} rows of each file)"
    )
    print(
        f"F1 {f1:.3f}  FAR {far:.1%}  MAR {mar:.1%}  "
        f"(TP {total[0]}, FP {total[1]}, FN {total[2]}, TN {total[3]}); "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
