"""Where the daemon's CPU goes: `python bench/perf_profile.py --points 5000 --seconds 30`.

Starts the same site, broker and daemon as bench/perf_gateway.py, samples the daemon with
py-spy (all threads, idle frames left out) and prints the functions with the most samples,
inclusive and self, plus the collapsed stacks file for a flame graph. py-spy is a tool of the
bench, not of the gateway: `pip install py-spy` into the environment that runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from perf_gateway import start_measured_daemon, wait_for
from perf_site import layout


def top(collapsed: Path, count: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(inclusive, self) sample counts per function from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return inclusive.most_common(count), own.most_common(count), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--out", type=Path, default=Path("profile.txt"))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    devices = layout(args.points)
    with tempfile.TemporaryDirectory(prefix="wp-profile-") as tmp, contextlib.ExitStack() as exits:
        daemon, _proxy, counter = start_measured_daemon(Path(tmp), devices, exits, "bench-profile")
        wait_for(lambda: counter.watchpost.first_at, 60, "the first telemetry message")
        time.sleep(args.warmup)
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(daemon.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(args.out),
                "--threads",
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
            timeout=args.seconds + 60,
        )
    inclusive, own, total = top(args.out, args.top)
    print(f"{total} samples of busy threads; collapsed stacks in {args.out}\n")
    print("inclusive:")
    for frame, n in inclusive:
        print(f"{100 * n / total:6.1f} %  {frame}")
    print("\nself:")
    for frame, n in own:
        print(f"{100 * n / total:6.1f} %  {frame}")


if __name__ == "__main__":
    main()
