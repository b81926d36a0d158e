"""Event-level evaluation (`watchpost.anomaly_eval`) on small labelled series whose answers
are worked out by hand, and the vectorised hold/clear rule against the detector's own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from watchpost.anomaly_eval import Tally, hold_clear, runs


def flags(n: int, *spans: tuple[int, int]) -> np.ndarray:
    """``n`` rows, true on each inclusive span."""
    out = np.zeros(n, dtype=bool)
    for a, b in spans:
        out[a : b + 1] = True
    return out


def test_counts_windows_delays_and_false_events_as_an_operator_would() -> None:
    n = 3600 * 2  # two hours at one row a second
    truth = flags(n, (1000, 1599), (4000, 4299))
    pred = flags(
        n,
        (200, 209),  # false: before any window
        (1030, 1700),  # detects window 1 after 30 s, stays raised 101 s past its end
        (1650, 1660),  # inside the run above: not a second event
        (1800, 1805),  # starts 200 s after window 1: false (grace is 120 s)
        (1700, 1700),
        (4299, 4310),  # detects window 2 on its last row: delay 299 s
        (4350, 4360),  # starts 50 s after window 2 ends: excused, not false
    )
    t = Tally()
    t.add(pred, truth)
    assert (t.windows, t.detected) == (2, 2)
    assert t.delays_s == [30.0, 299.0]
    assert t.median_delay_s == pytest.approx(164.5)
    assert t.events == 5  # 200-209, 1030-1700, 1800-1805, 4299-4310, 4350-4360
    assert t.false_events == 2
    normal = n - 600 - 300
    assert t.normal_rows == normal
    assert t.false_per_hour == pytest.approx(2 / (normal / 3600))
    tp = 570 + 1
    assert (t.tp, t.fn) == (tp, 900 - tp)
    assert t.fp == int((pred & ~truth).sum())
    assert t.far == pytest.approx(t.fp / normal)
    assert t.f1 == pytest.approx(2 * tp / (2 * tp + t.fp + t.fn))


def test_a_missed_window_and_an_event_already_raised_when_a_window_starts() -> None:
    truth = flags(100, (10, 19), (50, 59))
    pred = flags(100, (5, 12))  # raised 5 rows early: detects window 1 at once, is false
    t = Tally(period_s=2.0, grace_s=20.0)
    t.add(pred, truth)
    assert (t.windows, t.detected) == (2, 1)
    assert t.delays_s == [0.0]
    assert t.false_events == 1  # it started outside every window
    assert t.detected_share == 0.5
    assert t.normal_rows * t.period_s / 3600 == pytest.approx(t.normal_hours)


def test_nab_score_is_zero_for_silence_and_100_for_the_perfect_detector() -> None:
    truth = flags(1000, (100, 199), (500, 599))
    silent, perfect, late = Tally(), Tally(), Tally()
    silent.add(np.zeros(1000, dtype=bool), truth)
    perfect.add(truth.copy(), truth)
    late.add(flags(1000, (199, 199), (599, 599), (800, 805)), truth)  # last rows, one false
    assert silent.nab_score == pytest.approx(0.0)
    assert perfect.nab_score == pytest.approx(100.0)
    assert 0 < late.nab_score < 60  # a detection on a window's last row earns almost nothing
    no_windows = Tally()
    no_windows.add(np.zeros(10, dtype=bool), np.zeros(10, dtype=bool))
    assert math.isnan(no_windows.nab_score)


def test_runs_and_mismatched_lengths() -> None:
    assert runs(np.array([0, 1, 1, 0, 1], dtype=bool)) == [(1, 2), (4, 4)]
    assert runs(np.zeros(0, dtype=bool)) == []
    with pytest.raises(ValueError, match="rows"):
        Tally().add(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_hold_clear_matches_the_detector_rule() -> None:
    score = np.array([0, 5, 5, 5, 0, 0, 5, 0, 0, 0, 0, 5, 5], dtype=float)
    # raised once two rows are above, cleared on the third row below
    assert hold_clear(score, 1.0, 2, 3).astype(int).tolist() == [
        0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1,
    ]  # fmt: skip
    assert not hold_clear(np.zeros(5), 1.0, 1, 1).any()
