"""Memory of the light paths: `watchpost config check` and the daemon on the demo site.

- `watchpost config check examples/demo/gateway.toml`: peak resident memory of the process
  (``ru_maxrss`` from ``wait4``), median of ``--runs``.
- `watchpost run` on the demo site (22 points, no anomaly model): Mosquitto, the demo site's
  simulator and the daemon; after ``--settle`` seconds of polling, the daemon's VmRSS and its
  peak so far (VmHWM) from /proc, median of ``--runs``.

It measures the committed code of ``--code`` (default HEAD) like bench/run.py does, so
half-edited files never enter a figure. `python bench/memory.py --code 9fdb428` measures an
older revision for a before/after. The figures at 1,000 points with the model come from
bench/run.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from perf_site import ENV, PYTHON, REPOSITORY, Broker, median, stop, use_code

DEMO = REPOSITORY / "examples" / "demo"
SIMULATE_ARGS = ("--port-base", "0", "--events")


def proc_status_mb(pid: int, key: str) -> float:
    """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for {pid}")


def config_check_peak_mb() -> float:
    """Peak RSS of one `watchpost config check` of the demo config, MiB."""
    process = subprocess.Popen(
        [PYTHON, "-m", "watchpost", "config", "check", str(DEMO / "gateway.toml")],
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"config check exited {process.returncode}")
    return usage.ru_maxrss / 1024  # kB on Linux


def demo_daemon_mb(settle: float) -> dict[str, float]:
    """VmRSS and VmHWM of `watchpost run` on the demo site after ``settle`` s, MiB."""
    with tempfile.TemporaryDirectory(prefix="wp-memory-") as tmp, contextlib.ExitStack() as exits:
        folder = Path(tmp)
        broker = Broker(folder)
        broker.start()
        exits.callback(broker.stop)
        (folder / "site.toml").write_text((DEMO / "site.toml").read_text())
        events = folder / "events.json"
        with (folder / "simulator.log").open("ab") as log:
            simulator = subprocess.Popen(
                [PYTHON, "-m", "watchpost", "simulate", "site.toml", *SIMULATE_ARGS, str(events)],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        exits.callback(stop, simulator)
        buses = wait_ready(events, simulator)
        text = (DEMO / "gateway.toml").read_text()
        text = text.replace("mqtt://127.0.0.1:1883", f"mqtt://127.0.0.1:{broker.port}")
        for name, bus in buses.items():
            if bus["type"] == "modbus_tcp":
                text = re.sub(
                    rf'(name = "{name}"\nhost = "127.0.0.1"\nport = )\d+',
                    rf"\g<1>{bus['port']}",
                    text,
                )
        config = folder / "gateway.toml"
        config.write_text(text)
        config.chmod(0o640)
        with (folder / "gateway.log").open("ab") as log:
            daemon = subprocess.Popen(
                [PYTHON, "-m", "watchpost", "run", "--config", str(config)],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        exits.callback(stop, daemon)
        time.sleep(settle)
        if daemon.poll() is not None:
            raise RuntimeError((folder / "gateway.log").read_text()[-3000:])
        maps = Path(f"/proc/{daemon.pid}/maps").read_text()
        return {
            "rss_mb": proc_status_mb(daemon.pid, "VmRSS"),
            "peak_mb": proc_status_mb(daemon.pid, "VmHWM"),
            "numpy_mapped": float("numpy" in maps),
        }


def wait_ready(events: Path, simulator: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if simulator.poll() is not None:
            raise RuntimeError(f"the simulator exited {simulator.returncode}")
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(events.read_text())
            if any(e.get("event") == "ready" for e in doc.get("events", [])):
                return dict(doc["buses"])
        time.sleep(0.1)
    raise RuntimeError("the simulator did not get ready in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of polling")
    parser.add_argument("--code", default="HEAD", help="revision measured, or 'worktree'")
    args = parser.parse_args()
    commit = use_code(args.code)
    checks = [config_check_peak_mb() for _ in range(args.runs)]
    daemons = [demo_daemon_mb(args.settle) for _ in range(args.runs)]
    figures = {
        "code": commit,
        "config_check_peak_mb": median(checks),
        "config_check_runs": checks,
        "demo_daemon_rss_mb": median([d["rss_mb"] for d in daemons]),
        "demo_daemon_peak_mb": median([d["peak_mb"] for d in daemons]),
        "demo_daemon_runs": daemons,
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
