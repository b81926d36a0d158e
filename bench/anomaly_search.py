"""How the numbers of generic-v2 to generic-v6 are chosen, and rounds 14-18 (a step, a departure,
a rolling mean on discrete channels, the same mean kept out of the calibration factor, then
with a calibration factor of its own).

`python bench/anomaly_search.py VALVE1_DIR ANOMALY_FREE_CSV [--round 8]`.

Each round's rule below was written down (and committed) before any result of it was looked
at. Rounds 1-8 chose generic-v2 (their grid and rule: the first table and "Rule" below, as of
commit 564adab); round 9 chooses generic-v3 (its own grid and rule, further below). The
bench runs round 12 (below); `--round 8` runs the grid and rule of rounds 1-8, `--round 9`
round 9's, `--round 10` round 10's, `--round 11` round 11's, `--round 13` round 13's (a
trained predictor; needs the `train` extra, TensorFlow), `--round 14` to `--round 18`
rounds 14's to 18's (the same).

Search ranges (every combination is scored):

| number | range | what it is |
|---|---|---|
| level_rows | 3, 5, 9, 15 | rows in the level (a rolling median; round 1-2: a mean of 3, 5, 10) |
| drift_lag | 0, 60, 180 | rows over which calibration measures slow drift (0: none) |
| combine | max, top2 | how per-point scores make the window's score |
| relation_factor | 0, 4, 8, 16 | relation threshold factor (0: no relation part) |
| threshold | 4, 5, 6, 8, 10, 12, 16, 24 | robust units |
| hold | 1, 3, 5, 10 | rows above the threshold before an event is raised |
| clear | 5, 10, 30, 60 | rows below it before the event is cleared |

Fixed beforehand, not searched: the roughness window (32 rows, as generic-v1), the scale
floors (`watchpost.anomaly_robust`), 400 calibration rows per valve1 file.

Data: SKAB `valve1` files 0-15 (one labelled anomaly window each) in four groups by file
number, 0-3, 4-7, 8-11, 12-15; the `anomaly-free` file as a gate, cut into chunks of 1150
rows (calibrate on 400, score 750), and calibrated on its first 7,200 rows (two hours)
scoring the rest.

Rule: a combination is *feasible* on a set of valve1 files when, on those files, it
detects at least 97 % of the windows, raises at most 0.5 false events per hour of normal
rows and flags at most 12.7 % of normal rows (row FAR), and, on the gate, flags at most 2 %
of the rows of the 400-row chunks and none with two hours of calibration. Among feasible
combinations the one with the highest row F1 wins; ties go to the shorter median delay, then
to the higher threshold, the longer hold and the longer clear (the quieter choice). If
none is feasible, the one that violates the fewest of the five conditions wins, then by F1.

Rounds (each ran this same rule; the design changed between them, never the rule):

1. Level = rolling mean; scale floor = the quantisation step (smallest difference between
   distinct calibration values). Every combination failed: SKAB's flow channel sits on whole
   numbers with a jitter of a few thousandths, so the "step" found was 0.0004 and the floor
   did nothing (bug in the floor, not a choice).
2. Scale floor = 1.2533 x the mean absolute deviation (see `watchpost.anomaly_robust`).
   Nothing feasible; the rule chose a quiet combination (5 of 16 windows). A diagnostic
   outside the rule (the most windows any combination finds with the gate at most 2 % and
   at most 0.7 false events per hour) gave 11 of 16 with means, 12 of 16 with rolling
   medians of the same lengths; so:
3. Level = rolling median over level_rows (odd counts, range above). The choice combined
   by the mean of the two largest point scores, which halves a single sensor's fault: a
   sensor stuck at its last value in a group of three scored about 11 against a threshold
   of 12 (tests/test_anomaly.py), so:
4. Levels are combined by `combine`, roughness always by the maximum (a stuck or chattering
   sensor is one sensor's fault; in rounds 1-3 turning roughness off changed no figure on
   valve1). The choice has threshold 24, and a stuck sensor scores about 21 there: the
   roughness term log(energy + 0.01) cannot fall further than log(0.01); so:
5. Roughness = log(energy + 1e-4), generic-v1's constant (a flat window falls to log(1e-4),
   twice as far). The choice has threshold 24, and a stuck sensor in the test scores about
   11 (roughness spreads of 0.5 to 0.9 log units on 300 rows); a flat line is not a matter of
   degree, so:
6. A window with no change at all of a point that changed in every calibration window is
   infinitely far (a stuck sensor); a quantised channel that rested in calibration is
   exempt (`watchpost.anomaly_robust.deviations`). The choice is unchanged (threshold 24,
   hold 10), and it breaks behaviour the existing tests assert of the shipped detector: a
   10-sigma step of one point in a group of three scores 16 to 23 and is not raised; a
   drop is to be raised within 10 rows. The rule gets a constraint it should have had from
   the start, so:
7. Only combinations that keep the existing tests' behaviour are candidates: threshold at
   most 16 and hold at most 5. The choice (top2, threshold 16) still misses the tests' single-
   point steps (top2 halves them): a proxy is not the behaviour, so:
8. Candidates are the combinations under which the scenarios of the existing tests behave
   as those tests assert (`behaves`: a 10-sigma step of one point of three raised within
   20 rows and cleared within 50; the runner's step raised and cleared; a stuck point
   raised; the CLI's 15-sigma drop of one point of two raised within 10 rows, nothing
   before, cleared by 20 rows after). Shipped.

Round 9 (generic-v3; the same LiteRT graph as generic-v2, level = median of 5 rows, so
level_rows is not searched; what changes is the gateway's scoring, in
`watchpost.anomaly_robust`). Written down from what round 8 left (the shipped generic-v2
misses files 2, 6, 14 and 4, 7 of valve1 in-sample; most of its held-out false events came
from files 4-7, where the choice made on the other groups was threshold 12, hold 1; file 5
raises a stuck-sensor verdict on its quantised flow two rows after calibration; a changed
noise is never seen by a single sensor):

- fixed design change, not searched: a quantised channel (more than half of its calibration
  rows on its median value: MAD 0) is exempt from the stuck-sensor rule, like one that
  rested for a whole calibration window;
- roughness_weight: the window's score is max(top-k mean of level deviations,
  roughness_weight x the largest roughness deviation) (generic-v2: 1);
- calibration_factor: the threshold of a calibration is max(threshold, calibration_factor x
  the highest point score of its calibration windows) (0: a fixed threshold, as generic-v2):
  a noisy calibration lifts its own threshold, so a choice transfers across files;
- wider ranges where round 8 chose at an edge: relation factor up to 64, threshold up to 32,
  clear up to 120, drift lag up to 300.

| number | range |
|---|---|
| drift_lag | 0, 60, 180, 300 |
| combine | max, top2 |
| roughness_weight | 1, 2, 4 |
| calibration_factor | 0, 2, 3 |
| relation_factor | 0, 8, 16, 32, 64 |
| threshold | 4, 6, 8, 10, 12, 16, 24, 32 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60, 120 |

Round 9 rule (changed from rounds 1-8: the valve1 conditions are checked on *each* group of
files chosen on, not on their pool, so a choice that is fine pooled but fails on one group,
as generic-v2's held-out choice for files 4-7 did, loses): candidates are the combinations
under which the existing tests' scenarios behave as those tests assert (`behaves`, as round
8). Violations = for each valve1 group chosen on, [windows < 97 %, false events > 0.5 per
hour, row FAR > 12.7 %], plus [gate 400-row FAR > 2 %, gate two hours: any flagged row].
Fewest violations wins; then the higher pooled F1 on the files chosen on; then the shorter
pooled median delay; then the quieter (higher threshold, longer hold, longer clear). The
choice on all 16 files is generic-v3's defaults, shipped as the default if its in-sample
figures are not worse than generic-v2's by the same rule (fewer or equal violations, then
F1); the held-out figure is leave-files-out as below.

Round 9's result (generic-v3, landed as the default): in-sample 11 of 16 windows, median
delay 57 s, no false event, F1 0.693, FAR 1.4 %; held out 11 of 16, 57 s, 1.98 false events
per hour, F1 0.654; the anomaly-free gate 1.5 % of rows and one false event (0.60 per hour).
Its calibration_factor lifts the one threshold of all points by the noisiest point's
calibration: on file 4 the flow dipped during calibration (its level reached 81 robust units
there), which lifts the threshold to 162 for every point, and the pump's other faults go
unseen; on files 7 and 14 the flow leaves its calibration range 4 to 5 times over but stays
under 16. So:

Round 10 (generic-v3 again if it wins; the same graph). Design change, searched:

- feature_cap K: per point and feature, the robust spread is widened so that the largest
  deviation seen in calibration is at most K (a point that was wild in calibration is
  trusted less, alone; the others keep their sensitivity); off: as round 9.

| number | range |
|---|---|
| drift_lag | 0, 60, 180 |
| combine | max, top2 |
| feature_cap | off, 3, 4, 6, 8 |
| roughness_weight | 1, 2 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16, 64 |
| threshold | 4, 5, 6, 8, 10, 12, 16, 24 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60, 120 |

Round 10 rule: round 9's, with one more gate condition, the issue's false-event target
applied to the anomaly-free 400-row chunks (normal rows too): more than 0.5 false events per
hour there is a violation. Round 10's choice on all 16 files replaces generic-v3's numbers if,
by this rule on all 16 files, it has fewer violations than round 9's choice, or as many and
a higher F1; else generic-v3 stays as round 9 chose it.

Round 10, second run: the first run fitted the relation part on robust deviations, the
device fits it on the levels; the ridge is not scale-free, so the two differ (the device,
`bench/skab.py`, gave F1 0.669 and one false event in-sample where the search said 0.671 and
none, for the same choice: threshold 24, drift lag 180, relation factor 16, combine max,
calibration factor 2, hold 3, clear 30). Fixed as a bug in the proxy (rounds 9 and 10
only; round 9's choice has no relation part), and round 10 ran again with the same grid and
rule; that run's figures are the ones reported.

Round 10's result (second run; generic-v3's numbers since): threshold 24 (EDGE: the top of
this range), drift lag 180 (EDGE), combine max, feature cap off (never chosen), roughness
weight 1, calibration factor 2, relation factor 16, hold 5, clear 30; in-sample 11 of 16
windows, median delay 58 s, no false event, F1 0.670, FAR 0.8 %, the gate 0.0 % with no
event (3 violations, round 9's choice 4); held out 9 of 16 windows, 56 s, 1.32 false events
per hour, F1 0.579, FAR 7.3 % (groups: F1 0.097 / 0.346 / 0.856 / 0.689).

Round 11 (generic-v4: a new LiteRT graph with new features; written down and committed
before any of its results was looked at). Rounds 9-10 tuned thresholds on the same two
features; what they left: faults whose level change is small against a noisy channel are
seen late or not at all by a 5-row median, and fast faults are seen only once the level
has moved. New features per point, computed by the graph (input: the calibration-scaled
values, as every generic model), each scored as a level (distance from its calibration
median in its own robust spread, widened by its drift over drift_lag, floor 0.05):

- mean_s: the mean of the last `short` rows (a level shift is seen sooner by a mean than a
  median of the same noise);
- mean_l: the mean of the last `long` rows (a small shift that persists);
- slope: the least-squares slope over the last `slope` rows times (slope - 1): the change
  across that span (fast faults);
- roughness as generic-v3 (log mean squared difference over the last 32 rows), with the
  stuck-sensor and quantised-channel rules unchanged; roughness_weight fixed at 1 and
  combine fixed at max (generic-v3's choices).

A point's level deviation is the largest over the set's level-like features; the window's
score the largest over the points (or the roughness, or the relation). The relation part is
generic-v3's (Mahalanobis distance of the first feature of the set over the points, factor
0: off), searched as before; the graph's window is 64 rows (32 for the reference set `v3`).

| number | range |
|---|---|
| features | short, short+long, short+slope, short+long+slope; `v3` (see below) |
| short | 5, 10 |
| long | 30, 60 |
| slope | 10, 20 |
| drift_lag | 60, 120, 180, 220 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16, 64 |
| threshold | 8, 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

(`long` and `slope` are not varied where the set lacks them. `v3`: the 5-row median alone,
generic-v3's graph: a reference, never a candidate for generic-v4. Drift lag 220 is the most
that the tests' 300-row calibrations allow with a 64-row window.)

Round 11 rule. Candidates: the combinations under which the existing tests' scenarios behave
as those tests assert (`behaves`, as rounds 8-10). The choice on a set of groups: round 10's
rank (per group chosen on: windows < 97 %, false events > 0.5 per hour, row FAR > 12.7 %;
the gate: 400-row FAR > 2 %, two hours any flagged row, 400-row false events > 0.5 per hour;
fewest violations, then pooled F1, then shorter median delay, then the quieter). Leave-
files-out as below gives the held-out figure; the choice on all 16 files is generic-v4's
numbers (and its graph's short/long/slope), built and shipped as a selectable model either
way. generic-v4 becomes the **default** only if (a) its held-out pooled figures violate
fewer of the five valve1 targets [windows < 97 %, median delay > 30 s, false events > 0.5
per hour, row FAR > 12.7 %, F1 < 0.81] than generic-v3's held-out figures from round 10
(9/16 windows, 56 s, 1.32 per hour, FAR 7.3 %, F1 0.579: 4 violations), or as many and a
higher held-out F1 than 0.579; and (b) in-sample it keeps both anomaly-free gates (400-row
chunks FAR <= 2 %, two hours: no flagged row). Otherwise generic-v3 stays the default and the
figures are reported as they are.

Round 11's result (generic-v4's numbers; 5130 of 32,832 combinations keep the tests'
behaviour, 4555 candidates): every fold and the choice on all 16 files took the 10-row mean
alone (features=short, short=10); the long mean and the slope were never chosen. On all 16
files: drift lag 60 (EDGE), calibration factor 2, relation factor 64 (EDGE), threshold 12,
hold 3, clear 60 (EDGE); in-sample (4 violations) 8 of 16 windows, median delay 61 s, one
false event (0.66 per hour), F1 0.550, FAR 3.0 %, the gate 0.0 % with no event, two hours
0.0 %. Held out (groups chosen on the others: lag 220 / 60 / 60 / 120, threshold 8 / 12 / 12
/ 12): 10 of 16 windows, 64 s, 4 false events in 1.51 h (2.64 per hour), F1 0.578, FAR 7.3 %
(groups: F1 0.374 / 0.499 / 0.712 / 0.679): 4 of the 5 targets violated, as generic-v3, and
F1 0.578 is not above 0.579, so generic-v3 stays the default. generic-v3's numbers in this
harness (the reference) give round 10's in-sample figures to the last digit (F1 0.670, 11 of
16, 58 s).

Round 12 (written down and committed before any of its results was looked at). Round 11
left the relation part as it was (the Mahalanobis distance of the levels over the points,
searched 0/16/64) and took the 10-row mean. Round 12 tries the relation part as the
*residual of each point predicted from the others*: per point, a ridge regression of its
level on the other points' levels over the calibration windows (`watchpost.anomaly_robust.
fit_residuals`), the residual in robust units of its calibration spread (widened by its drift
over drift_lag, floor 0.05), the relation score the largest over the points, in units of its
calibration maximum (like the Mahalanobis part: the relation threshold is relation_factor x
that maximum); a single point has no relation part. It is kept only where it earns its false
events: relation_factor 0 (off) is in the range.

| number | range |
|---|---|
| level | median5 (generic-v3's graph), mean10 (generic-v4's graph) |
| relation | mahalanobis, residual |
| drift_lag | 60, 180 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 2, 4, 8, 16, 64 |
| threshold | 8, 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

Round 12 rule: round 11's, word for word (candidates: the tests' scenarios behave; rank:
round 10's; leave-files-out for the held-out figure; default only if the held-out pooled
figures violate fewer of the five valve1 targets than generic-v3's round-10 held-out figures
(4), or as many with a held-out F1 above 0.579, and the in-sample choice keeps both
anomaly-free gates). A winner ships as generic-v5 (the graph of its level, its numbers and
relation kind) and becomes the default; otherwise no new model, and the figures are
reported. generic-v3's numbers are a candidate in this grid (median5, mahalanobis, 180, 2,
16, 24, 5, 30).

Round 12's result (generic-v5; 3840 of 6912 combinations keep the tests' behaviour, all
candidates): the residual relation was never chosen, nor the 10-row mean. Every fold took
generic-v3's graph with the Mahalanobis relation, factor 16 (files 0-3 held out: lag 180,
calibration factor 0, threshold 32, hold 5, clear 10; 4-7: 180, 2, 32, 5, 30; 8-11: 180, 2,
48, hold 1, clear 60; 12-15: lag 60, 2, 24, 5, 30). Held out pooled: 11 of 16 windows, median
delay 40 s, 3 false events in 1.51 h (1.98 per hour), F1 0.648, FAR 7.3 % (groups: F1 0.629
/ 0.346 / 0.807 / 0.689; the 8-11 fold flags 22.9 % of normal rows there):
4 of 5 targets violated, as generic-v3, with F1 0.648 above 0.579, so by the rule the choice
on all 16 files is the default, generic-v5: generic-v3's numbers with threshold 32 (lag 180,
calibration factor 2, relation factor 16, hold 5, clear 30), which on these files gives
exactly generic-v3's figures (threshold 24 and 32 tie; the last tie-break takes the quieter):
in-sample 11 of 16, 58 s, no false event, F1 0.670, FAR 0.8 %, the gate 0.0 %, two hours
0.0 % (3 violations).

Round 13 (a learned predictor; written down and committed before any of its results was
looked at). Rounds 8-12 tuned thresholds, levels, slopes and relation scores, all learned
from one file's first 400 rows, and none reached the detection targets. Round 13 tries a
different kind of model: a network *trained* on more normal data than one calibration
(the normal rows of the valve1 files chosen on), predicting each point's level, scored on
the device by the robust-scaled prediction residual.

- predictor `past` (channel-independent, fits any point or group of points; a candidate for
  generic-v6): each point's level at row t (the median of its last 5 rows, generic-v5's
  level) predicted from its own scaled values in the 32 rows that end `horizon` rows
  before t, by one network shared by all points. The graph's window is 32 + horizon rows.
- predictor `others` (a site reference, never a candidate for the generic default): each of
  valve1's 8 points' level at row t predicted from the other 7 points' levels at t, one
  output per point. It fits only these 8 points, and the tests' scenarios (2 and 3 points)
  cannot run it; it is scored with the same rank and folds (without the behaviour filter)
  and reported beside, as what a relation model trained on a site's own data gives.
- net: `linear` (one dense layer: an autoregression, or a regression on the others) or `mlp`
  (dense 16 with ReLU, then dense 1 per output).
- training (per fold: only the files of the three groups chosen on; for the choice on all
  16 files: all 16): every window of the predictor whose rows are all labelled normal, each
  file scaled by its own first 400 rows as the device does (`input_scaling`); Huber loss
  (delta 1), Adam (learning rate 1e-3), batch 256, 8 epochs, seed 0. The anomaly-free file
  is never trained on, so its gate stays data the predictor has not seen. The tests'
  scenarios are scored with each fold's own predictor.
- residual = level - prediction, one more level-like feature per point, scored as round
  11's features (distance from its calibration median in its robust spread, widened by its
  drift over drift_lag, floor 0.05; a point's level deviation is the largest over its
  level-like features). use `add`: features level, residual, roughness; use `replace`: the
  residual replaces the level (residual, roughness). Fixed: combine max, roughness weight 1,
  the stuck-sensor and quantised-channel rules, the relation part on the 5-row median level
  (Mahalanobis, as generic-v5), 400 calibration rows per file.

| number | range |
|---|---|
| predictor | past, others |
| net | linear, mlp |
| horizon | 10, 30 (`past` only) |
| use | add, replace |
| drift_lag | 60, 180 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 8, 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

Cut to fit about two hours of a shared 2-core machine: wider or deeper networks, more
seeds and epochs, horizons other than 10 and 30, a predictor from both the others and the
past, training on the anomaly-free file, relation factors other than 0 and 16.

Round 13 rule: round 12's, word for word, with generic-v5 as the bar. Candidates: the
`past` combinations under which the existing tests' scenarios behave as those tests assert
(`behaves`, as rounds 8-12). The choice on a set of groups: round 10's rank (per group
chosen on: windows < 97 %, false events > 0.5 per hour, row FAR > 12.7 %; the gate: 400-row
FAR > 2 %, two hours any flagged row, 400-row false events > 0.5 per hour; fewest
violations, then pooled F1, then shorter median delay, then the quieter). Leave-files-out as
below gives the held-out figure (each fold's predictor trained on its three groups only). A
candidate replaces the shipped default only if its held-out figures violate fewer of the
five valve1 targets, or as many with a higher F1, and it keeps both anomaly-free gates: the
five targets [windows < 97 %, median delay > 30 s, false events > 0.5 per hour, row FAR >
12.7 %, F1 < 0.81] on the pooled held-out figures, against generic-v5's held-out figures
from round 12 (11/16 windows, 40 s, 1.98 per hour, FAR 7.3 %, F1 0.648: 4 violations), so
fewer than 4, or 4 and a held-out F1 above 0.648; the gates: the choice on all 16 files
flags at most 2 % of the 400-row chunks' rows and none with two hours of calibration. A
winner ships as generic-v6 (its graph: level, residual of its trained predictor,
roughness; its numbers) and becomes the default; otherwise no new model, and the figures
are reported. generic-v5's numbers in this harness are scored beside as the reference.

Round 13's result (generic-v6; about 6 minutes on 2 cores; 1350 to 1410 of 4608 `past`
combinations keep the tests' behaviour, per fold): every fold took the residual added to
the level, drift lag 180, calibration factor 2, relation factor 16 (files 0-3 held out:
mlp, horizon 10, threshold 24, hold 5, clear 30; 4-7: mlp, 30, 24, 5, 30; 8-11: linear, 10,
24, hold 1 (EDGE), clear 60 (EDGE); 12-15: linear, 30, 32, 5, 30). Held out pooled: 11 of
16 windows, median delay 57 s, 1 false event in 1.51 h (0.66 per hour), F1 0.657, FAR 6.2 %
(groups: F1 0.565 / 0.346 / 0.856 / 0.703; the 8-11 fold flags 24.4 % of normal rows
there): 4 of 5 targets violated, as generic-v5, with F1 0.657 above 0.648, so by the rule
the choice on all 16 files is the default, generic-v6: the linear predictor, horizon 30,
added to the level, with generic-v3's numbers (drift lag 180, calibration factor 2,
relation factor 16, threshold 24, hold 5, clear 30); in-sample (the predictor trained on
these files too) 11 of 16, 58 s, no false event, F1 0.698, FAR 2.2 %, the gate 0.0 % with no
event, two hours 0.0 % (3 violations; generic-v5's numbers here: F1 0.670, FAR 0.8 %). The
MLP with the same numbers ties on all but row FAR (2.3 %). The `others` reference: held out
11 of 16, 45 s, 4 false events (2.64 per hour), F1 0.655, FAR 11.2 %; in-sample F1 0.691.
A first run, before the training moved into `watchpost.models.train_predictor` (the same
code, with deterministic ops), gave the same figures to the last digit.

Round 14 (a step of rolling means beside generic-v6's features; written down and committed
before any of its results was looked at). What round 13 left: generic-v6 misses 5 of 16
valve faults, in-sample (files 2, 4, 6, 7, 14) and held out alike. In each of them the
fault is a drop of the flow (`Volume Flow RateRMS`), a channel that reads whole litres per
minute: in calibration it alternates between two whole values (32 and 33, or 31 and 32),
so its 5-row median is itself two-valued, and the robust spread of that level (and of
generic-v6's residual, which is made from it) is up to a whole step (0.8 to 3.0 input
spreads on files 6, 7 and 14, against the 0.05 floor where the flow rests on one value).
A drop of one to four litres then scores 3 to 7 robust units against a threshold of 24
(file 4: the flow's own calibration wander lifts the threshold to 65 through
calibration_factor; file 2: a drop of one litre from a 31/32 mix). A mean over more rows
resolves the duty cycle between two whole values to a fraction of a step, and a
difference of two such means (a step) does not grow with a slow drift, which is what
raises the normal rows' scores on the temperature channels (file 12's temperature leaves
its calibration by 16 spreads outside the window). This was seen on the valve1 files'
flow and temperature channels (each file is chosen on in three of the four folds) before
the ranges below were written; no held-out figure of this round had been computed.

- fixed: generic-v6's graph and scoring as the base, its predictor kind (`past`, linear,
  horizon 30, residual added to the level), trained per fold on the three groups chosen on
  only (as round 13); combine max, roughness weight 1, the stuck-sensor and
  quantised-channel rules, the relation part on the 5-row median level, 400 calibration
  rows per file.
- new feature per point, computed by the graph from the scaled input: `step` = the mean of
  the last `step_rows` rows minus the mean of the `step_rows` rows before them (it fits in
  the 62-row window for every value of the range), scored as a level-like feature (its
  distance from its calibration median in its robust spread, widened by its drift over
  drift_lag, floor 0.05), and weighed by `step_weight` in the score: the window's score is
  the largest over the points of max(level deviation, residual deviation, step_weight x
  step deviation), or the roughness, or the relation; calibration_factor lifts the
  threshold by the highest calibration score computed the same way. step_weight 0 is
  generic-v6's graph and scoring (the step off).

| number | range |
|---|---|
| step_rows | 10, 20, 30 |
| drift_lag | 60, 180 |
| step_weight | 0 (off), 1, 1.5, 2, 3 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

Round 14 rule: round 13's, word for word, with generic-v6 as the bar. Candidates: the
combinations under which the existing tests' scenarios behave as those tests assert
(`behaves`, scored with each fold's own predictor). The choice on a set of groups: round
10's rank (per group chosen on: windows < 97 %, false events > 0.5 per hour, row FAR >
12.7 %; the gate: 400-row FAR > 2 %, two hours any flagged row, 400-row false events > 0.5
per hour; fewest violations, then pooled F1, then shorter median delay, then the quieter).
Leave-files-out as below gives the held-out figure. A candidate replaces the shipped
default only if its pooled held-out figures violate fewer of the five valve1 targets
[windows < 97 %, median delay > 30 s, false events > 0.5 per hour, row FAR > 12.7 %, F1 <
0.81] than generic-v6's held-out figures from round 13 (11/16 windows, 57 s, 0.66 per hour,
FAR 6.2 %, F1 0.657: 4 violations), or as many with a held-out F1 above 0.657; and the choice
on all 16 files keeps both anomaly-free gates (400-row chunks FAR <= 2 %, two hours no
flagged row) and has the step on (step_weight > 0: with it off the choice is generic-v6's
graph, and no new model is made). A winner ships as generic-v7 (generic-v6's graph with the
step feature, its weight in the sidecar, its numbers) and becomes the default; otherwise no
new model, and the figures are reported. generic-v6's numbers in this harness (step off,
drift lag 180, calibration factor 2, relation factor 16, threshold 24, hold 5, clear 30)
are scored beside as the reference, on all 16 files with the predictor trained on all 16.

Cut to fit the time of a shared 2-core machine: other predictors than generic-v6's (round
13 searched them), step rows above 30 (they need a longer window), a step over rows that
are not adjacent, per-channel weights.

Round 14's result (about a minute on 2 cores): the step was never chosen where it counts.
Of 7200 combinations 960 keep the tests' behaviour per fold, and with the step on hardly any
at the thresholds that would catch the missed faults (step weight 1.5 or more: none at
threshold 16 or below; weight 3: only at threshold 48): a step of two adjacent means fires
again when a fault *ends* (the return is a step too), so the tests' single-point drop is
raised a second time after it clears, and the runner's shift gives two events. Folds: files
0-3 and 4-7 held out chose step 10 rows, weight 1 (threshold 24, hold 5, clear 30: the same
states as generic-v6's numbers there); 8-11: the step off, threshold 24, hold 3, clear 60
(EDGE); 12-15: the step off, threshold 32, hold 5, clear 30 (all: drift lag 180, calibration
factor 2, relation factor 16). Held out pooled: 11 of 16 windows (missed: 2; 4, 6, 7; 14),
median delay 58 s, no false event in 1.51 h, F1 0.668, FAR 5.1 % (3 of 5 targets violated).
The choice on all 16 files is the step off with generic-v6's numbers (step rows 10 (EDGE),
weight 0 (EDGE)): generic-v6 itself, so no new model, and generic-v6 stays the default.
generic-v6's own numbers held out in this harness (the predictor kind fixed, trained per
fold) give 11 of 16, 58 s, no false event, F1 0.698, FAR 2.2 % (3 violations): round 13's
held-out figure (4 violations, F1 0.657) is partly the cost of choosing the predictor per
fold, and the fairer bar for a new feature is this one.

Round 15 (a one-sided step: a departure; written down and committed before any of its
results was looked at). Round 14's step failed the tests' behaviour because it fires on a
fault's end as on its start. A *departure* counts a step only when it moves the point's
rolling mean away from where calibration saw it: with `mean` the mean of the last
`step_rows` rows, `old` the same `step_rows` rows earlier and `c` the calibration median
of `mean`, departure = max(0, |mean - c| - |old - c|) in robust spreads of the step
(mean - old) over the calibration windows (widened by its drift over drift_lag, floor
0.05). A return towards the calibration is never a departure; a slow drift away is one only
by what it moved in `step_rows` rows. On the valve1 files it was looked at (each chosen on
in three folds), the flow's departures in the windows of files 7 and 14 were 12 to 17, in
files 2, 4 and 6 2 to 5, while normal rows reached 7 to 9 (file 2's thermocouple, file 12's
temperature) and the anomaly-free chunks 6: at best two more faults found, not 97 %.

- fixed: as round 14 (generic-v6's graph, predictor and scoring as the base, trained per
  fold); the graph gives per point level, residual, `mean`, `step` (mean - old), roughness;
  `mean` is never scored itself; `step` is scored as the departure above, weighed by
  `departure_weight` in the score: the window's score is the largest over the points of
  max(level deviation, residual deviation, departure_weight x departure), or the
  roughness, or the relation; calibration_factor lifts the threshold by the highest
  calibration score computed the same way. Weight 0 is generic-v6.

| number | range |
|---|---|
| step_rows | 10, 20, 30 |
| drift_lag | 60, 180 |
| departure_weight | 0 (off), 1, 1.5, 2, 3, 4 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

Round 15 rule: round 14's, with the bar measured in the same run: candidates, rank and
leave-files-out as round 14. A candidate replaces the shipped default only if its pooled
held-out figures violate fewer of the five valve1 targets than generic-v6's numbers held
out in the same harness (step off, drift lag 180, calibration factor 2, relation factor 16,
threshold 24, hold 5, clear 30, with each fold's predictor), or as many with a higher
held-out F1; the choice on all 16 files keeps both anomaly-free gates and has the
departure on (weight > 0). A winner ships as generic-v7 (generic-v6's graph with the mean
and the step, the departure's weight in the sidecar, its numbers) and becomes the
default; otherwise no new model, and the figures are reported.

Round 15's result (about 2 minutes on 2 cores; 3909 of 8640 combinations keep the tests'
behaviour per fold: the departure stays quiet when a fault ends). Every fold took the
departure on, all with calibration factor 2: files 0-3 held out: step 30 rows (EDGE), drift
lag 60, weight 2, relation factor 0, threshold 16, hold 3, clear 30; 4-7: 20 rows, lag 180,
weight 3, relation 16, threshold 24, hold 5, clear 30; 8-11: 30 rows (EDGE), lag 60, weight
3, relation 0, threshold 24, hold 1 (EDGE), clear 60 (EDGE); 12-15: 30 rows (EDGE), lag 180,
weight 4 (EDGE), relation 16, threshold 32, hold 5, clear 30. Held out pooled: 13 of 16
windows (missed: 2; 4, 6; files 7 and 14 found), median delay 57 s, 2 false events in
1.51 h (1.32 per hour: one in files 8-11, one in 12-15), F1 0.670, FAR 6.3 % (4 of 5 targets
violated), against generic-v6's numbers held out in the same run: 11 of 16, 58 s, no false
event, F1 0.698, FAR 2.2 % (3 violations). By the rule generic-v6 stays the default and no
new model is made. The choice on all 16 files would have been generic-v6's numbers with the
departure (step 20 rows, drift lag 180, weight 3, calibration factor 2, relation factor 16,
threshold 24, hold 5, clear 30): in-sample 13 of 16 (missed 2, 4, 6), 60 s, no false event,
F1 0.710, FAR 2.2 %, the gate 0.0 % with no event, two hours 0.0 % (2 violations). What the
departure buys held out (two flow drops on a channel that alternates between whole litres)
it pays for with false events where a fold chose it loosely (hold 1, or weight 4 at the end
of its range); files 2, 4 and 6 (drops of one litre, or a calibration whose own flow
wandered) are missed by every candidate chosen.

Round 16 (a longer rolling mean on discrete channels, with a quantisation floor; written
down and committed before any of its results was looked at). What round 15 left: the
departure found files 7 and 14 held out but paid with false events where folds chose it
loosely; files 2, 4 and 6 stay unseen. The diagnosis is specific to channels that read a few
whole values (the flow, whole litres; the pressure too): their 5-row median is two-valued,
so a drop of a litre moves it by the same step as normal flicker. A mean over more rows
resolves the share of time between two whole values, and scored as a *level* (its distance
from its calibration median) it fires while a fault lasts and falls back when it ends (no
second event at a fault's end, unlike round 14's step). Scored on every channel it does not
separate (a 30-row mean of file 12's temperature leaves its calibration by 13 to 19 spreads
outside the window, more than the flow drops of files 2, 4 and 6); scored on discrete
channels only, the flow's and pressure's normal rows on the valve1 files stay under 4
spreads, while the windows of files 6, 7 and 14 reach 6 to 28 (files 2 and 4: 3 to 5);
one anomaly-free chunk reaches 13 to 21 (its pressure or flow moves). This was seen on the
valve1 files (each chosen on in three folds) and the anomaly-free chunks (the gate) before
the ranges below were written; no held-out figure of this round had been computed.

- fixed: as round 14 (generic-v6's graph, predictor and scoring as the base, trained per
  fold); the graph gives per point level, residual, `mean` (the mean of the last
  `mean_rows` rows), roughness. A point is *discrete* when its calibration rows fall in 2 to
  8 clusters (sorted values split at gaps wider than a tenth of their range; clusters of
  fewer than 1 % of rows are outliers, at most 5 % of rows) each narrower than a tenth of
  the smallest gap between the clusters' medians; its *step* is the median gap between
  adjacent clusters' medians (`anomaly_step.discrete_step`; the valve1 flow: 1 litre).
  On discrete points the mean is scored as a level: its distance from its calibration
  median in its robust spread over the calibration windows, widened by its drift over
  drift_lag, floored at 0.05 and at the **quantisation floor step / sqrt(mean_rows)** (the
  spread of a mean of `mean_rows` rows that each fall on one of two values at random); on
  other points it is not scored (0). The window's score is the largest over the points of
  max(level deviation, residual deviation, mean_weight x mean deviation), or the
  roughness, or the relation; calibration_factor lifts the threshold by the highest
  calibration score computed the same way. Weight 0 is generic-v6.

| number | range |
|---|---|
| mean_rows | 15, 30, 60 |
| drift_lag | 60, 180 |
| mean_weight | 0 (off), 1, 2, 3, 4, 6, 8 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

Round 16 rule: round 15's, word for word: candidates (the tests' scenarios behave, scored
with each fold's own predictor), rank (round 10's, per group chosen on, with the gate's
false events) and leave-files-out as round 14. A candidate replaces the shipped default only
if its pooled held-out figures violate fewer of the five valve1 targets [windows < 97 %,
median delay > 30 s, false events > 0.5 per hour, row FAR > 12.7 %, F1 < 0.81] than
generic-v6's numbers held out in the same run (mean off, drift lag 180, calibration factor 2,
relation factor 16, threshold 24, hold 5, clear 30, each fold's predictor), or as many with a
higher held-out F1; the choice on all 16 files keeps both anomaly-free gates (400-row chunks
FAR <= 2 %, two hours no flagged row) and has the mean on (weight > 0). A winner ships as
generic-v7 (generic-v6's graph with the rolling mean, the discrete-channel rule and the
floor in the gateway's scoring, the weight in the sidecar, its numbers) and becomes the
default; otherwise no new model, and the figures are reported.

Round 16's result (83 s on 2 cores; a first run stopped before scoring anything, on the
harness reading round 14's key for the feature's rows; fixed, nothing else changed; 3402
of 10080 combinations keep the tests' behaviour per fold: the mean is scored on discrete
points only, which the tests' continuous series have none of). Files 0-3 held out: mean
60 rows (EDGE), drift lag 180, weight 4, calibration factor 0, relation factor 16,
threshold 32, hold 5, clear 10 (EDGE); 4-7: 30 rows, lag 180, weight 8 (EDGE),
calibration factor 2, relation 16, threshold 16, hold 5, clear 30; 8-11: 30 rows, lag
180, weight 8 (EDGE), calibration factor 0, relation 16, threshold 24, hold 3, clear 10
(EDGE); 12-15: the mean off (weight 0, EDGE), generic-v6's numbers with threshold 32. Held
out pooled: 13 of 16 windows (missed: 2; 4; 14; files 6 and 7 found), median delay 54 s, 4
false events in 1.51 h (2.64 per hour: one in files 0-3, three in 8-11), F1 0.776, FAR
2.1 % (4 of 5 targets violated), against generic-v6's numbers held out in the same run: 11
of 16, 58 s, no false event, F1 0.698, FAR 2.2 % (3 violations). By the rule generic-v6
stays the default and no model is made. Of the four held-out false events three start 134
to 163 rows after a fault's window, one before it, and none was raised by the mean:
generic-v6's own level (3) and relation (1) crossed the threshold there, under the folds'
calibration factor 0 and clear 10. With a weight of 4 or 8 the mean's own calibration
scores, times the calibration factor, lift the threshold, so the rule preferred
calibration factor 0, and the level lost the protection it gives generic-v6. The choice on
all 16 files would have been the mean of 60 rows (EDGE), lag 180, weight 4, calibration
factor 0, relation factor 16, threshold 32, hold 5, clear 10 (EDGE): in-sample 15 of 16
(missed: 2), 48 s, one false event (0.66 per hour), F1 0.848, FAR 4.3 %, the gate 2.0 %
with one event (0.60 per hour), two hours 0.0 % (3 violations; generic-v6's numbers: 3,
F1 0.698).

Round 17 (round 16's mean with the calibration factor kept off it; written down and
committed before any of its results was looked at). **This round's design was informed by
round 16's held-out false events**, so its held-out figures are less independent than a
first round's: files that were held out in round 16 have been looked at through their
false events. What round 16 left: its four held-out false events were none of the mean's;
generic-v6's own level (3) and relation (1) crossed the threshold 134 to 163 rows after a
fault's window (one before it), in folds that chose calibration factor 0 and clear 10.
With a mean weight of 4 or 8, the mean's own calibration scores times the calibration
factor lifted the threshold of every feature, so the rule preferred the calibration factor
off, and the level lost the protection that factor gives generic-v6. Hypothesis: with the
mean left out of the calibration factor's maximum, the rule can keep the calibration factor
on the level, residual and roughness and still weigh the mean, so the mean's faults are
found without generic-v6's level losing its protection.

- fixed: as round 16 (generic-v6's graph, predictor and scoring as the base, trained per
  fold; the `mean_rows`-row rolling mean scored on discrete points only, its spread
  floored at step / sqrt(mean_rows)). What changes is the threshold: calibration_factor
  lifts it by the highest calibration score of the level, residual and roughness only
  (threshold_lifted = max(threshold, calibration_factor x max(level, residual, roughness
  calibration maxima))), and the mean has its own fixed share: it raises when mean_weight x
  mean deviation reaches `threshold` (the searched number, never lifted; the mean's spread
  already comes from the calibration's own rolling means, widened by their drift). The
  window's score, in units of the lifted threshold, is the largest of the level-like
  deviations, the roughness, mean_weight x mean deviation x threshold_lifted / threshold,
  and the relation part (as before). Weight 0 is generic-v6 (its numbers give the same
  states as in rounds 14 to 16).

| number | range |
|---|---|
| mean_rows | 15, 30, 60 |
| drift_lag | 60, 180 |
| mean_weight | 0 (off), 1, 2, 3, 4, 6, 8 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

(Round 16's ranges, unchanged; round 16 chose mean_rows 60, mean_weight 8 and clear 10 at
the ends of their ranges, and they are kept as they were so that the one change is the
threshold's.)

Round 17 rule: round 16's, word for word: candidates (the tests' scenarios behave, scored
with each fold's own predictor), rank (round 10's, per group chosen on, with the gate's
false events) and leave-files-out as round 14. A candidate replaces the shipped default only
if its pooled held-out figures violate fewer of the five valve1 targets [windows < 97 %,
median delay > 30 s, false events > 0.5 per hour, row FAR > 12.7 %, F1 < 0.81] than
generic-v6's numbers held out in the same run (mean off, drift lag 180, calibration factor 2,
relation factor 16, threshold 24, hold 5, clear 30, each fold's predictor), or as many with a
higher held-out F1; the choice on all 16 files keeps both anomaly-free gates (400-row chunks
FAR <= 2 %, two hours no flagged row) and has the mean on (weight > 0). A winner ships as
generic-v7 (generic-v6's graph with the rolling mean, the discrete-channel rule and the
floor in the gateway's scoring, the mean's own threshold share, the weight in the sidecar,
its numbers) and becomes the default; otherwise no new model, and the figures are reported.

Round 17's result (95 s on 2 cores; 3402 of 10080 combinations keep the tests' behaviour
per fold, as round 16). Files 0-3 held out: mean 60 rows (EDGE), drift lag 180, weight 4,
calibration factor 0, relation factor 16, threshold 32, hold 5, clear 10 (EDGE) (round 16's
choice for this fold); 4-7: 30 rows, lag 180, weight 8 (EDGE), calibration factor 2,
relation 16, threshold 24, hold 5, clear 30; 8-11: 30 rows, lag 180, weight 8 (EDGE),
calibration factor 2, relation 16, threshold 24, hold 1 (EDGE), clear 10 (EDGE); 12-15: 30
rows, lag 180, weight 8 (EDGE), calibration factor 2, relation 16, threshold 24, hold 5,
clear 10 (EDGE). Three of four folds now keep the calibration factor on. Held out pooled:
15 of 16 windows (missed: 2), median delay 43 s, 3 false events in 1.51 h (1.98 per hour:
one in files 0-3, two in 8-11), F1 0.855, FAR 6.2 % (3 of 5 targets violated: windows,
delay, false events), against generic-v6's numbers held out in the same run: 11 of 16, 58
s, no false event, F1 0.698, FAR 2.2 % (3 violations: windows, delay, F1). Held out it is
better by the rule (as many violations, higher F1). None of the three held-out false events
was raised by the mean: file 1's by the level under the 0-3 fold's calibration factor 0,
file 9's by the level and the relation under the 8-11 fold's hold 1. But the choice on all
16 files, the mean of 30 rows, lag 180, weight 8 (EDGE), calibration factor 2, relation
factor 16, threshold 24, hold 5, clear 10 (EDGE), in-sample 16 of 16 windows, 54 s, no
false event, F1 0.866, FAR 3.2 %, fails the anomaly-free gate: 10.2 % of the 400-row
chunks' rows, 8 events (4.80 per hour; two hours of calibration: 0.0 %), every one raised
by the mean (chunks 0, 3 and 6; their discrete channels are the pressure and the flow): with
its share never lifted, a weight of 8 raises at 3 spreads of the calibration's own rolling
means. The rank let the fold choices trade the gate for the valve1 conditions (2
violations, both the gate's, against no choice with fewer). By the rule (both gates kept
by the choice on all 16 files) generic-v6 stays the default and no model is made. What it
points to: the mean needs a protection of its own against a calibration that moved (its
share lifted by its own calibration maximum, apart from the level's), not none.

Round 18 (round 17's mean with a calibration factor of its own; written down and committed
before any of its results was looked at). **This round's design was informed by round 17's
anomaly-free gate failure and round 16's held-out false events**, so its held-out figures
are less independent than a first round's: files held out in rounds 16 and 17 and the
anomaly-free chunks have been looked at through their false events. What round 17 left:
held out it was better than generic-v6's numbers by the rule (15 of 16 windows, F1 0.855,
none of its three held-out false events the mean's), but its choice on all 16 files (weight
8) flagged 10.2 % of the 400-row anomaly-free chunks' rows, 8 events, every one raised by
the mean on chunks whose discrete channels (pressure, flow) sat elsewhere than in their
calibration: the mean's share is never lifted, so a weight of 8 raises at 3 spreads of the
calibration's own rolling means. Hypothesis: lifting the mean's own share by the mean's own
calibration maximum (apart from the level's) protects the mean against a calibration that
moved, as the calibration factor protects generic-v6's level, so that a weighed mean keeps
the held-out faults round 17 found and both anomaly-free gates.

- fixed: as round 17 (generic-v6's graph, predictor and scoring as the base, trained per
  fold; the `mean_rows`-row rolling mean scored on discrete points only, its spread floored
  at step / sqrt(mean_rows); calibration_factor lifts the threshold by the level's,
  residual's and roughness's calibration maxima only). What changes is the mean's share: it
  raises when mean_weight x mean deviation reaches its own threshold
  threshold_mean = max(threshold, mean_calibration_factor x mean_weight x the mean's highest
  calibration deviation) (the mean's calibration maximum over the calibration rows, on the
  discrete points, computed as its scores are). The window's score, in units of the lifted
  threshold, is the largest of the level-like deviations, the roughness, mean_weight x mean
  deviation x threshold_lifted / threshold_mean, and the relation part (as before).
  mean_calibration_factor 0 is round 17's rule; weight 0 is generic-v6 (its numbers give
  the same states as in rounds 14 to 17).

| number | range |
|---|---|
| mean_rows | 15, 30, 60 |
| drift_lag | 60, 180 |
| mean_weight | 0 (off), 1, 2, 3, 4, 6, 8 |
| mean_calibration_factor | 0 (round 17), 1.5, 2, 3 |
| calibration_factor | 0, 2 |
| relation_factor | 0, 16 |
| threshold | 12, 16, 24, 32, 48 |
| hold | 1, 3, 5, 10 |
| clear | 10, 30, 60 |

(Round 17's ranges, unchanged, with mean_calibration_factor added; round 17 chose
mean_weight 8 and clear 10 at the ends of their ranges, and they are kept as they were so
that the one change is the mean's own calibration factor. A choice at either end of a range
is flagged (EDGE).)

Round 18 rule: round 17's, word for word: candidates (the tests' scenarios behave, scored
with each fold's own predictor), rank (round 10's, per group chosen on, with the gate's
false events) and leave-files-out as round 14. A candidate replaces the shipped default only
if its pooled held-out figures violate fewer of the five valve1 targets [windows < 97 %,
median delay > 30 s, false events > 0.5 per hour, row FAR > 12.7 %, F1 < 0.81] than
generic-v6's numbers held out in the same run (mean off, drift lag 180, calibration factor 2,
relation factor 16, threshold 24, hold 5, clear 30, each fold's predictor), or as many with a
higher held-out F1; the choice on all 16 files keeps both anomaly-free gates (400-row chunks
FAR <= 2 %, two hours no flagged row) and has the mean on (weight > 0). A winner ships as
generic-v7 (generic-v6's graph with the rolling mean, the discrete-channel rule and the
floor in the gateway's scoring, the mean's own threshold share, the weight in the sidecar,
its numbers) and becomes the default; otherwise no new model, and the figures are reported.
Plus, stated again because round 17 failed on it: the choice on all 16 files must keep both
anomaly-free gates (400-row chunks FAR <= 2 %, two hours no flagged row); held-out figures
alone never make a default.

Round 18's result (258 s on 2 cores; 13608 of 40320 combinations keep the tests' behaviour
per fold). Files 0-3 held out: mean 60 rows (EDGE), drift lag 180, weight 4, mean
calibration factor 0 (EDGE), calibration factor 0, relation factor 16, threshold 32, hold 5,
clear 10 (EDGE) (round 16's and 17's choice for this fold); 4-7: 30 rows, lag 180, weight 8
(EDGE), mean calibration factor 2, calibration factor 2, relation 16, threshold 24, hold 5,
clear 30; 8-11: the same with hold 1 (EDGE); 12-15: 30 rows, lag 180, weight 6, mean
calibration factor 2, calibration factor 2, relation 16, threshold 16, hold 5, clear 30.
Held out pooled: 15 of 16 windows (missed: 2), median delay 45 s, 4 false events in 1.51 h
(2.64 per hour: one in files 0-3, two in 8-11, one in 12-15), F1 0.853, FAR 8.0 % (3 of 5
targets violated: windows, delay, false events), against generic-v6's numbers held out in
the same run: 11 of 16, 58 s, no false event, F1 0.698, FAR 2.2 % (3 violations: windows,
delay, F1). Held out it is better by the rule (as many violations, higher F1). But the
choice on all 16 files, the mean of 30 rows, lag 180, weight 8 (EDGE), mean calibration
factor 2, calibration factor 2, relation factor 16, threshold 24, hold 5, clear 30,
in-sample 16 of 16 windows, 57 s, no false event, F1 0.877, FAR 4.5 %, fails the
anomaly-free gate again: 11.0 % of the 400-row chunks' rows, 5 events (3.00 per hour; two
hours of calibration: 0.0 %). Four of the five are chunk 0's (463 of its 750 rows
flagged), one chunk 3's; each raised by the mean (at the event's start the mean's weighed
deviation was 25.0 to 31.7 against its own threshold of 24.6 or 24.8; the level's
deviations 2.7 to 5.8 and the relation's 2.9 to 19.5 against a threshold of 24). The mean's
own calibration maximum did not protect it: over those chunks' 400 calibration rows the
30-row mean never left its median by more than 1.5 spreads, so the factor 2 x weight 8 x 1.5
lifted the mean's threshold from 24 to 24.6 only, while in the scored rows the same mean
wandered to 4.4 spreads (chunk 0) and 17 (chunk 3) with nothing happening. None of the
five runners-up (all with the mean on, weight 8) kept the gate (9.3 % to 12.3 %). By the
rule (both gates kept by the choice on all 16 files) generic-v6 stays the default and no
model is made.
What it points to: the 339 calibration windows of 400 rows hold about 11 independent 30-row
means, too few to learn how far a discrete channel's mean wanders in normal operation (with
two hours of calibration no round flagged a row); the valve1 faults the mean finds (round
16's look: 3 to 5 spreads on files 2 and 4, 6 to 28 on 6, 7 and 14) overlap that
wandering. A mean that needs a longer calibration
than the level, or is scored only after one, is a different design (a new round, its rule
written first).

Leave-files-out: for each group, the rule chooses on the other three groups and the choice
is measured on the held-out group; the four held-out results are pooled into one figure.
The shipped defaults are the rule's choice on all 16 files (that figure is in-sample). A
chosen value at either end of its range is flagged (the range may be too narrow).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests' scenarios

from skab_data import LabelledSeries, anomaly_free_series, valve_series

from watchpost.anomaly_eval import Tally, hold_clear
from watchpost.anomaly_robust import (
    ROUGHNESS_EPS,
    deviations,
    feature_stats,
    fit_relation,
    fit_residuals,
    input_scaling,
    quantised,
    topk_mean,
    window_scores,
)

FloatArray = npt.NDArray[np.float64]

GRID: dict[str, list[Any]] = {
    "level_rows": [3, 5, 9, 15],
    "drift_lag": [0, 60, 180],
    "combine": ["max", "top2"],
    "relation_factor": [0.0, 4.0, 8.0, 16.0],
    "threshold": [4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0],
    "hold": [1, 3, 5, 10],
    "clear": [5, 10, 30, 60],
}
GRID9: dict[str, list[Any]] = {
    "drift_lag": [0, 60, 180, 300],
    "combine": ["max", "top2"],
    "roughness_weight": [1.0, 2.0, 4.0],
    "calibration_factor": [0.0, 2.0, 3.0],
    "relation_factor": [0.0, 8.0, 16.0, 32.0, 64.0],
    "threshold": [4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0],
    "hold": [1, 3, 5, 10],
    "clear": [10, 30, 60, 120],
}
LEVEL_ROWS9 = 5  # the generic-v2 graph's, which generic-v3 shares
GRID10: dict[str, list[Any]] = {
    "drift_lag": [0, 60, 180],
    "combine": ["max", "top2"],
    "feature_cap": [0.0, 3.0, 4.0, 6.0, 8.0],  # 0: off
    "roughness_weight": [1.0, 2.0],
    "calibration_factor": [0.0, 2.0],
    "relation_factor": [0.0, 16.0, 64.0],
    "threshold": [4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0],
    "hold": [1, 3, 5, 10],
    "clear": [10, 30, 60, 120],
}
ROUND9_CHOICE = (0, "max", 0.0, 1.0, 2.0, 0.0, 16.0, 5, 30)  # in GRID10's order, cap off
WINDOW = 32
GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
LIMITS = {"detected": 0.97, "false_per_hour": 0.5, "far": 0.127, "gate_far": 0.02}


def numpy_features(
    z: FloatArray, level_rows: int, window: int = WINDOW
) -> tuple[FloatArray, FloatArray]:
    """Level (rolling median of the last ``level_rows``) and roughness energy (mean squared
    difference over the last ``window`` rows) per row, NaN until a window is full; the same
    numbers as the generic-v2 model, computed in numpy for the search."""
    n, p = z.shape
    level = np.full((n, p), np.nan)
    level[level_rows - 1 :] = np.median(sliding_window_view(z, level_rows, axis=0), axis=-1)
    d2 = np.vstack([np.zeros((1, p)), np.diff(z, axis=0) ** 2])  # d2[i]: rows i-1 to i
    c2 = np.cumsum(np.vstack([np.zeros((1, p)), d2]), axis=0)
    energy = np.full((n, p), np.nan)
    energy[window - 1 :] = (c2[window:] - c2[1 : n - window + 2]) / (window - 1)
    level[: window - 1] = np.nan
    return level, energy


@dataclass
class Scored:
    """One series scored by one feature setting: per-row score in threshold units
    (before the threshold), relation mapped in; and the truth."""

    point: FloatArray
    relation: FloatArray  # relation / relation_max (0 when off)
    truth: npt.NDArray[np.bool_]


def score_series(s: LabelledSeries, cal: int, level_rows: int, drift_lag: int, how: str) -> Scored:
    center, scale = input_scaling(s.values[:cal])
    z = (s.values - center) / scale
    level, energy = numpy_features(z, level_rows)
    feats = np.stack([level, np.log(energy + ROUGHNESS_EPS)], axis=-1).reshape(len(z), -1)
    fc = feats[WINDOW - 1 : cal]
    drift = fc[drift_lag:] - fc[:-drift_lag] if drift_lag else None
    fcenter, fscale, flat_seen = feature_stats(fc, drift, 2)
    dev = deviations(feats[cal:], fcenter, fscale, flat_seen, 2)
    score = window_scores(dev, 1 if how == "max" else 2)
    signed = (feats[:, 0::2] - fcenter[0::2]) / fscale[0::2]
    rel = fit_relation(signed[WINDOW - 1 : cal], drift_lag)
    rv, _share = rel.scores(signed[cal:])
    return Scored(score, rv / max(rel.max_value, 1e-6), s.truth[cal:])


@dataclass
class Scored9:
    """One series scored by one round-9 feature setting: per-row level and roughness scores
    (before weighting), their calibration maxima, the relation in units of its calibration
    maximum; and the truth."""

    level: FloatArray
    rough: FloatArray
    cal_level: float
    cal_rough: float
    relation: FloatArray
    truth: npt.NDArray[np.bool_]


def score_series9(
    s: LabelledSeries, cal: int, drift_lag: int, how: str, cap: float = 0.0
) -> Scored9:
    center, scale = input_scaling(s.values[:cal])
    z = (s.values - center) / scale
    level, energy = numpy_features(z, LEVEL_ROWS9)
    feats = np.stack([level, np.log(energy + ROUGHNESS_EPS)], axis=-1).reshape(len(z), -1)
    fc = feats[WINDOW - 1 : cal]
    drift = fc[drift_lag:] - fc[:-drift_lag] if drift_lag else None
    fcenter, fscale, flat_seen = feature_stats(fc, drift, 2, quantised(s.values[:cal]), cap=cap)
    k = 1 if how == "max" else 2
    dev = deviations(feats[cal:], fcenter, fscale, flat_seen, 2)
    cdev = deviations(fc, fcenter, fscale, flat_seen, 2)
    levels = feats[:, 0::2]  # as the device fits it: on the levels (the ridge is not scale-free)
    rel = fit_relation(levels[WINDOW - 1 : cal], drift_lag)
    rv, _share = rel.scores(levels[cal:])
    return Scored9(
        level=topk_mean(dev[..., 0], k),
        rough=dev[..., 1:].max(axis=(-2, -1)),
        cal_level=float(topk_mean(cdev[..., 0], k).max()),
        cal_rough=float(cdev[..., 1:].max()),
        relation=rv / max(rel.max_value, 1e-6),
        truth=s.truth[cal:],
    )


Decision9 = tuple[float, float, float, float, int, int]  # weight, cf, rf, threshold, hold, clear


def decide9(sc: Scored9, dec: Decision9) -> npt.NDArray[np.bool_]:
    """The state per row of a round-9 combination (as `AnomalyDetector` with generic-v3)."""
    weight, cf, rf, threshold, hold, clear = dec
    thr = max(threshold, cf * max(sc.cal_level, weight * sc.cal_rough))
    score = np.maximum(sc.level, weight * sc.rough)
    if rf > 0:
        score = np.maximum(score, sc.relation / rf * thr)
    return hold_clear(score, thr, hold, clear)


@dataclass
class Counts:
    tally: Tally

    @staticmethod
    def of(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> Counts:
        t = Tally()
        t.add(pred, truth)
        return Counts(t)


def decide(sc: Scored, threshold: float, rf: float, hold: int, clear: int) -> npt.NDArray[np.bool_]:
    score = sc.point if rf <= 0 else np.maximum(sc.point, sc.relation / rf * threshold)
    return hold_clear(score, threshold, hold, clear)


def merge(ts: list[Tally]) -> Tally:
    out = Tally()
    for t in ts:
        for k in (
            "tp",
            "fp",
            "fn",
            "tn",
            "windows",
            "detected",
            "false_events",
            "events",
            "normal_rows",
        ):
            setattr(out, k, getattr(out, k) + getattr(t, k))
        out.delays_s += t.delays_s
    return out


def violations(valve: Tally, gate400: Tally, gate2h: Tally) -> int:
    return sum(
        [
            valve.detected_share < LIMITS["detected"],
            valve.false_per_hour > LIMITS["false_per_hour"],
            valve.far > LIMITS["far"],
            gate400.far > LIMITS["gate_far"],
            gate2h.fp > 0,
        ]
    )


def _scenarios() -> list[tuple[LabelledSeries, int, int | None, int | None, Any]]:
    """The existing tests' scenarios: (series, calibration rows, hold, clear (None: the
    combination's), check of the state per row after calibration)."""
    from tests.test_anomaly import normal_rows  # noqa: PLC0415

    def series(values: FloatArray) -> LabelledSeries:
        return LabelledSeries("test", [], values, np.zeros(len(values), dtype=bool))

    out: list[tuple[LabelledSeries, int, int | None, int | None, Any]] = []
    step = normal_rows(900, seed=5)
    step[500:650, 0] -= 5.0
    out.append(
        (
            series(step),
            300,
            3,
            5,
            lambda st: st[200:220].any() and not st[:200].any() and not st[400:].any(),
        )
    )
    runner = normal_rows(800, seed=7)
    runner[500:600, 1] += 0.5
    out.append((series(runner), 300, 3, 5, lambda st: len(runs_of(st)) == 1 and not st[-1]))
    stuck = normal_rows(700, seed=6)
    stuck[450:, 2] = stuck[450, 2]
    out.append((series(stuck), 300, 3, 5, lambda st: st.any()))
    rng = np.random.default_rng(0)
    flow = 32 + 0.4 * rng.standard_normal(600)
    current = 1.0 + 0.2 * rng.standard_normal(600)
    flow[420:570] -= 6.0
    cli = np.stack([np.round(flow, 4), np.round(current, 4)], axis=1)
    out.append(
        (
            series(cli),
            300,
            None,
            10,
            lambda st: st[120:131].any() and not st[:120].any() and not st[290:].any(),
        )
    )
    return out


