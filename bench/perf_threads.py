"""Where the daemon's CPU goes, by thread: `python bench/perf_threads.py --points 200`.

Starts the same site, broker and daemon as bench/perf_gateway.py and, over a window, reads
each thread's CPU (``/proc/PID/task/TID/schedstat``, nanoseconds, not 10 ms ticks) and its
wake-ups (voluntary context switches), per second. A tool for finding fixed costs (timers,
hand-offs between threads); the figures of the table come from bench/run.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from perf_gateway import start_measured_daemon, wait_for
from perf_site import layout, median, point_reads, use_code


def threads(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread (name:tid): (CPU ns, voluntary context switches)."""
    out: dict[str, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
            switches = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches = int(line.split()[1])
            out[f"{name}:{task.name}"] = (ns, switches)
    return out


def one_run(n: int, warmup: float, window: float) -> dict[str, Any]:
    devices = layout(n)
    with tempfile.TemporaryDirectory(prefix="wp-threads-") as tmp, contextlib.ExitStack() as exits:
        daemon, proxy, counter = start_measured_daemon(Path(tmp), devices, exits, "bench-threads")
        wait_for(lambda: counter.watchpost.first_at, 60, "the first telemetry message")
        time.sleep(warmup)
        before, t0 = threads(daemon.pid), time.time()
        time.sleep(window)
        after, t1 = threads(daemon.pid), time.time()
        reads = point_reads(proxy.between(t0, t1), devices)
        pid = daemon.pid
    seconds = t1 - t0
    per: dict[str, dict[str, float]] = {}
    for key, (ns, sw) in after.items():
        ns0, sw0 = before.get(key, (0, 0))
        name = "main" if key.split(":")[1] == str(pid) else f"thread:{key.split(':')[1]}"
        slot = per.setdefault(name, {"cpu_ms_per_s": 0.0, "wakeups_per_s": 0.0})
        slot["cpu_ms_per_s"] += (ns - ns0) / 1e6 / seconds
        slot["wakeups_per_s"] += (sw - sw0) / seconds
    total = sum(v["cpu_ms_per_s"] for v in per.values())
    return {
        "points": n,
        "total_cpu_ms_per_s": total,
        "core_pct_per_1000_points_1hz": total / 10 / (n / 1000),
        "reads_per_s": reads / seconds,
        "threads": per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--code", default="HEAD", help="revision measured, or 'worktree'")
    parser.add_argument("--json", action="store_true", help="print every run's figures")
    args = parser.parse_args()
    commit = use_code(args.code)
    runs = [one_run(args.points, args.warmup, args.window) for _ in range(args.runs)]
    if args.json:
        print(json.dumps({"code": commit, "runs": runs}, indent=1))
    for r in runs:
        parts = [
            f"{name.split(':')[0]} {t['cpu_ms_per_s']:.2f} ms/{t['wakeups_per_s']:.1f} w"
            for name, t in sorted(r["threads"].items(), key=lambda kv: -kv[1]["cpu_ms_per_s"])
        ]
        print(f"  run: {r['total_cpu_ms_per_s']:.2f} ms/s; " + ", ".join(parts))
    print(
        f"code {commit[:9]} {args.points} pts: CPU ms/s "
        f"{median([r['total_cpu_ms_per_s'] for r in runs]):.2f}, % per 1,000 points/s "
        f"{median([r['core_pct_per_1000_points_1hz'] for r in runs]):.2f}"
    )


if __name__ == "__main__":
    main()
