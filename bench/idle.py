"""What the daemon costs doing nothing: `watchpost run` with no buses, connected to Mosquitto.

The fixed part of the CPU figures of bench/run.py: timers, the clock probe, the health loop,
the store writer and the uplink's network thread, with no point to poll. Prints the CPU share
of one core over ``--seconds`` (after ``--settle``), median of ``--runs``, from the threads'
schedstat (nanoseconds): 10 ms ticks are too coarse for the 0.1 to 0.3 % an idle daemon uses.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from perf_site import ENV, PYTHON, Broker, median, stop, thread_cpu_seconds, use_code


def idle_pct(settle: float, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="wp-idle-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder)
        broker.start()
        config = folder / "gateway.toml"
        config.write_text(
            f'[gateway]\nsite = "s"\nid = "g"\n'
            f'[uplink]\nbroker = "mqtt://127.0.0.1:{broker.port}"\n'
            f'[store]\npath = "{folder}/buffer.db"\n'
            f'[control]\nsocket = "{folder}/control.sock"\n'
        )
        config.chmod(0o640)
        daemon = subprocess.Popen(
            [PYTHON, "-m", "watchpost", "run", "--config", str(config)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
        try:
            time.sleep(settle)
            cpu0, t0 = thread_cpu_seconds(daemon.pid), time.time()
            time.sleep(seconds)
            cpu1, t1 = thread_cpu_seconds(daemon.pid), time.time()
        finally:
            stop(daemon)
            broker.stop()
    return 100 * (cpu1 - cpu0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--code", default="HEAD", help="revision measured, or 'worktree'")
    args = parser.parse_args()
    commit = use_code(args.code)
    runs = [idle_pct(args.settle, args.seconds) for _ in range(args.runs)]
    print(
        f"code {commit}: idle daemon {median(runs):.3f} % of one core "
        f"({10 * median(runs):.2f} ms of CPU a second; runs {[round(r, 3) for r in runs]})"
    )


if __name__ == "__main__":
    main()
