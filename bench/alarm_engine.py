"""CPU cost of AlarmEngine.evaluate per sample: the poll path's share of the alarm engine.

N points, each with the rules of a coal-face methane sensor (high alarm, high critical,
comm_loss, invalid) plus, with --full, rate_of_rise and stuck; batches of 100 samples as a
device poll hands them over, values wandering around the thresholds so that alarms do raise
and clear. Prints microseconds per sample and samples per second on one core.

    python bench/alarm_engine.py --points 5000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from pydantic import TypeAdapter

from watchpost.alarms import AlarmEngine
from watchpost.config.alarms import AlarmRule, load_rule_set
from watchpost.samples import Quality, Sample

EXTRA = [
    {"kind": "rate_of_rise", "rate": 0.5, "window": 60},
    {"kind": "stuck", "duration": 3600, "tolerance": 0.001},
]


def run(points: int, seconds: int, full: bool) -> dict[str, Any]:
    rules = list(load_rule_set("ch4_coal_face").alarms)
    if full:
        rules += TypeAdapter(list[AlarmRule]).validate_python(EXTRA)
    names = [f"ch4_{i:05d}" for i in range(points)]
    now = [1_700_000_000_000]
    engine = AlarmEngine(dict.fromkeys(names, rules), lambda: now[0])
    rng = random.Random(7)
    level = [rng.uniform(0.2, 1.8) for _ in names]
    # every sample of the run made up front, so that only evaluate is timed
    batches: list[list[Sample]] = []
    for second in range(seconds):
        ts = now[0] + second * 1000
        for start in range(0, points, 100):
            batch = []
            for i in range(start, min(start + 100, points)):
                level[i] = min(3.0, max(0.0, level[i] + rng.gauss(0, 0.05)))
                roll = rng.random()
                if roll < 0.001:
                    batch.append(Sample(names[i], ts, None, Quality.COMM))
                elif roll < 0.002:
                    batch.append(Sample(names[i], ts, None, Quality.BAD))
                else:
                    batch.append(Sample(names[i], ts, round(level[i], 2), Quality.GOOD))
            batches.append(batch)
    events = 0
    started = time.perf_counter()
    for batch in batches:
        now[0] = batch[0].ts
        events += len(engine.evaluate(batch))
    elapsed = time.perf_counter() - started
    samples = points * seconds
    return {
        "points": points,
        "rules_per_point": len(rules),
        "samples": samples,
        "events": events,
        "us_per_sample": round(elapsed / samples * 1e6, 3),
        "samples_per_s": round(samples / elapsed),
        "core_pct_at_1hz": round(100 * elapsed / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=60, help="simulated seconds at 1 Hz")
    args = parser.parse_args()
    for full in (False, True):
        print(json.dumps(run(args.points, args.seconds, full)))


if __name__ == "__main__":
    main()
