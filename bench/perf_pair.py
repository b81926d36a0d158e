"""Two revisions of the daemon side by side on one site: `python bench/perf_pair.py
--before REV --after REV --points 200`.

On a shared machine the CPU of one process moves by 2 to 5 times between runs of the same
code (other tenants' work, caches): runs of one revision after the other compare the
machine's moments more than the code. Here both daemons run at once, each polling the same
simulated site through its own counting proxy and publishing to the same broker (as
gateways ``gw-before`` and ``gw-after``), and each one's CPU is read over the same window
(``/proc/PID/task/*/schedstat``, nanoseconds), so that what disturbs one disturbs the
other. Which one starts first alternates between runs. Prints, per run and as medians, the
CPU of each per 1,000 point-reads a second (% of one core) and after / before.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from perf_gateway import ANOMALY_POINTS, CALIBRATION_S, wait_for
from perf_site import (
    ENV,
    PYTHON,
    Broker,
    BrokerCounter,
    CountingProxy,
    Simulator,
    gateway_toml,
    layout,
    median,
    point_reads,
    stop,
    thread_cpu_seconds,
    use_code,
)


def daemon(folder: Path, text: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    folder.mkdir()
    (folder / "gateway.toml").write_text(text)
    with (folder / "gateway.log").open("ab") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "watchpost", "run", "--config", "gateway.toml"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def one_run(
    n: int, envs: dict[str, dict[str, str]], order: list[str], warmup: float, window: float
) -> dict[str, float]:
    """% of one core per 1,000 point-reads a second, per side, over one shared window."""
    devices = layout(n)
    with tempfile.TemporaryDirectory(prefix="wp-pair-") as tmp, contextlib.ExitStack() as exits:
        folder = Path(tmp)
        broker = Broker(folder)
        broker.start()
        exits.callback(broker.stop)
        site = Simulator(folder, devices)
        exits.callback(site.close)
        counter = BrokerCounter(broker.port, "bench-pair")
        exits.callback(counter.close)
        proxies, processes = {}, {}
        for side in order:
            proxy = proxies[side] = CountingProxy(site.ports)
            exits.callback(proxy.close)
            text = gateway_toml(
                devices,
                proxy.ports,
                broker.port,
                anomaly_points=ANOMALY_POINTS,
                calibration_s=CALIBRATION_S,
            ).replace('id = "gw"', f'id = "gw-{side}"', 1)
            processes[side] = daemon(folder / side, text, envs[side])
            exits.callback(stop, processes[side])
        wait_for(lambda: counter.watchpost.first_at, 60, "the first telemetry message")
        time.sleep(warmup)
        for side, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError((folder / side / "gateway.log").read_text()[-3000:])
        cpu0 = {side: thread_cpu_seconds(p.pid) for side, p in processes.items()}
        t0 = time.time()
        time.sleep(window)
        t1 = time.time()
        cpu1 = {side: thread_cpu_seconds(p.pid) for side, p in processes.items()}
        out = {}
        for side in order:
            reads = point_reads(proxies[side].between(t0, t1), devices) / (t1 - t0)
            out[side] = (cpu1[side] - cpu0[side]) / (t1 - t0) * 100 / (reads / 1000)
        return out


def code_env(revision: str) -> tuple[str, dict[str, str]]:
    commit = use_code(revision)
    return commit, dict(ENV)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="revision measured as before")
    parser.add_argument("--after", default="HEAD", help="revision measured as after")
    parser.add_argument("--points", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    commits, envs = {}, {}
    for side, revision in (("before", args.before), ("after", args.after)):
        commits[side], envs[side] = code_env(revision)
    ENV.clear()
    ENV.update(envs["before"])  # the simulator's code
    print(f"before {commits['before'][:9]}, after {commits['after'][:9]}")
    for n in args.points:
        # at 1,000 points the shipped model calibrates for 95 s: measure it scoring
        warmup = args.warmup if n < 1000 else max(args.warmup, CALIBRATION_S + 10)
        runs = []
        for i in range(args.runs):
            order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
            load = os.getloadavg()[0]
            run = one_run(n, envs, order, warmup, args.window)
            runs.append(run)
            print(
                f"  {n} pts run {i + 1} (load {load:.1f}): before {run['before']:.2f}, "
                f"after {run['after']:.2f}, after/before {run['after'] / run['before']:.2f}",
                flush=True,
            )
        before = median([r["before"] for r in runs])
        after = median([r["after"] for r in runs])
        ratio = median([r["after"] / r["before"] for r in runs])
        print(
            f"{n} pts: % of one core per 1,000 points/s: before {before:.2f}, after {after:.2f};"
            f" after/before, median of runs {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