def runs_of(state: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    from watchpost.anomaly_eval import runs  # noqa: PLC0415

    return runs(state)


def behaving() -> dict[tuple[Any, ...], bool]:
    """Per combination: do the existing tests' scenarios behave as the tests assert?"""
    scen = _scenarios()
    ok: dict[tuple[Any, ...], bool] = {}
    for lr, lag, how in itertools.product(GRID["level_rows"], GRID["drift_lag"], GRID["combine"]):
        scored = [score_series(s, cal, lr, lag, how) for s, cal, *_rest in scen]
        for rf, thr, hold, clear in itertools.product(
            GRID["relation_factor"], GRID["threshold"], GRID["hold"], GRID["clear"]
        ):
            good = True
            for sc, (_s, _cal, h, c, check) in zip(scored, scen, strict=True):
                st = decide(sc, thr, rf, hold if h is None else h, clear if c is None else c)
                good = good and bool(check(st))
            ok[(lr, lag, how, rf, thr, hold, clear)] = good
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("valve_dir", type=Path)
    ap.add_argument("anomaly_free", type=Path)
    ap.add_argument(
        "--round", type=int, default=12, choices=[8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    )
    args = ap.parse_args()
    if args.round in (14, 15, 16, 17, 18):
        from anomaly_step import main14  # noqa: PLC0415 (needs TensorFlow)

        return main14(args, sys.modules[__name__])
    if args.round == 13:
        from anomaly_predictor import main13  # noqa: PLC0415 (needs TensorFlow)

        return main13(args, sys.modules[__name__])
    if args.round == 12:
        return main12(args)
    if args.round == 11:
        return main11(args)
    if args.round == 8:
        return main8(args)
    return main9(args) if args.round == 9 else main10(args)


def describe_in(grid: dict[str, list[Any]], combo: tuple[Any, ...]) -> str:
    """A combination as ``name=value``, a value at either end of its range flagged."""
    parts = []
    for k, v in zip(grid, combo, strict=True):
        rng = grid[k]
        edge = " (EDGE)" if rng.index(v) in (0, len(rng) - 1) and len(rng) > 2 else ""
        parts.append(f"{k}={v}{edge}")
    return ", ".join(parts)


def behaving9() -> dict[tuple[Any, ...], bool]:
    """Per round-9 combination: do the existing tests' scenarios behave as asserted?"""
    scen = _scenarios()
    ok: dict[tuple[Any, ...], bool] = {}
    for lag, how in itertools.product(GRID9["drift_lag"], GRID9["combine"]):
        scored = [score_series9(s, cal, lag, how) for s, cal, *_rest in scen]
        for w, cf, rf, thr, hold, clear in itertools.product(*(GRID9[k] for k in list(GRID9)[2:])):
            good = True
            for sc, (_s, _cal, h, c, check) in zip(scored, scen, strict=True):
                st = decide9(
                    sc, (w, cf, rf, thr, hold if h is None else h, clear if c is None else c)
                )
                good = good and bool(check(st))
            ok[(lag, how, w, cf, rf, thr, hold, clear)] = good
    return ok


def group_violations(files: list[Tally], groups: list[list[int]], g400: Tally, g2h: Tally) -> int:
    """Round 9: the valve1 conditions on each group, the gate's two once."""
    n = 0
    for g in groups:
        t = merge([files[i] for i in g])
        n += (t.detected_share < LIMITS["detected"]) + (t.false_per_hour > LIMITS["false_per_hour"])
        n += t.far > LIMITS["far"]
    return n + (g400.far > LIMITS["gate_far"]) + (g2h.fp > 0)


def main9(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    valve = valve_series(args.valve_dir)
    chunks, long_cal = anomaly_free_series(args.anomaly_free)
    ok = behaving9()
    print(f"{sum(ok.values())} of {len(ok)} combinations keep the existing tests' behaviour")
    results: dict[tuple[Any, ...], tuple[list[Tally], Tally, Tally]] = {}
    for lag, how in itertools.product(GRID9["drift_lag"], GRID9["combine"]):
        sv = [score_series9(s, 400, int(lag), str(how)) for s in valve]
        sg = [score_series9(s, 400, int(lag), str(how)) for s in chunks]
        sl = score_series9(long_cal, 7200, int(lag), str(how))
        for w, cf, rf, thr, hold, clear in itertools.product(*(GRID9[k] for k in list(GRID9)[2:])):
            combo = (lag, how, w, cf, rf, thr, hold, clear)
            if not ok[combo]:
                continue
            dec: Decision9 = (float(w), float(cf), float(rf), float(thr), int(hold), int(clear))
            files = [Counts.of(decide9(s, dec), s.truth).tally for s in sv]
            g400 = merge([Counts.of(decide9(s, dec), s.truth).tally for s in sg])
            g2h = Counts.of(decide9(sl, dec), sl.truth).tally
            results[combo] = (files, g400, g2h)
    print(f"{len(results)} candidates scored in {time.perf_counter() - t0:.0f} s", flush=True)

    def rank(combo: tuple[Any, ...], groups: list[list[int]]) -> tuple[float, ...]:
        files, g400, g2h = results[combo]
        v = merge([files[i] for g in groups for i in g])
        *_rest, thr, hold, clear = combo
        return (
            -group_violations(files, groups, g400, g2h),
            v.f1,
            -v.median_delay_s,
            float(thr),
            float(hold),
            float(clear),
        )

    def figures(t: Tally, g400: Tally, g2h: Tally) -> str:
        return (
            f"{t.row_line()}; {t.event_line()}; gate 400 rows FAR {g400.far:.1%} "
            f"({g400.false_events} events), 2 h FAR {g2h.far:.1%}"
        )

    held: list[Tally] = []
    for group in GROUPS:
        train = [g for g in GROUPS if g != group]
        best = max(results, key=lambda c: rank(c, train))
        files, g400, g2h = results[best]
        out = merge([files[i] for i in group])
        held.append(out)
        v = -rank(best, train)[0]
        print(
            f"held out files {group[0]}-{group[-1]}: chosen on the others: "
            f"{describe_in(GRID9, best)}"
        )
        where = merge([files[i] for g in train for i in g])
        print(f"  where chosen ({v} violations): {figures(where, g400, g2h)}")
        print(f"  held out:     {out.row_line()}; {out.event_line()}", flush=True)
    pooled = merge(held)
    print(f"leave-files-out, 4 held-out groups pooled: {pooled.row_line()}; {pooled.event_line()}")
    best = max(results, key=lambda c: rank(c, GROUPS))
    files, g400, g2h = results[best]
    print(f"chosen on all 16 files (generic-v3's defaults): {describe_in(GRID9, best)}")
    print(f"  in-sample ({-rank(best, GROUPS)[0]} violations): {figures(merge(files), g400, g2h)}")
    for g in GROUPS:
        t = merge([files[i] for i in g])
        print(f"    files {g[0]}-{g[-1]}: {t.row_line()}; {t.event_line()}")
    print("runners-up on all files:")
    for c in sorted(results, key=lambda c: rank(c, GROUPS), reverse=True)[1:6]:
        files, g400, g2h = results[c]
        print(
            f"  {describe_in(GRID9, c)} ({-rank(c, GROUPS)[0]} violations): "
            f"{figures(merge(files), g400, g2h)}"
        )
    return 0


def behaving10() -> dict[tuple[Any, ...], bool]:
    """Per round-10 combination: do the existing tests' scenarios behave as asserted?"""
    scen = _scenarios()
    ok: dict[tuple[Any, ...], bool] = {}
    for lag, how, cap in itertools.product(*(GRID10[k] for k in list(GRID10)[:3])):
        scored = [score_series9(s, cal, lag, how, cap) for s, cal, *_rest in scen]
        for w, cf, rf, thr, hold, clear in itertools.product(
            *(GRID10[k] for k in list(GRID10)[3:])
        ):
            good = True
            for sc, (_s, _cal, h, c, check) in zip(scored, scen, strict=True):
                st = decide9(
                    sc, (w, cf, rf, thr, hold if h is None else h, clear if c is None else c)
                )
                good = good and bool(check(st))
            ok[(lag, how, cap, w, cf, rf, thr, hold, clear)] = good
    return ok


def main10(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    valve = valve_series(args.valve_dir)
    chunks, long_cal = anomaly_free_series(args.anomaly_free)
    ok = behaving10()
    print(f"{sum(ok.values())} of {len(ok)} combinations keep the existing tests' behaviour")
    results: dict[tuple[Any, ...], tuple[list[Tally], Tally, Tally]] = {}
    for lag, how, cap in itertools.product(*(GRID10[k] for k in list(GRID10)[:3])):
        sv = [score_series9(s, 400, int(lag), str(how), float(cap)) for s in valve]
        sg = [score_series9(s, 400, int(lag), str(how), float(cap)) for s in chunks]
        sl = score_series9(long_cal, 7200, int(lag), str(how), float(cap))
        for w, cf, rf, thr, hold, clear in itertools.product(
            *(GRID10[k] for k in list(GRID10)[3:])
        ):
            combo = (lag, how, cap, w, cf, rf, thr, hold, clear)
            if not ok[combo] and combo != ROUND9_CHOICE:
                continue
            dec: Decision9 = (float(w), float(cf), float(rf), float(thr), int(hold), int(clear))
            files = [Counts.of(decide9(s, dec), s.truth).tally for s in sv]
            g400 = merge([Counts.of(decide9(s, dec), s.truth).tally for s in sg])
            g2h = Counts.of(decide9(sl, dec), sl.truth).tally
            results[combo] = (files, g400, g2h)
    print(f"{len(results)} candidates scored in {time.perf_counter() - t0:.0f} s", flush=True)

    def violations10(combo: tuple[Any, ...], groups: list[list[int]]) -> int:
        files, g400, g2h = results[combo]
        extra = g400.false_per_hour > LIMITS["false_per_hour"]
        return group_violations(files, groups, g400, g2h) + extra

    def rank(combo: tuple[Any, ...], groups: list[list[int]]) -> tuple[float, ...]:
        files, _g400, _g2h = results[combo]
        v = merge([files[i] for g in groups for i in g])
        *_rest, thr, hold, clear = combo
        return (
            -violations10(combo, groups),
            v.f1,
            -v.median_delay_s,
            float(thr),
            float(hold),
            float(clear),
        )

    def figures(t: Tally, g400: Tally, g2h: Tally) -> str:
        return (
            f"{t.row_line()}; {t.event_line()}; gate 400 rows FAR {g400.far:.1%} "
            f"({g400.false_events} events), 2 h FAR {g2h.far:.1%}"
        )

    candidates = [c for c in results if ok[c]]
    held: list[Tally] = []
    for group in GROUPS:
        train = [g for g in GROUPS if g != group]
        best = max(candidates, key=lambda c: rank(c, train))
        files, g400, g2h = results[best]
        out = merge([files[i] for i in group])
        held.append(out)
        where = merge([files[i] for g in train for i in g])
        print(
            f"held out files {group[0]}-{group[-1]}: chosen on the others: "
            f"{describe_in(GRID10, best)}"
        )
        print(
            f"  where chosen ({violations10(best, train)} violations): {figures(where, g400, g2h)}"
        )
        print(f"  held out:     {out.row_line()}; {out.event_line()}", flush=True)
    pooled = merge(held)
    print(f"leave-files-out, 4 held-out groups pooled: {pooled.row_line()}; {pooled.event_line()}")
    best = max(candidates, key=lambda c: rank(c, GROUPS))
    for label, combo in (
        ("round 10's choice on all 16 files", best),
        ("round 9's choice", ROUND9_CHOICE),
    ):
        files, g400, g2h = results[combo]
        print(f"{label}: {describe_in(GRID10, combo)}")
        print(
            f"  in-sample ({violations10(combo, GROUPS)} violations): "
            f"{figures(merge(files), g400, g2h)}"
        )
        for g in GROUPS:
            t = merge([files[i] for i in g])
            print(f"    files {g[0]}-{g[-1]}: {t.row_line()}; {t.event_line()}")
    wins = rank(best, GROUPS)[:2] > rank(ROUND9_CHOICE, GROUPS)[:2]
    print(f"generic-v3's numbers: {'round 10' if wins else 'round 9'}'s choice (the rule above)")
    print("runners-up on all files:")
    for c in sorted(candidates, key=lambda c: rank(c, GROUPS), reverse=True)[1:6]:
        files, g400, g2h = results[c]
        print(
            f"  {describe_in(GRID10, c)} ({violations10(c, GROUPS)} violations): "
            f"{figures(merge(files), g400, g2h)}"
        )
    return 0


# --------------------------------------------------------------------------- round 11

GRID11: dict[str, list[Any]] = {
    "features": ["v3", "short", "short+long", "short+slope", "short+long+slope"],
    "short": [5, 10],
    "long": [30, 60],
    "slope": [10, 20],
    "drift_lag": [60, 120, 180, 220],
    "calibration_factor": [0.0, 2.0],
    "relation_factor": [0.0, 16.0, 64.0],
    "threshold": [8.0, 12.0, 16.0, 24.0, 32.0, 48.0],
    "hold": [1, 3, 5, 10],
    "clear": [10, 30, 60],
}
FEATURE_KEYS11 = ["features", "short", "long", "slope", "drift_lag"]
WINDOW11 = 64
V3_REFERENCE = ("v3", 5, 30, 10, 180, 2.0, 16.0, 24.0, 5, 30)  # generic-v3's numbers
V3_HELD_OUT = {"windows": 9 / 16, "delay": 56.0, "false_per_hour": 1.32, "far": 0.073, "f1": 0.579}


def feature_settings11() -> list[tuple[Any, ...]]:
    """Round 11's feature settings, without repeats (a number the set lacks is not varied)."""
    out = []
    for combo in itertools.product(*(GRID11[k] for k in FEATURE_KEYS11)):
        feats, short, long, slope, _lag = combo
        if feats == "v3" and short != GRID11["short"][0]:
            continue
        if "long" not in feats and long != GRID11["long"][0]:
            continue
        if "slope" not in feats and slope != GRID11["slope"][0]:
            continue
        out.append(combo)
    return out


def slope_weights(rows: int) -> FloatArray:
    """Least-squares slope over ``rows`` rows times (rows - 1): the change across them."""
    t = np.arange(rows, dtype=np.float64)
    t -= t.mean()
    return np.asarray(t / (t**2).sum() * (rows - 1))


def v4_features(z: FloatArray, setting: tuple[Any, ...]) -> tuple[FloatArray, int]:
    """Per row ``[n, points * (levels + 1)]``: the set's level-like features then the
    roughness (log energy over the last 32 rows), NaN until the window is full; and the
    window. The same numbers as the generic-v4 graph (``watchpost.models.train``)."""
    feats_set, short, long, slope, _lag = setting
    n, p = z.shape
    window = WINDOW if feats_set == "v3" else WINDOW11
    level5, energy = numpy_features(z, LEVEL_ROWS9)
    cols: list[FloatArray] = []
    if feats_set == "v3":
        cols.append(level5)
    else:
        c = np.cumsum(np.vstack([np.zeros((1, p)), z]), axis=0)

        def mean_of(rows: int) -> FloatArray:
            m = np.full((n, p), np.nan)
            m[rows - 1 :] = (c[rows:] - c[: n - rows + 1]) / rows
            return m

        cols.append(mean_of(int(short)))
        if "long" in feats_set:
            cols.append(mean_of(int(long)))
        if "slope" in feats_set:
            sl = np.full((n, p), np.nan)
            sl[int(slope) - 1 :] = sliding_window_view(z, int(slope), axis=0) @ slope_weights(
                int(slope)
            )
            cols.append(sl)
    cols.append(np.log(energy + ROUGHNESS_EPS))
    out = np.stack(cols, axis=-1).reshape(n, -1)
    out[: window - 1] = np.nan
    return out, window


def score_series11(
    s: LabelledSeries, cal: int, setting: tuple[Any, ...], relation: str = "mahalanobis"
) -> Scored9:
    """One series scored by a round-11 feature setting (as `AnomalyDetector` with generic-v4:
    combine max, roughness weight 1); ``relation``: the relation part's kind (round 12)."""
    lag = int(setting[-1])
    center, scale = input_scaling(s.values[:cal])
    z = (s.values - center) / scale
    feats, window = v4_features(z, setting)
    fpp = feats.shape[1] // z.shape[1]
    levels = fpp - 1
    fc = feats[window - 1 : cal]
    drift = fc[lag:] - fc[:-lag] if lag else None
    fcenter, fscale, flat_seen = feature_stats(
        fc, drift, fpp, quantised(s.values[:cal]), levels=levels
    )
    dev = deviations(feats[cal:], fcenter, fscale, flat_seen, fpp)
    cdev = deviations(fc, fcenter, fscale, flat_seen, fpp)
    first = feats[:, 0::fpp]  # the relation part: on each point's first feature
    if relation == "residual":
        res = fit_residuals(first[window - 1 : cal], lag)
        rv = res.scores(first[cal:]) if res else np.zeros(len(z) - cal)
        rmax = res.max_value if res else 1.0
    else:
        rel = fit_relation(first[window - 1 : cal], lag)
        rv, _share = rel.scores(first[cal:])
        rmax = rel.max_value
    return Scored9(
        level=dev[..., :levels].max(axis=(-1, -2)),
        rough=dev[..., levels:].max(axis=(-2, -1)),
        cal_level=float(cdev[..., :levels].max()),
        cal_rough=float(cdev[..., levels:].max()),
        relation=rv / max(rmax, 1e-6),
        truth=s.truth[cal:],
    )


@dataclass(frozen=True)
class FeatureRound:
    """A round that searches feature settings (rounds 11 and 12): its grid (feature keys
    first), how a setting scores a series, which settings may be chosen, and a reference."""

    number: int
    grid: dict[str, list[Any]]
    feature_keys: list[str]
    settings: list[tuple[Any, ...]]
    score: Any  # (series, calibration rows, setting) -> Scored9
    reference: tuple[Any, ...]
    may_choose: Any  # setting -> bool
    model: str  # what the choice on all 16 files would ship as

    def decisions(self) -> list[tuple[Any, ...]]:
        return list(
            itertools.product(*(self.grid[k] for k in list(self.grid)[len(self.feature_keys) :]))
        )


def decisions11() -> list[tuple[Any, ...]]:
    return ROUND11.decisions()


def _dec11(d: tuple[Any, ...], hold: int | None = None, clear: int | None = None) -> Decision9:
    cf, rf, thr, h, c = d
    return (
        1.0,
        float(cf),
        float(rf),
        float(thr),
        int(h if hold is None else hold),
        int(c if clear is None else clear),
    )


def behaving_in(rnd: FeatureRound) -> dict[tuple[Any, ...], bool]:
    """Per combination of a round: do the existing tests' scenarios behave as asserted?"""
    scen = _scenarios()
    ok: dict[tuple[Any, ...], bool] = {}
    for setting in rnd.settings:
        scored = [rnd.score(s, cal, setting) for s, cal, *_rest in scen]
        for d in rnd.decisions():
            good = True
            for sc, (_s, _cal, h, c, check) in zip(scored, scen, strict=True):
                good = good and bool(check(decide9(sc, _dec11(d, h, c))))
            ok[(*setting, *d)] = good
    return ok


def behaving11() -> dict[tuple[Any, ...], bool]:
    """Per round-11 combination: do the existing tests' scenarios behave as asserted?"""
    return behaving_in(ROUND11)


def held_out_violations(t: Tally) -> int:
    """The five valve1 targets on pooled held-out figures (round 11's default rule)."""
    return sum(
        [
            t.detected_share < LIMITS["detected"],
            not t.median_delay_s <= 30.0,
            t.false_per_hour > LIMITS["false_per_hour"],
            t.far > LIMITS["far"],
            t.f1 < 0.81,
        ]
    )


def main11(args: argparse.Namespace) -> int:
    return run_feature_round(args, ROUND11)


def main12(args: argparse.Namespace) -> int:
    return run_feature_round(args, ROUND12)


def run_feature_round(args: argparse.Namespace, rnd: FeatureRound) -> int:  # noqa: PLR0915
    """Rounds 11 and 12: score, choose by the rule, print held-out and in-sample figures."""
    t0 = time.perf_counter()
    valve = valve_series(args.valve_dir)
    chunks, long_cal = anomaly_free_series(args.anomaly_free)
    ok = behaving_in(rnd)
    print(f"{sum(ok.values())} of {len(ok)} combinations keep the existing tests' behaviour")
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    results: dict[tuple[Any, ...], tuple[list[Tally], Tally, Tally]] = {}
    for setting in rnd.settings:
        sv = [rnd.score(s, 400, setting) for s in valve]
        sg = [rnd.score(s, 400, setting) for s in chunks]
        sl = rnd.score(long_cal, 7200, setting)
        for d in rnd.decisions():
            combo = (*setting, *d)
            if combo != rnd.reference and (not ok[combo] or not rnd.may_choose(setting)):
                continue
            dec = _dec11(d)
            files = [Counts.of(decide9(s, dec), s.truth).tally for s in sv]
            g400 = merge([Counts.of(decide9(s, dec), s.truth).tally for s in sg])
            g2h = Counts.of(decide9(sl, dec), sl.truth).tally
            results[combo] = (files, g400, g2h)
    print(f"{len(results)} candidates scored in {time.perf_counter() - t0:.0f} s", flush=True)

    def violations11(combo: tuple[Any, ...], groups: list[list[int]]) -> int:
        files, g400, g2h = results[combo]
        extra = g400.false_per_hour > LIMITS["false_per_hour"]
        return group_violations(files, groups, g400, g2h) + extra

    def rank(combo: tuple[Any, ...], groups: list[list[int]]) -> tuple[float, ...]:
        files, _g400, _g2h = results[combo]
        v = merge([files[i] for g in groups for i in g])
        *_rest, thr, hold, clear = combo
        return (
            -violations11(combo, groups),
            v.f1,
            -v.median_delay_s,
            float(thr),
            float(hold),
            float(clear),
        )

    def figures(t: Tally, g400: Tally, g2h: Tally) -> str:
        return (
            f"{t.row_line()}; {t.event_line()}; gate 400 rows FAR {g400.far:.1%} "
            f"({g400.false_events} events, {g400.false_per_hour:.2f}/h), 2 h FAR {g2h.far:.1%}"
        )

    n = len(rnd.feature_keys)
    candidates = [c for c in results if ok[c] and rnd.may_choose(c[:n])]
    held: list[Tally] = []
    for group in GROUPS:
        train = [g for g in GROUPS if g != group]
        best = max(candidates, key=lambda c: rank(c, train))
        files, g400, g2h = results[best]
        out = merge([files[i] for i in group])
        held.append(out)
        where = merge([files[i] for g in train for i in g])
        print(
            f"held out files {group[0]}-{group[-1]}: chosen on the others: "
            f"{describe_in(rnd.grid, best)}"
        )
        print(
            f"  where chosen ({violations11(best, train)} violations): {figures(where, g400, g2h)}"
        )
        print(f"  held out:     {out.row_line()}; {out.event_line()}", flush=True)
    pooled = merge(held)
    hv = held_out_violations(pooled)
    print(
        f"leave-files-out, 4 held-out groups pooled: {pooled.row_line()}; "
        f"{pooled.event_line()} ({hv} of 5 targets violated; generic-v3: 4, F1 0.579)"
    )
    best = max(candidates, key=lambda c: rank(c, GROUPS))
    for label, combo in (
        (f"round {rnd.number}'s choice on all 16 files ({rnd.model})", best),
        ("reference: generic-v3's numbers in this harness", rnd.reference),
    ):
        files, g400, g2h = results[combo]
        print(f"{label}: {describe_in(rnd.grid, combo)}")
        print(
            f"  in-sample ({violations11(combo, GROUPS)} violations): "
            f"{figures(merge(files), g400, g2h)}"
        )
        for g in GROUPS:
            t = merge([files[i] for i in g])
            print(f"    files {g[0]}-{g[-1]}: {t.row_line()}; {t.event_line()}")
    _files, g400, g2h = results[best]
    gates = g400.far <= LIMITS["gate_far"] and g2h.fp == 0
    better = hv < 4 or (hv == 4 and pooled.f1 > V3_HELD_OUT["f1"])
    print(
        f"default: {rnd.model if better and gates else 'generic-v3'} "
        f"(held out better than generic-v3: {better}; anomaly-free gates kept: {gates})"
    )
    print("runners-up on all files:")
    for c in sorted(candidates, key=lambda c: rank(c, GROUPS), reverse=True)[1:6]:
        files, g400, g2h = results[c]
        print(
            f"  {describe_in(rnd.grid, c)} ({violations11(c, GROUPS)} violations): "
            f"{figures(merge(files), g400, g2h)}"
        )
    return 0


ROUND11 = FeatureRound(
    number=11,
    grid=GRID11,
    feature_keys=FEATURE_KEYS11,
    settings=feature_settings11(),
    score=score_series11,
    reference=V3_REFERENCE,
    may_choose=lambda setting: setting[0] != "v3",
    model="generic-v4",
)

GRID12: dict[str, list[Any]] = {
    "level": ["median5", "mean10"],
    "relation": ["mahalanobis", "residual"],
    "drift_lag": [60, 180],
    "calibration_factor": [0.0, 2.0],
    "relation_factor": [0.0, 2.0, 4.0, 8.0, 16.0, 64.0],
    "threshold": [8.0, 12.0, 16.0, 24.0, 32.0, 48.0],
    "hold": [1, 3, 5, 10],
    "clear": [10, 30, 60],
}
LEVEL12 = {"median5": ("v3", 5, 30, 10), "mean10": ("short", 10, 30, 10)}  # round 11's terms


def score_series12(s: LabelledSeries, cal: int, setting: tuple[Any, ...]) -> Scored9:
    """One series scored by a round-12 setting (level, relation kind, drift lag)."""
    level, relation, lag = setting
    return score_series11(s, cal, (*LEVEL12[level], lag), relation)


ROUND12 = FeatureRound(
    number=12,
    grid=GRID12,
    feature_keys=["level", "relation", "drift_lag"],
    settings=list(itertools.product(GRID12["level"], GRID12["relation"], GRID12["drift_lag"])),
    score=score_series12,
    reference=("median5", "mahalanobis", 180, 2.0, 16.0, 24.0, 5, 30),
    may_choose=lambda setting: True,
    model="generic-v5",
)


def main8(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    valve = valve_series(args.valve_dir)
    chunks, long_cal = anomaly_free_series(args.anomaly_free)
    keys = list(GRID)
    # per combination: per-file Tally (valve1), and the two gate Tallies
    results: dict[tuple[Any, ...], tuple[list[Tally], Tally, Tally]] = {}
    for lr, lag, how in itertools.product(GRID["level_rows"], GRID["drift_lag"], GRID["combine"]):
        sv = [score_series(s, 400, int(lr), int(lag), str(how)) for s in valve]
        sg = [score_series(s, 400, int(lr), int(lag), str(how)) for s in chunks]
        sl = score_series(long_cal, 7200, int(lr), int(lag), str(how))
        for rf, thr, hold, clear in itertools.product(
            GRID["relation_factor"], GRID["threshold"], GRID["hold"], GRID["clear"]
        ):
            dec = (float(thr), float(rf), int(hold), int(clear))
            files = [Counts.of(decide(s, *dec), s.truth).tally for s in sv]
            g400 = merge([Counts.of(decide(s, *dec), s.truth).tally for s in sg])
            g2h = Counts.of(decide(sl, *dec), sl.truth).tally
            results[(lr, lag, how, rf, thr, hold, clear)] = (files, g400, g2h)
    print(f"{len(results)} combinations scored in {time.perf_counter() - t0:.0f} s", flush=True)
    ok = behaving()
    results = {c: r for c, r in results.items() if ok[c]}
    print(f"{len(results)} candidates keep the existing tests' behaviour")

    def rank(combo: tuple[Any, ...], idx: list[int]) -> tuple[float, ...]:
        files, g400, g2h = results[combo]
        v = merge([files[i] for i in idx])
        _lr, _lag, _how, _rf, thr, hold, clear = combo
        return (
            -violations(v, g400, g2h),
            v.f1,
            -v.median_delay_s,
            float(thr),
            float(hold),
            float(clear),
        )

    def describe(combo: tuple[Any, ...]) -> str:
        parts = []
        for k, v in zip(keys, combo, strict=True):
            rng = GRID[k]
            edge = " (EDGE)" if rng.index(v) in (0, len(rng) - 1) and len(rng) > 2 else ""
            parts.append(f"{k}={v}{edge}")
        return ", ".join(parts)

    def figures(t: Tally, g400: Tally, g2h: Tally) -> str:
        return (
            f"{t.row_line()}; {t.event_line()}; gate 400 rows FAR {g400.far:.1%} "
            f"({g400.false_events} events), 2 h FAR {g2h.far:.1%}"
        )

    held: list[Tally] = []
    every = list(range(len(valve)))
    for group in GROUPS:
        train = [i for i in every if i not in group]
        best = max(results, key=lambda c: rank(c, train))
        files, g400, g2h = results[best]
        out = merge([files[i] for i in group])
        held.append(out)
        print(f"held out files {group[0]}-{group[-1]}: chosen on the others: {describe(best)}")
        print(f"  where chosen: {figures(merge([files[i] for i in train]), g400, g2h)}")
        print(f"  held out:     {out.row_line()}; {out.event_line()}", flush=True)
    pooled = merge(held)
    print(f"leave-files-out, 4 held-out groups pooled: {pooled.row_line()}; {pooled.event_line()}")
    best = max(results, key=lambda c: rank(c, every))
    files, g400, g2h = results[best]
    print(f"chosen on all 16 files (the shipped defaults): {describe(best)}")
    print(f"  in-sample: {figures(merge(files), g400, g2h)}")
    print("runners-up on all files:")
    for c in sorted(results, key=lambda c: rank(c, every), reverse=True)[1:6]:
        files, g400, g2h = results[c]
        print(f"  {describe(c)}: {figures(merge(files), g400, g2h)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
