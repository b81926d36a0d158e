"""Polling cost, memory, requests per cycle and start-up of `watchpost run` as a real process.

One run: Mosquitto, the simulated site of N points (bench/perf_site.py), a counting proxy in
front of its endpoints and the daemon with alarms, store, uplink and the shipped anomaly model
(over a few points) all running. After start-up and a warm-up, CPU (utime + stime from
/proc/PID/stat) and the point-reads the proxy saw are taken over a measured window; RSS at
its end. `python bench/perf_gateway.py --points 1000 --runs 1` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from perf_site import (
    Broker,
    BrokerCounter,
    CountingProxy,
    Simulator,
    gateway_toml,
    layout,
    median,
    minimum_requests,
    point_reads,
    rss_mb,
    stop,
    watchpost_run,
)
from perf_site import cpu_seconds as cpu

ANOMALY_POINTS = 8  # the shipped generic model over the first points of the first device
CALIBRATION_S = 125.0  # the fewest rows the default model (generic-v6) accepts is 120


def wait_for(check: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def start_measured_daemon(
    folder: Path, devices: list[Any], exits: contextlib.ExitStack, counter_id: str
) -> tuple[Any, CountingProxy, BrokerCounter]:
    """Broker, simulated site, counting proxy, broker-side counter and `watchpost run`, each
    stopped by ``exits``; returns the daemon's process, the proxy and the counter."""
    broker = Broker(folder)
    broker.start()
    exits.callback(broker.stop)
    site = Simulator(folder, devices)
    exits.callback(site.close)
    proxy = CountingProxy(site.ports)
    exits.callback(proxy.close)
    counter = BrokerCounter(broker.port, counter_id)
    exits.callback(counter.close)
    config = folder / "gateway.toml"
    config.write_text(
        gateway_toml(
            devices,
            proxy.ports,
            broker.port,
            anomaly_points=ANOMALY_POINTS,
            calibration_s=CALIBRATION_S,
        )
    )
    daemon = watchpost_run(folder, config)
    exits.callback(stop, daemon)
    return daemon, proxy, counter


def gateway_run(n: int, *, warmup: float, window: float, folder: Path) -> dict[str, float]:
    """One measured run of the daemon polling ``n`` points at 1 Hz; see the module docstring."""
    devices = layout(n)
    with contextlib.ExitStack() as exits:
        started = time.time()
        daemon, proxy, counter = start_measured_daemon(folder, devices, exits, "bench-counter")
        first = wait_for(lambda: counter.watchpost.first_at, 60, "the first telemetry message")
        time.sleep(warmup)
        if daemon.poll() is not None:
            raise RuntimeError((folder / "gateway.log").read_text()[-3000:])
        cpu0, t0 = cpu(daemon.pid), time.time()
        time.sleep(window)
        cpu1, t1 = cpu(daemon.pid), time.time()
        rss = rss_mb(daemon.pid)
        requests = proxy.between(t0, t1)
        reads = point_reads(requests, devices)
        time.sleep(3)  # what was polled in the window reaches the broker
        arrivals = counter.snapshot("watchpost")
        delivered = arrivals.distinct_between(int(t0 * 1000), int(t1 * 1000))
        latencies = sorted(
            arrived - ts / 1000
            for (_p, ts), arrived in arrivals.seen.items()
            if t0 <= ts / 1000 < t1
        )
    used = cpu1 - cpu0
    cycles = reads / n
    return {
        "points": n,
        "window_s": t1 - t0,
        "cpu_s": used,
        "point_reads": reads,
        "cpu_s_per_1000_reads": used / (reads / 1000),
        "core_pct_per_1000_points_1hz": 100 * used / (t1 - t0) / (n / 1000),
        "rss_mb": rss,
        "requests_per_cycle": len(requests) / cycles,
        "minimum_requests": minimum_requests(devices),
        "delivered_fraction": delivered / reads,
        "poll_to_broker_s": latencies[len(latencies) // 2] if latencies else float("nan"),
        "startup_s": first - started,
    }


def gateway_figures(
    n: int, runs: int, warmup: float, window: float, keep: Path | None = None
) -> dict[str, Any]:
    """Median of ``runs`` runs at ``n`` points, with every run's figures."""
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix=f"wp-bench-{n}-") as tmp:
            folder = keep / f"{n}-{i}" if keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            results.append(gateway_run(n, warmup=warmup, window=window, folder=folder))
    keys = [k for k in results[0] if k != "points"]
    return {"points": n, "runs": results, **{k: median([r[k] for r in results]) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="keep each run's folder (logs) under this one")
    args = parser.parse_args()
    print(
        json.dumps(
            gateway_figures(args.points, args.runs, args.warmup, args.window, args.keep), indent=1
        )
    )


if __name__ == "__main__":
    main()
