"""The floor: what a minimal Python process pays for the gateway's work, against the daemon.

`python bench/perf_floor.py --points 200 --runs 3`

The floor (`bench/floor_process.py`) does each second only what the gateway must: the same
Modbus TCP read requests as the daemon's planner makes (one transaction at a time per
endpoint), the values decoded and one high-alarm comparison per alarmed point, then the
second's samples as one JSON telemetry message, inserted into an SQLite file in WAL mode with
the store's durability settings and committed, and published QoS 1 by paho-mqtt on the same
asyncio loop with its PUBACK taken; one thread, one loop, one grid. In the same run, one after
the other and in alternating order, the daemon (`watchpost run`, as `bench/run.py` runs it,
with the shipped model over 8 points) polls the same simulated site through its own counting
proxy and publishes to its own Mosquitto.

Each measurement: after the first read (the floor) or the first telemetry at the broker (the
daemon) and a warm-up, utime + stime (10 ms ticks, as `bench/run.py`) and the CPU of every
thread (``schedstat``, ns) over the window, divided by the point-reads the proxy counted,
as % of one core per 1,000 points/s; the process's wake-ups (voluntary context switches of
all its threads) a second; the values that reached the broker. Floor variants show where its
CPU goes: ``poll`` (poll, decode, alarms only), ``store`` (+ JSON and the SQLite commit),
``mqtt`` (+ JSON and the publish), ``full``; the full floor also reports the CPU of each part
of its own work (thread ns, inside its callbacks; the rest is the loop and its wake-ups).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf_gateway import ANOMALY_POINTS, CALIBRATION_S, wait_for
from perf_site import (
    ENV,
    PYTHON,
    Broker,
    BrokerCounter,
    CountingProxy,
    Device,
    Point,
    Simulator,
    cpu_seconds,
    gateway_toml,
    layout,
    median,
    minimum_requests,
    point_reads,
    stop,
    thread_cpu_seconds,
    use_code,
    watchpost_run,
)
from perf_threads import threads

from watchpost.drivers.base import Table
from watchpost.drivers.planner import plan_reads
from watchpost.settings import MAX_GAP

HERE = Path(__file__).resolve().parent
FLOOR = HERE / "floor_process.py"
FUNCTIONS = {Table.HOLDING: 3, Table.INPUT: 4}
CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
VARIANTS = {
    "full": ["json", "store", "mqtt"],
    "poll": [],
    "store": ["json", "store"],
    "mqtt": ["json", "mqtt"],
}


# -- what the floor reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A site's point as the gateway's planner takes it."""

    table: Table
    address: int
    width: int
    point: Point


def read_specs(device: Device) -> list[dict[str, Any]]:
    """The daemon's planned reads of ``device``, each with the ``struct`` format of its
    answer's data (one code per point, pad bytes for bridged registers) and its points."""
    placed = [Placed(Table(p.table), p.address, p.width, p) for p in device.points]
    specs = []
    for planned in plan_reads(device.unit, placed, MAX_GAP):
        request = planned.request
        fmt, at = ">", 0
        for where, offset in planned.points:
            if offset > at:
                fmt += f"{2 * (offset - at)}x"
            fmt += CODES[where.point.type]
            at = offset + where.width
        specs.append(
            {
                "unit": request.unit,
                "function": FUNCTIONS[request.table],
                "address": request.address,
                "count": request.count,
                "format": fmt,
                "points": [
                    [w.point.name, w.point.scale, w.point.alarm] for w, _off in planned.points
                ],
            }
        )
    return specs


def floor_spec(
    devices: list[Device], ports: list[int], broker_port: int, parts: list[str], folder: Path
) -> dict[str, Any]:
    endpoints: list[dict[str, Any]] = [{"port": port, "reads": []} for port in ports]
    for device in devices:
        endpoints[device.endpoint]["reads"] += read_specs(device)
    requests = sum(len(e["reads"]) for e in endpoints)
    if requests != minimum_requests(devices):
        raise RuntimeError(f"{requests} planned reads, {minimum_requests(devices)} fewest")
    return {
        "endpoints": endpoints,
        "parts": parts,
        "gateway": "gw-floor",
        "topic": "watchpost/v1/bench/gw-floor/telemetry",
        "broker_port": broker_port,
        "store": str(folder / "floor.db"),
        "stats": str(folder / "stats.jsonl"),
    }


# -- one measured process -------------------------------------------------------------------------


