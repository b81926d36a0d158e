"""How generic-v1's numbers were chosen: `python bench/anomaly_tune.py DIR` (generic-v2's:
`bench/anomaly_search.py`).

Two ways of halving the files (even and odd positions in sorted order; first and second
half): for each half, the grid point with the best pooled F1 on the other half's files is
reported together with its figures on the half itself, so the figure printed for a choice
was measured on files it was not chosen on; the held-out predictions of both halves are
then pooled into one cross-validated figure per way of halving.
A choice maximises F1 among the grid points whose false-alarm rate stays under ``--max-far``
on the files it is chosen on. With ``--normal FILE`` it also prints the false-alarm rate on
a file of normal operation, calibrated on its first ``--normal-cal`` rows (default 7200, the
daemon's two hours at 1 s), for every choice reported.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from watchpost.anomaly import AnomalyDetector, DetectorParams, LiteRTModel
from watchpost.anomaly_cli import read_table
from watchpost.models import PREVIOUS_MODEL, shipped_model_path

CAL = 400


def run_file(
    path: Path, params: DetectorParams, model_path: Path, cal: int = CAL
) -> tuple[np.ndarray, np.ndarray]:
    header = path.read_text().split("\n", 1)[0].split(";")
    ignore = [c for c in ("anomaly", "changepoint") if c in header]
    table = read_table(path, sep=";", time_column="datetime", ignore=ignore)
    truth = np.zeros(len(table.rows), dtype=bool)
    if "anomaly" in header:
        col = header.index("anomaly")
        lines = path.read_text().splitlines()[1:]
        truth = np.array([float(x.split(";")[col]) > 0.5 for x in lines if x])
    model = LiteRTModel(model_path, table.columns)
    det = AnomalyDetector(name="tune", model=model, params=params)
    pred = np.zeros(len(table.rows), dtype=bool)
    for i, r in enumerate(table.rows):
        if r is None:
            det.gap()
            continue
        v = det.push_row(i * 1000, np.asarray(r))
        pred[i] = bool(v and v.anomaly)
    return pred[cal:], truth[cal:]


def pooled(results: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    p = np.concatenate([r[0] for r in results])
    t = np.concatenate([r[1] for r in results])
    tp, fp = int((p & t).sum()), int((p & ~t).sum())
    fn, tn = int((~p & t).sum()), int((~p & ~t).sum())
    return (2 * tp / max(1, 2 * tp + fp + fn), fp / max(1, fp + tn), fn / max(1, fn + tp))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--normal", type=Path)
    ap.add_argument("--model", type=Path, default=shipped_model_path(PREVIOUS_MODEL))
    ap.add_argument("--normal-cal", type=int, default=7200)
    ap.add_argument("--max-far", type=float, default=0.10)
    ap.add_argument(
        "--relation-on",
        action="store_true",
        help="keep the relation part on: leave 0 out of the relation factors",
    )
    args = ap.parse_args()
    files = sorted(args.dir.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    grid = {
        "threshold_factor": [4.0, 6.0, 8.0],
        "relation_factor": [0.0, 6.0, 8.0, 10.0, 12.0],  # 0: no relation part
        "drift_lag": [50, 150],
        "hold": [5, 15],
        "clear": [10, 30],
    }
    if args.relation_on:
        grid["relation_factor"] = [f for f in grid["relation_factor"] if f > 0]
    table = {}
    for values in itertools.product(*grid.values()):
        params = DetectorParams(calibration_rows=CAL, **dict(zip(grid, values, strict=True)))
        table[values] = [run_file(f, params, args.model) for f in files]
    n = len(files)

    def rank(v: tuple, idx: list[int]) -> tuple[bool, float]:
        f1, far, _mar = pooled([table[v][i] for i in idx])
        return far <= args.max_far, f1

    halvings = {
        "even/odd files": [list(range(0, n, 2)), list(range(1, n, 2))],
        "first/second half": [list(range(n // 2)), list(range(n // 2, n))],
    }
    for how, folds in halvings.items():
        held_out: list[tuple[np.ndarray, np.ndarray]] = []
        for k, held in enumerate(folds):
            chosen_on = folds[1 - k]
            best = max(table, key=lambda v, idx=chosen_on: rank(v, idx))
            held_out += [table[best][i] for i in held]
            f1, far, mar = pooled([table[best][i] for i in held])
            f1c = pooled([table[best][i] for i in chosen_on])[0]
            line = (
                f"{how}, half {k}: chosen {dict(zip(grid, best, strict=True))} "
                f"(F1 {f1c:.3f} where chosen); held out: F1 {f1:.3f} FAR {far:.1%} "
                f"MAR {mar:.1%}"
            )
            if args.normal:
                params = DetectorParams(
                    calibration_rows=args.normal_cal, **dict(zip(grid, best, strict=True))
                )
                pred, _t = run_file(args.normal, params, args.model, cal=args.normal_cal)
                line += f"; normal file FAR {pred.mean():.1%}"
            print(line, flush=True)
        f1, far, mar = pooled(held_out)
        print(
            f"{how}: both halves held out, pooled: F1 {f1:.3f} FAR {far:.1%} MAR {mar:.1%}",
            flush=True,
        )
    print("all files, best grid points by F1 with FAR under the limit:")
    every = list(range(n))
    ranked = sorted(table, key=lambda v: rank(v, every), reverse=True)
    for v in ranked[:8]:
        f1, far, mar = pooled([table[v][i] for i in every])
        print(f"  {dict(zip(grid, v, strict=True))}: F1 {f1:.3f} FAR {far:.1%} MAR {mar:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
