"""The performance suite in one command: `.venv/bin/python bench/run.py`.

Prints one table and writes it, with every run's raw figures, to bench/results.json:

- polling cost and memory of `watchpost run` at 200, 1,000 and 5,000 points (1 Hz, Modbus
  TCP from the simulated site, alarms, store, uplink to Mosquitto and the shipped anomaly
  model running), requests per poll cycle against the fewest possible, start-up time;
- the RS-485 bus on a line at its real pace (9600 and 19200 baud) against its maximum;
- the peer, ThingsBoard IoT Gateway, side by side on the same site and broker (installed in
  bench/.peer-venv on first use), as ratios.

Each figure is the median of ``--runs`` runs. Needs `mosquitto`; the peer needs PyPI once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_gateway import CALIBRATION_S, gateway_figures
from perf_rtu import rtu_figures
from perf_site import use_code

HERE = Path(__file__).resolve().parent
CORE_PCT_TARGET = 1.5  # % of one core per 1,000 points per second
RSS_TARGET_MB = 60.0  # at 1,000 points with the shipped model
MEMORY_POINTS = 1000
LINE_TARGET = 0.95  # of the line's theoretical maximum


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_before": os.getloadavg(),
    }


def verdict(value: float, target: float, *, at_most: bool) -> str:
    if math.isnan(value):
        return "-"
    ok = value <= target if at_most else value >= target
    ratio = value / target
    return f"{'met' if ok else 'MISSED'} ({ratio:.2f}x target)"


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for fig in results.get("polling", []):
        n = fig["points"]
        rows += [
            (
                f"{n} pts: CPU, % of one core per 1,000 points/s",
                f"{fig['core_pct_per_1000_points_1hz']:.2f}",
                f"<= {CORE_PCT_TARGET}",
                verdict(fig["core_pct_per_1000_points_1hz"], CORE_PCT_TARGET, at_most=True),
            ),
            (
                f"{n} pts: CPU seconds per 1,000 point-reads",
                f"{fig['cpu_s_per_1000_reads']:.4f}",
                f"<= {CORE_PCT_TARGET / 100}",
                "",
            ),
            (
                f"{n} pts: resident memory, MB",
                f"{fig['rss_mb']:.1f}",
                f"<= {RSS_TARGET_MB:g}" if n == MEMORY_POINTS else "",
                verdict(fig["rss_mb"], RSS_TARGET_MB, at_most=True) if n == MEMORY_POINTS else "",
            ),
            (
                f"{n} pts: requests per poll cycle (fewest possible)",
                f"{fig['requests_per_cycle']:.1f} ({fig['minimum_requests']})",
                "= fewest",
                f"{fig['requests_per_cycle'] / fig['minimum_requests']:.2f}x fewest",
            ),
            (f"{n} pts: poll to broker, median s", f"{fig['poll_to_broker_s']:.2f}", "", ""),
            (
                f"{n} pts: start-up to first telemetry at broker, s",
                f"{fig['startup_s']:.2f}",
                "",
                "",
            ),
        ]
    for fig in results.get("rtu", []):
        baud = fig["baudrate"]
        rows += [
            (
                f"RTU {baud} baud: transactions/s (125 registers)",
                f"{fig['transactions_per_s']:.3f}",
                f"max {1000 / fig['ideal_ms']:.3f}",
                "",
            ),
            (
                f"RTU {baud} baud: registers/s",
                f"{fig['registers_per_s']:.1f}",
                f"max {fig['ideal_registers_per_s']:.1f}",
                f"{'met' if fig['of_maximum'] >= LINE_TARGET else 'MISSED'} "
                f"({fig['of_maximum']:.1%} of max; target {LINE_TARGET:.0%})",
            ),
            (
                f"RTU {baud} baud: driver turnaround (answer end to next request), ms",
                f"{fig['driver_turnaround_ms']:.2f}",
                f"< silence {3.5 * 11 / baud * 1000:.2f}",
                "",
            ),
        ]
    peer = results.get("peer")
    if peer and "error" not in peer:
        for key, label in (
            ("cpu_ratio", "peer/watchpost: CPU per point-read"),
            ("rss_ratio", "peer/watchpost: resident memory"),
            ("requests_ratio", "peer/watchpost: requests per cycle"),
            ("latency_ratio", "peer/watchpost: poll to broker"),
        ):
            rows.append((label, f"{peer[key]:.2f}", "", ""))
        for side in ("watchpost", "thingsboard"):
            got = peer[side]
            rows += [
                (
                    f"{side}: CPU % of one core at {peer['points']} pts",
                    f"{got['core_pct']:.2f}",
                    "",
                    "",
                ),
                (f"{side}: resident memory, MB", f"{got['rss_mb']:.1f}", "", ""),
                (f"{side}: requests per cycle", f"{got['requests_per_cycle']:.1f}", "", ""),
                (f"{side}: poll to broker, median s", f"{got['poll_to_broker_s']:.2f}", "", ""),
                (
                    f"{side}: values lost across a {peer['outage_s']:g} s broker outage",
                    f"{got['lost']} of {got['polled']} ({got['lost_fraction']:.2%})",
                    "",
                    "",
                ),
                (
                    f"{side}: data flowing again after the broker restart, s",
                    f"{got['resume_s']:.1f}",
                    "",
                    "",
                ),
            ]
    elif peer:
        rows.append(("peer: ThingsBoard IoT Gateway", "not run", "", peer["error"][:120]))
    return rows


def render(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("figure", "value", "target", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--baud", type=int, nargs="*", default=[9600, 19200])
    parser.add_argument("--line-seconds", type=float, default=10.0)
    parser.add_argument("--no-peer", action="store_true", help="leave the peer out")
    parser.add_argument("--peer-points", type=int, default=200)
    parser.add_argument("--outage", type=float, default=60.0, help="broker outage, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--code",
        default="HEAD",
        help=(
            "git revision whose committed code is measured (default HEAD); "
            "'worktree': the working tree as it is"
        ),
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too

    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "code": use_code(args.code),
        "machine": machine(),
        "polling": [],
        "rtu": [],
    }
    for n in args.points:
        # the memory figure is taken with the model scoring, after its calibration
        warmup = max(args.warmup, CALIBRATION_S + 10) if n == MEMORY_POINTS else args.warmup
        print(f"polling {n} points ({args.runs} runs) ...", file=sys.stderr, flush=True)
        results["polling"].append(gateway_figures(n, args.runs, warmup, args.window))
    for baud in args.baud:
        print(f"RTU line at {baud} baud ...", file=sys.stderr, flush=True)
        results["rtu"].append(rtu_figures(baud, args.line_seconds, args.runs))
    if not args.no_peer:
        from peer_tb import peer_figures  # noqa: PLC0415 - the peer is optional

        print("the peer, side by side ...", file=sys.stderr, flush=True)
        results["peer"] = peer_figures(
            args.peer_points, args.runs, args.warmup, args.window, args.outage
        )
    results["machine"]["load_after"] = os.getloadavg()
    results["elapsed_s"] = time.time() - started
    rows = table(results)
    results["table"] = [
        dict(zip(("figure", "value", "target", "verdict"), r, strict=True)) for r in rows
    ]
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(render(rows))
    print(f"\ncode {results['code']}; {args.out} written; {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