def wakeups(pid: int) -> int:
    """Voluntary context switches of all live threads of ``pid``: how often it slept."""
    return sum(switches for _ns, switches in threads(pid).values())


def floor_stats(process: subprocess.Popen[bytes], path: Path, lines: int) -> dict[str, Any]:
    """Ask the floor for its part counters (SIGUSR1) and wait for its line."""
    process.send_signal(signal.SIGUSR1)
    got = wait_for(
        lambda: path.exists() and len(text := path.read_text().splitlines()) > lines and text,
        5,
        "the floor's stats",
        step=0.01,
    )
    stats: dict[str, Any] = json.loads(got[lines])
    return stats


def start_floor(folder: Path, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    (folder / "spec.json").write_text(json.dumps(spec))
    with (folder / "floor.log").open("ab") as log:
        return subprocess.Popen(
            [PYTHON, str(FLOOR), str(folder / "spec.json")],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def start_daemon(
    devices: list[Device],
    ports: list[int],
    broker_port: int,
    folder: Path,
    args: argparse.Namespace,
) -> tuple[subprocess.Popen[bytes], float]:
    """`watchpost run` on the site, as bench/run.py runs it, and its warm-up."""
    config = folder / "gateway.toml"
    anomaly = 0 if args.no_model else ANOMALY_POINTS
    config.write_text(
        gateway_toml(
            devices, ports, broker_port, anomaly_points=anomaly, calibration_s=CALIBRATION_S
        )
    )
    # as bench/run.py: at 1,000 points the shipped model is measured scoring
    scoring = sum(len(d.points) for d in devices) >= 1000 and not args.no_model
    warmup = max(args.warmup, CALIBRATION_S + 10) if scoring else args.warmup
    return watchpost_run(folder, config), warmup


def measure(
    kind: str, devices: list[Device], site_ports: list[int], folder: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One measured window of the daemon (``kind`` "daemon") or of a floor variant."""
    folder.mkdir()
    with contextlib.ExitStack() as exits:
        broker = Broker(folder)
        broker.start()
        exits.callback(broker.stop)
        proxy = CountingProxy(site_ports)
        exits.callback(proxy.close)
        counter = BrokerCounter(broker.port, f"bench-floor-{kind}")
        exits.callback(counter.close)
        parts = ["mqtt"] if kind == "daemon" else VARIANTS[kind]
        if kind == "daemon":
            process, warmup = start_daemon(devices, proxy.ports, broker.port, folder, args)
        else:
            spec = floor_spec(devices, proxy.ports, broker.port, parts, folder)
            process, warmup = start_floor(folder, spec), args.warmup
        exits.callback(stop, process)
        if "mqtt" in parts:
            wait_for(lambda: counter.watchpost.first_at, 60, f"the first telemetry of {kind}")
        else:
            wait_for(lambda: proxy.requests, 60, f"the first read of {kind}")
        time.sleep(warmup)
        if process.poll() is not None:
            log = "gateway.log" if kind == "daemon" else "floor.log"
            raise RuntimeError((folder / log).read_text()[-3000:])
        stats = folder / "stats.jsonl"
        before = floor_stats(process, stats, 0) if kind != "daemon" else None
        ticks0, ns0, wake0, t0 = (
            cpu_seconds(process.pid),
            thread_cpu_seconds(process.pid),
            wakeups(process.pid),
            time.time(),
        )
        time.sleep(args.window)
        ticks1, ns1, wake1, t1 = (
            cpu_seconds(process.pid),
            thread_cpu_seconds(process.pid),
            wakeups(process.pid),
            time.time(),
        )
        after = floor_stats(process, stats, 1) if before is not None else None
        reads = point_reads(proxy.between(t0, t1), devices)
        if "mqtt" in parts:
            time.sleep(3)  # what was polled in the window reaches the broker
        delivered = counter.snapshot("watchpost").distinct_between(int(t0 * 1000), int(t1 * 1000))
    per_1000 = 1e5 / reads  # CPU seconds -> % of one core per 1,000 points/s
    out: dict[str, Any] = {
        "kind": kind,
        "pct_ticks": (ticks1 - ticks0) * per_1000,
        "pct_ns": (ns1 - ns0) * per_1000,
        "ms_per_s": (ns1 - ns0) / (t1 - t0) * 1000,
        "wakeups_per_s": (wake1 - wake0) / (t1 - t0),
        "reads_per_s": reads / (t1 - t0),
        "delivered": delivered / reads if "mqtt" in parts else None,
    }
    if before is not None and after is not None:
        names = sorted(set(after["parts"]) | set(before["parts"]))
        own = {k: after["parts"].get(k, 0) - before["parts"].get(k, 0) for k in names}
        own["loop"] = after["thread_ns"] - before["thread_ns"] - sum(own.values())
        out["parts_pct"] = {k: v / 1e9 * per_1000 for k, v in own.items()}
        out["alarms_raised"] = after["raised"] - before["raised"]
        out["rows_kept"] = after["rows"]  # in the floor's store at the window's end
    return out


# -- runs -----------------------------------------------------------------------------------------


def one_run(n: int, kinds: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    devices = layout(n)
    with tempfile.TemporaryDirectory(prefix=f"wp-floor-{n}-") as tmp:
        folder = Path(tmp)
        site = Simulator(folder, devices)
        try:
            return [measure(kind, devices, site.ports, folder / kind, args) for kind in kinds]
        finally:
            site.close()


def describe(fig: dict[str, Any]) -> str:
    text = (
        f"{fig['kind']:>6}: {fig['pct_ns']:.2f} % ({fig['pct_ticks']:.2f} by ticks), "
        f"{fig['ms_per_s']:.2f} ms/s, {fig['wakeups_per_s']:.1f} wake-ups/s, "
        f"{fig['reads_per_s']:.0f} reads/s"
    )
    if fig["delivered"] is not None:
        text += f", delivered {fig['delivered']:.3f}"
    if fig.get("rows_kept"):
        text += f", {fig['rows_kept']} rows kept"
    if "parts_pct" in fig:
        text += "; " + ", ".join(f"{k} {v:.3f}" for k, v in fig["parts_pct"].items())
    return text


def summary(n: int, runs: list[list[dict[str, Any]]]) -> list[str]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for fig in run:
            by_kind.setdefault(fig["kind"], []).append(fig)
    lines = [f"{n} points, medians of {len(runs)} runs (% of one core per 1,000 points/s):"]
    for kind, figs in by_kind.items():
        lines.append(
            f"  {kind:>6}: {median([f['pct_ns'] for f in figs]):.2f} "
            f"(ticks {median([f['pct_ticks'] for f in figs]):.2f}), "
            f"{median([f['ms_per_s'] for f in figs]):.2f} ms/s, "
            f"{median([f['wakeups_per_s'] for f in figs]):.1f} wake-ups/s"
        )
        if "parts_pct" in figs[0]:
            parts = figs[0]["parts_pct"]
            lines.append(
                "          parts: "
                + ", ".join(f"{k} {median([f['parts_pct'][k] for f in figs]):.3f}" for k in parts)
            )
    if "daemon" in by_kind and "full" in by_kind:
        ratios = [
            next(f for f in run if f["kind"] == "daemon")["pct_ns"]
            / next(f for f in run if f["kind"] == "full")["pct_ns"]
            for run in runs
        ]
        lines.append(
            f"  daemon / full floor: {median(ratios):.2f} (runs "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + ")"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=200, help="a multiple of 100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument(
        "--floors",
        nargs="*",
        choices=sorted(VARIANTS),
        default=["full", "poll", "store", "mqtt"],
        help="floor variants measured besides the daemon",
    )
    parser.add_argument("--no-daemon", action="store_true", help="the floor alone")
    parser.add_argument(
        "--no-model", action="store_true", help="the daemon without the shipped anomaly model"
    )
    parser.add_argument("--code", default="HEAD", help="the daemon's revision (as bench/run.py)")
    parser.add_argument("--out", type=Path, help="write every run's figures here (JSON)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too
    commit = use_code(args.code)
    kinds = list(args.floors)
    if not args.no_daemon:
        kinds.insert(1 if kinds else 0, "daemon")  # next to the full floor in either order
    model = "without" if args.no_model else "with"
    print(
        f"daemon {commit[:9]} ({model} the model), {args.points} points, {args.runs} runs",
        flush=True,
    )
    runs = []
    for i in range(args.runs):
        order = kinds if i % 2 == 0 else kinds[::-1]
        load = os.getloadavg()
        print(f"run {i + 1}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        run = one_run(args.points, order, args)
        for fig in run:
            print("  " + describe(fig), flush=True)
        runs.append(run)
    print("\n".join(summary(args.points, runs)))
    if args.out:
        args.out.write_text(json.dumps({"commit": commit, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
