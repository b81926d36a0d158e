"""Resident memory of the daemon with and without anomaly models:
`python bench/anomaly_memory.py [--points 200] [--calibration-s 120] [--settle-s 30]`.

Runs the simulator with N points (two Modbus TCP devices on loopback) and, one after the
other, `watchpost run` polling them every second: once without an `[anomaly]` section, once
with one generic-model entry watching all N points. Reads VmRSS and VmHWM (peak) of the
daemon from /proc after calibration plus ``--settle-s`` seconds of scoring (the same
moment for the run without models), and prints both. Needs `mosquitto` on the PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_DEVICE = 100  # points per simulated device: one Modbus request each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_toml(n: int) -> str:
    out = [
        '[site]\nname = "bench"\nseed = 1\ntick = 0.5\n',
        '[[buses]]\ntype = "modbus_tcp"\nname = "plant"\nport = 0\n',
    ]
    for d in range((n + PER_DEVICE - 1) // PER_DEVICE):
        out.append(f'[[devices]]\nname = "dev{d}"\nbus = "plant"\nunit = {d + 1}\n')
        for i in range(d * PER_DEVICE, min(n, (d + 1) * PER_DEVICE)):
            out.append(
                f'[[devices.points]]\nname = "p{i}"\ntable = "input"\n'
                f'address = {i - d * PER_DEVICE}\ntype = "int16"\nscale = 0.01\n'
                f'signal = {{ kind = "wander", base = {10 + i % 50}, noise = 0.5, '
                f"tau = 2 }}\n"
            )
    return "\n".join(out)


def gateway_toml(n: int, port: int, broker: int, calibration_s: float, models: bool) -> str:
    out = [
        '[gateway]\nsite = "bench"\nid = "gw"\n',
        f'[uplink]\nbroker = "mqtt://127.0.0.1:{broker}"\n',
        '[store]\npath = "var/buffer.db"\n',
        '[control]\nsocket = "var/control.sock"\n',
        f'[[buses]]\ntype = "modbus_tcp"\nname = "plant"\nhost = "127.0.0.1"\nport = {port}\n',
    ]
    for d in range((n + PER_DEVICE - 1) // PER_DEVICE):
        out.append(f'[[devices]]\nname = "dev{d}"\nbus = "plant"\nunit = {d + 1}\ninterval = 1.0\n')
        for i in range(d * PER_DEVICE, min(n, (d + 1) * PER_DEVICE)):
            out.append(
                f'[[devices.points]]\nname = "p{i}"\ntable = "input"\n'
                f'address = {i - d * PER_DEVICE}\ntype = "int16"\nscale = 0.01\n'
            )
    if models:
        points = json.dumps([f"p{i}" for i in range(n)])
        out.append(
            f'[anomaly]\n[[anomaly.models]]\nname = "all"\npoints = {points}\n'
            f"calibration_s = {calibration_s}\n"
            "drift_lag_s = 50\n"  # short bench calibrations: generic-v2's 180 s needs 220 rows
        )
    return "\n".join(out)


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_gateway(folder: Path, wait_s: float) -> tuple[float, float, str]:
    log = (folder / "gateway.log").open("ab")
    gw = subprocess.Popen(
        [sys.executable, "-m", "watchpost", "run", "--config", "gateway.toml"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(wait_s)
        if gw.poll() is not None:
            raise RuntimeError((folder / "gateway.log").read_text()[-3000:])
        rss, hwm = memory(gw.pid)
        log_text = (folder / "gateway.log").read_text(errors="replace")
        calibrated = [line for line in log_text.splitlines() if "calibrated on" in line]
        return rss, hwm, calibrated[-1].split(": ", 1)[-1] if calibrated else "not calibrated"
    finally:
        stop(gw)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--calibration-s", type=float, default=120.0)
    ap.add_argument("--settle-s", type=float, default=30.0)
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        print("mosquitto is not on the PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker_port = free_port()
        (folder / "mosquitto.conf").write_text(
            f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        broker = subprocess.Popen(
            ["mosquitto", "-c", str(folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (folder / "site.toml").write_text(site_toml(args.points))
        events = folder / "events.json"
        sim = subprocess.Popen(
            [sys.executable, "-m", "watchpost", "simulate", "site.toml", "--events", str(events)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            port = None
            while port is None and time.monotonic() < deadline:
                time.sleep(0.2)
                with contextlib.suppress(OSError, ValueError, KeyError):
                    port = json.loads(events.read_text())["buses"]["plant"]["port"]
            if port is None:
                raise RuntimeError("the simulator did not get ready")
            wait = args.calibration_s + args.settle_s + 5
            figures = {}
            for models in (False, True):
                (folder / "gateway.toml").write_text(
                    gateway_toml(args.points, port, broker_port, args.calibration_s, models)
                )
                shutil.rmtree(folder / "var", ignore_errors=True)
                (folder / "gateway.log").unlink(missing_ok=True)
                figures[models] = run_gateway(folder, wait)
        finally:
            stop(sim)
            stop(broker)
    print(
        f"watchpost run, {args.points} points polled every second, RSS after {wait:.0f} s "
        f"(calibration {args.calibration_s:.0f} s + {args.settle_s:.0f} s of scoring):"
    )
    for models, label in ((False, "without [anomaly]"), (True, "one generic-model entry")):
        rss, hwm, note = figures[models]
        print(
            f"  {label:<24} RSS {rss:6.1f} MiB   peak {hwm:6.1f} MiB"
            + (f"   ({note})" if models else "")
        )
    print(f"  models add {figures[True][0] - figures[False][0]:.1f} MiB resident")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
