"""What the valve1 targets ask of a detector: limits measured on the data alone.

`python bench/anomaly_limits.py VALVE1_DIR ANOMALY_FREE_CSV`

Not a search round: nothing is chosen or shipped here. Two analyses of SKAB's valve1 files
and anomaly-free file, with definitions fixed (and committed) before any figure was
computed; they are not changed to reach a conclusion.

**1. Can a rolling mean on discrete channels separate the missed faults from normal
wander?** Rounds 16 to 18 of `bench/anomaly_search.py` scored such a mean; this measures
what any threshold on it can do, under the protocol of `bench/skab.py`:

- each valve1 file, and each anomaly-free chunk (`skab_data.anomaly_free_series`: 400 +
  750 rows), is calibrated on its first 400 rows; the rows after them are *scored rows*;
- a channel is *discrete* by round 16's rule (`anomaly_step.discrete_step` on the
  calibration rows of the scaled input), decided per file or chunk;
- the *mean deviation* of a discrete channel at a row is rounds 16 to 18's:
  `|m - c| / max(s, 0.05, step / sqrt(L))`, where `m` is the channel's L-row rolling mean
  of the scaled input (rows i-L+1 to i), `c` the median of `m` over the calibration windows
  (rows 61 to 399: generic-v6's 62-row window), `s` the robust spread of those, widened by
  the robust spread of their changes over 180 rows (`watchpost.anomaly_robust
  .feature_stats`; drift lag 180 is the one every fold chose in rounds 17 and 18), `step`
  the channel's quantisation step; L is 15, 30 or 60 (rounds 16 to 18's range);
- a row's *score* is the largest mean deviation over the discrete channels (0 without any);
- printed per valve1 file: the largest score inside its labelled window (a), and over its
  normal scored rows, all of them and those outside the two minutes after the window (the
  grace of `watchpost.anomaly_eval`) (b); per anomaly-free chunk the largest over its scored
  rows (b); with the channel that reached it;
- the *2 % threshold* of a length: pooling the anomaly-free chunks' scored rows, the
  smallest number T such that at most 2 % of those rows score above T. A window *reaches* T
  when its largest score is above T. Printed per length: T, how many of the five missed
  windows (files 2, 4, 6, 7 and 14: those generic-v6 misses, held out and in-sample) and of
  all 16 reach it, and the share of valve1 normal scored rows above it; the *best length*
  is the one whose T the most missed windows reach (ties: the most of all 16, then the
  shorter). For the best length also: the threshold that reaches all five missed windows
  (just below the smallest of their largest scores) and the share of anomaly-free rows
  above it. No hold or clear time: rows are compared as they score.

**2. How early is a fault visible at all?** An oracle that knows more than a causal
detector: for each valve1 window (first row a, last b), the *reference rows* are the
file's normal rows before the window (rows 0 to a-1, calibration included); per channel the
range [min, max] of its raw values over them. The oracle sees the fault at the first row i
from a to b at which any channel's raw value is below its min or above its max; its delay
is i - a seconds (rows are 1 s apart). The same with each channel's 5-row median (the
median of rows i-4 to i, `level5`; its range over rows 4 to a-1). A window with no such
row is *not seen* (infinitely late in the median). Printed per window (delay and the
channel that left first) and the median over the 16 windows, and how many within 30 s. If
the median is above 30 s, the delay target (median <= 30 s from the labelled start) is out
of reach of detectors that look at levels.

*Control* (does the oracle fire with nothing happening?): each anomaly-free chunk with a
pretend window from row S (the median of the valve1 windows' first rows, rounded down) to
the chunk's end, its reference rows 0 to S-1, scored the same way. If the oracle fires as
early in the chunks as in the windows, its early times show the range's noise, not the fault.

The SKAB data is GPL-3.0 and is never copied into this repository.
"""
