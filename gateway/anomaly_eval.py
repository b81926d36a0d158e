"""Scoring a detector the way operators count: events, not rows.

Given, for each scored row, the truth (inside a labelled anomaly window or not) and the
detector's state (an event raised or not), this module counts:

- **row level**: F1, false-alarm rate FP / (FP + TN), missed-alarm rate FN / (FN + TP)
  (the SKAB outlier protocol);
- **event level**: an *event* is a run of rows with the state raised; a *window* is a run of
  labelled rows. A window is *detected* when an event is raised at some row inside it (one
  that starts there, or one already raised when it begins); its *delay* is the time from the
  window's first row to its first raised row. A *false event* starts outside every window
  and not within ``grace_s`` (two minutes) after the end of one: the settling of a process
  after a fault is not a new fault. False events are counted per hour of normal (unlabelled)
  rows.

The **NAB-style score** (Numenta Anomaly Benchmark, standard profile, simplified) weighs
each window's first raised row by where it falls in the window (the scaled sigmoid
``2 / (1 + exp(5 y)) - 1`` of its position ``y`` from -1 at the window's start to 0 at its
end), a missed window -1, and every false event -0.11 (NAB weighs a false detection right
after a window less; here every one weighs fully); then normalises so that a detector that
never raises scores 0 and one that raises at the first row of every window and never
falsely scores 100.

Rows are one period apart (``period_s``, one second by default): times are row indices
times the period. Pure numpy, no detector inside: ``bench/skab.py``, ``bench/anomaly_labelled.py``
and the tests use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]

GRACE_S = 120.0
NAB_FP = 0.11  # NAB standard profile: a false detection costs 0.11, a missed window 1
NAB_FN = 1.0


def _scaled_sigmoid(y: float) -> float:
    """NAB's weight of a detection at relative position ``y`` (-1: window start, 0: end)."""
    return float(2.0 / (1.0 + np.exp(5.0 * y)) - 1.0)


def runs(flags: BoolArray) -> list[tuple[int, int]]:
    """Runs of true values as ``(first, last)`` row indices, inclusive."""
    f = np.asarray(flags, dtype=bool)
    if not f.size:
        return []
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


@dataclass
class Tally:
    """Counts over one or many scored series; add series with ``add``, read the figures."""

    period_s: float = 1.0
    grace_s: float = GRACE_S
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    windows: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    false_events: int = 0
    events: int = 0
    normal_rows: int = 0
    nab_tp: float = 0.0  # sum of the detected windows' sigmoid weights

    def add(self, pred: BoolArray, truth: BoolArray) -> None:
        """One series: ``pred[i]`` an event raised at row i, ``truth[i]`` inside a window."""
        p = np.asarray(pred, dtype=bool)
        t = np.asarray(truth, dtype=bool)
        if p.shape != t.shape:
            raise ValueError(f"pred has {p.shape} rows, truth {t.shape}")
        self.tp += int((p & t).sum())
        self.fp += int((p & ~t).sum())
        self.fn += int((~p & t).sum())
        self.tn += int((~p & ~t).sum())
        self.normal_rows += int((~t).sum())
        wins = runs(t)
        grace = round(self.grace_s / self.period_s)
        excused = np.zeros(len(t), dtype=bool)
        for a, b in wins:
            excused[a : b + 1 + grace] = True
            self.windows += 1
            hit = np.flatnonzero(p[a : b + 1])
            if hit.size:
                self.detected += 1
                self.delays_s.append(float(hit[0]) * self.period_s)
                self.nab_tp += _scaled_sigmoid((float(hit[0]) - (b - a + 1)) / (b - a + 1))
        for a, _b in runs(p):
            self.events += 1
            if not excused[a]:
                self.false_events += 1

    def extend(self, series: Iterable[tuple[BoolArray, BoolArray]]) -> Tally:
        for pred, truth in series:
            self.add(pred, truth)
        return self

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)

    @property
    def far(self) -> float:
        return self.fp / max(1, self.fp + self.tn)

    @property
    def mar(self) -> float:
        return self.fn / max(1, self.fn + self.tp)

    @property
    def detected_share(self) -> float:
        return self.detected / self.windows if self.windows else float("nan")

    @property
    def median_delay_s(self) -> float:
        return float(np.median(self.delays_s)) if self.delays_s else float("nan")

    @property
    def normal_hours(self) -> float:
        return self.normal_rows * self.period_s / 3600.0

    @property
    def false_per_hour(self) -> float:
        hours = self.normal_hours
        return self.false_events / hours if hours > 0 else float("nan")

    @property
    def nab_score(self) -> float:
        """NAB-style normalised score: 0 for a detector that never raises, 100 for a perfect
        one (see the module's docstring)."""
        if not self.windows:
            return float("nan")
        missed = self.windows - self.detected
        raw = self.nab_tp - NAB_FN * missed - NAB_FP * self.false_events
        null = -NAB_FN * self.windows
        perfect = _scaled_sigmoid(-1.0) * self.windows
        return 100.0 * (raw - null) / (perfect - null)

    def row_line(self) -> str:
        return f"F1 {self.f1:.3f}  FAR {self.far:.1%}  MAR {self.mar:.1%}"

    def event_line(self) -> str:
        if not self.windows:
            return (
                f"false events {self.false_events} in {self.normal_hours:.2f} h "
                f"({self.false_per_hour:.2f}/h)"
            )
        return (
            f"windows {self.detected}/{self.windows} ({self.detected_share:.0%}), "
            f"median delay {self.median_delay_s:.0f} s, false events {self.false_events} "
            f"in {self.normal_hours:.2f} h ({self.false_per_hour:.2f}/h)"
        )


def hold_clear(
    score: npt.NDArray[np.float64], threshold: float, hold: int, clear: int
) -> BoolArray:
    """The detector's event state per row for a series of scores: raised once the score has
    been above ``threshold`` for ``hold`` rows, cleared once below it for ``clear`` rows
    (the same rule as ``AnomalyDetector``, for a whole series at once)."""
    above = np.asarray(score, dtype=np.float64) > threshold
    n = len(above)
    state = np.zeros(n, dtype=bool)
    hold, clear = max(1, hold), max(1, clear)
    up = _run_lengths(above) >= hold
    down = _run_lengths(~above) >= clear
    i = 0
    while i < n:
        nxt = np.flatnonzero(up[i:])
        if not nxt.size:
            break
        start = i + int(nxt[0])
        end_rel = np.flatnonzero(down[start:])
        end = start + int(end_rel[0]) if end_rel.size else n
        state[start:end] = True
        i = end
    return state


def _run_lengths(flags: BoolArray) -> npt.NDArray[np.int64]:
    """For each row, how many rows in a row up to it (inclusive) are true."""
    f = flags.astype(np.int64)
    c = np.cumsum(f)
    reset = np.where(~flags, c, 0)
    return np.asarray(c - np.maximum.accumulate(reset), dtype=np.int64)
