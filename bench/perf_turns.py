"""Where the event loop's CPU goes, callback by callback: `python bench/perf_turns.py
--points 200 --code HEAD`.

Starts the site, broker and daemon of bench/perf_gateway.py with bench/turns_probe on the
daemon's PYTHONPATH: its sitecustomize times every callback of the event loop (thread CPU,
ns), each task step by the coroutine it resumes, each turn of the loop and its `select`.
Prints, per callback, CPU a second, calls a second and CPU a call, over the daemon's whole
life (start-up included: the long, rare entries at the top of the list). The probe costs
about 1 us a callback; compare runs of one machine moment, and counts more than times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import perf_site
from perf_gateway import start_measured_daemon, wait_for
from perf_site import layout, use_code

PROBE = Path(__file__).resolve().parent / "turns_probe"


def one_run(n: int, seconds: float, out: Path) -> dict[str, list[int]]:
    path = perf_site.ENV.get("PYTHONPATH")
    perf_site.ENV["PYTHONPATH"] = str(PROBE) + (f":{path}" if path else "")
    perf_site.ENV["WP_TURNS_OUT"] = str(out)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="wp-turns-") as tmp,
            contextlib.ExitStack() as exits,
        ):
            _daemon, _proxy, counter = start_measured_daemon(
                Path(tmp), layout(n), exits, "bench-turns"
            )
            wait_for(lambda: counter.watchpost.first_at, 60, "the first telemetry message")
            time.sleep(seconds)
    finally:
        perf_site.ENV.pop("WP_TURNS_OUT", None)
        if path is None:
            perf_site.ENV.pop("PYTHONPATH", None)
        else:
            perf_site.ENV["PYTHONPATH"] = path
    for written in out.parent.glob(out.name + ".*"):  # the daemon's, not the simulator's
        stats: dict[str, list[int]] = json.loads(written.read_text())
        written.unlink()
        if any(key.startswith("task:BusScheduler") for key in stats):
            return stats
    raise RuntimeError("the daemon wrote no figures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=40.0, help="after the first telemetry")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--code", default="HEAD", help="revision measured, or 'worktree'")
    args = parser.parse_args()
    commit = use_code(args.code)
    with tempfile.TemporaryDirectory(prefix="wp-turns-out-") as tmp:
        stats = one_run(args.points, args.seconds, Path(tmp) / "turns")
    seconds = stats.pop("=seconds")[1] / 1e9
    print(f"code {commit[:9]} {args.points} pts, {seconds:.0f} s of the daemon's life")
    rows = sorted(stats.items(), key=lambda item: -item[1][1])[: args.top]
    for key, (calls, ns) in rows:
        per_s, rate, each = ns / 1e6 / seconds, calls / seconds, ns / max(calls, 1) / 1e3
        print(f"{per_s:8.3f} ms/s {rate:8.2f} /s {each:9.1f} us  {key}")


if __name__ == "__main__":
    main()
