"""The anomaly runner's numpy without the subpackages it never uses (``watchpost.numpy_lean``):
the daemon's path leaves ``numpy.random``, ``polynomial``, ``fft`` and ``ctypeslib`` unloaded,
a model calibrates and scores exactly as with numpy whole, and code that does use one of them
still gets the real package.

Each case runs in a fresh interpreter: this test process has numpy loaded whole already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

# The daemon's way in (``open_anomaly``), then one detector fed 260 rows of four points: a
# calibration, then scoring, with a step on one point that raises an event.
SCORING = """
import json, math, sys
{before}
from pathlib import Path
from watchpost.anomaly_part import NoModels, open_anomaly
from watchpost.config.anomaly import AnomalyConfig

config = AnomalyConfig.model_validate(
    {{"models": [{{"name": "m", "points": ["a", "b", "c", "d"], "calibration_s": 150,
                 "drift_lag_s": 50}}]}}
)
part = open_anomaly(config, state_dir=None, emit=print)
assert not isinstance(part, NoModels)
from watchpost.anomaly import open_detector

detector = open_detector(config.models[0], None)
verdicts = []
for t in range(260):
    row = [math.sin(t / 7), math.cos(t / 11) * 2, 5 + (t % 3) * 0.1, 1 + math.sin(t / 3)]
    if t >= 230:
        row[2] += 40.0
    verdict = detector.push_row(1_000_000 + t * 1000, row)
    if verdict is not None:
        verdicts.append([verdict.score, verdict.threshold, verdict.anomaly, verdict.event])
cal = detector.calibration.to_json()
cal.pop("created_ms")
from watchpost import numpy_lean
loaded = sorted(m for m in numpy_lean.UNUSED if m in sys.modules
                and m not in numpy_lean.deferred())
print(json.dumps({{"calibration": cal, "verdicts": verdicts, "loaded": loaded,
                  "deferred": numpy_lean.deferred()}}, default=str), file=sys.stderr)
"""


def last_json(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; the JSON of the last line it wrote to stderr."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_the_runner_scores_as_with_numpy_whole_without_loading_the_unused_subpackages() -> None:
    lean = last_json(SCORING.format(before=""))
    whole = last_json(SCORING.format(before="import numpy"))  # loaded first: nothing deferred
    assert lean["loaded"] == []
    assert lean["deferred"] == ["numpy.random", "numpy.polynomial", "numpy.fft", "numpy.ctypeslib"]
    assert whole["deferred"] == []
    assert len(whole["loaded"]) == 4
    assert len(lean["verdicts"]) > 50  # scored after the calibration
    assert any(v[3] is not None for v in lean["verdicts"]), lean["verdicts"][-5:]  # the step
    assert lean["verdicts"] == whole["verdicts"]
    assert lean["calibration"] == whole["calibration"]


USES = """
import json, sys
{before}
import numpy
{check}
drawn = numpy.random.default_rng(7).integers(0, 1000, 3).tolist()
from numpy.polynomial import polynomial
roots = sorted(float(r) for r in polynomial.polyroots([-2.0, 0.0, 1.0]))
import numpy.fft._pocketfft
spectrum = float(numpy.fft.rfft([1.0, 0.0, 1.0, 0.0])[0].real)
from watchpost import numpy_lean
print(json.dumps([drawn, roots, spectrum, numpy_lean.deferred(),
                  numpy.random is sys.modules["numpy.random"]]), file=sys.stderr)
"""


def test_a_deferred_subpackage_loads_at_its_first_use() -> None:
    deferring = "from watchpost import numpy_lean\nassert numpy_lean.defer_unused()"
    unloaded = 'assert "numpy.random.mtrand" not in sys.modules'
    lean = last_json(USES.format(before=deferring, check=unloaded))
    whole = last_json(USES.format(before="", check=""))
    assert lean[:3] == whole[:3]
    assert lean[1] == pytest.approx([-(2**0.5), 2**0.5])
    assert lean[2] == 2.0
    assert lean[3] == ["numpy.ctypeslib"]  # the one this code did not use
    assert lean[4] is True  # numpy's attribute is the real package now
