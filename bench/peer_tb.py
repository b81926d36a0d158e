"""The peer side by side: ThingsBoard IoT Gateway and `watchpost run` on one site and broker.

ThingsBoard IoT Gateway (`thingsboard-gateway` 3.8.5 from PyPI, with the pymodbus its Modbus
connector pins) lives in bench/.peer-venv, made on first use; it is never a dependency of the
gateway. Both poll the same simulated site at 1 Hz (each through its own counting proxy) and
publish to the same Mosquitto: Watchpost its contract, ThingsBoard its device API
(`v1/gateway/telemetry`), which plain Mosquitto accepts. Both run with their shipped defaults
apart from addresses and points (ThingsBoard: memory storage, report every value).

One run: a measured window (CPU, RSS, requests per cycle, poll to broker), then a broker
outage of ``outage`` seconds: the values each one polled from 15 s before the outage to 30 s
after it, against the distinct values that reached the broker; and the time from the broker's
restart to the first telemetry message, and to the first value polled after the restart.
`python bench/peer_tb.py --points 200 --runs 1` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from perf_gateway import ANOMALY_POINTS, CALIBRATION_S, wait_for
from perf_site import (
    Arrivals,
    Broker,
    BrokerCounter,
    CountingProxy,
    Device,
    Simulator,
    cpu_seconds,
    gateway_toml,
    layout,
    median,
    point_reads,
    rss_mb,
    stop,
    watchpost_run,
)

HERE = Path(__file__).resolve().parent
PEER_VENV = HERE / ".peer-venv"
PEER_PACKAGES = ["thingsboard-gateway==3.8.5", "pymodbus==3.9.2", "pyserial", "pyserial-asyncio"]
BEFORE_S = 15.0
AFTER_S = 30.0
TB_TYPES = {"int16": "16int", "uint16": "16uint", "float32": "32float"}
TB_FUNCTIONS = {"holding": 3, "input": 4}


class PeerUnavailable(Exception):
    """The peer cannot be installed or started here; the message says why."""


class SessionLimits:
    """The one answer a ThingsBoard platform gives that the peer waits for.

    On its first connection the peer asks the platform for its session limits (RPC
    `getSessionLimits`) and sends no telemetry until it has an answer; plain Mosquitto has no
    platform behind it, so this client answers as a ThingsBoard CE server without rate limits
    does (100 messages in flight, 64 KiB payloads).
    """

    ANSWER: ClassVar[dict[str, Any]] = {
        "rateLimits": {},
        "gatewayRateLimits": {},
        "maxInflightMessages": 100,
        "maxPayloadSize": 65536,
    }

    def __init__(self, port: int) -> None:
        self.answered = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-platform")
        self.client.on_connect = lambda c, *_a: c.subscribe("v1/devices/me/rpc/request/+", 1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            if json.loads(message.payload).get("method") == "getSessionLimits":
                number = message.topic.rsplit("/", 1)[-1]
                client.publish(
                    f"v1/devices/me/rpc/response/{number}", json.dumps(self.ANSWER), qos=1
                )
                self.answered += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ensure_peer() -> Path:
    """The peer's command, installing it into bench/.peer-venv first if need be."""
    command = PEER_VENV / "bin" / "thingsboard-gateway"
    if command.exists():
        return command
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(PEER_VENV)],
        [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *PEER_PACKAGES],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            shutil.rmtree(PEER_VENV, ignore_errors=True)
            raise PeerUnavailable(
                f"{' '.join(step)}: exit {done.returncode}: {(done.stderr or done.stdout)[-1500:]}"
            )
    return command


def thingsboard_config(
    folder: Path, devices: list[Device], ports: list[int], broker_port: int
) -> Path:
    """A config folder for the peer: tb_gateway.json, logs.json, modbus.json."""
    shipped = PEER_VENV / "lib"
    packaged = next(shipped.glob("python3*/site-packages/thingsboard_gateway/config"))
    config = folder / "config"
    config.mkdir(parents=True, exist_ok=True)
    main = json.loads((packaged / "tb_gateway.json").read_text())
    # remote configuration off: it listens on v1/devices/me/attributes, where a plain broker
    # echoes the peer's own attribute messages back as if the platform had sent a new config
    main["thingsboard"].update(
        {
            "host": "127.0.0.1",
            "port": broker_port,
            "remoteConfiguration": False,
            "security": {"type": "accessToken", "accessToken": "bench"},
        }
    )
    main["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    (config / "tb_gateway.json").write_text(json.dumps(main, indent=1))
    shutil.copy(packaged / "logs.json", config / "logs.json")
    slaves = []
    for device in devices:
        slaves.append(
            {
                "host": "127.0.0.1",
                "port": ports[device.endpoint],
                "type": "tcp",
                "method": "socket",
                "unitId": device.unit,
                "deviceName": device.name,
                "deviceType": "default",
                "timeout": 1,
                "byteOrder": "BIG",
                "wordOrder": "BIG",
                "retries": 1,
                "pollPeriod": 1000,
                "sendDataOnlyOnChange": False,
                "attributes": [],
                "attributeUpdates": [],
                "rpc": [],
                "timeseries": [
                    {
                        "tag": p.name,
                        "type": TB_TYPES[p.type],
                        "functionCode": TB_FUNCTIONS[p.table],
                        "objectsCount": p.width,
                        "address": p.address,
                        **({"multiplier": p.scale} if p.scale != 1 else {}),
                    }
                    for p in device.points
                ],
            }
        )
    (config / "modbus.json").write_text(json.dumps({"master": {"slaves": slaves}}, indent=1))
    return config


def thingsboard_run(command: Path, folder: Path, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TB_GW_CONFIG_DIR": str(config) + "/"}
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    with (folder / "thingsboard.log").open("ab") as log:
        return subprocess.Popen(
            [str(command)], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _latency(arrivals: Arrivals, start: float, end: float) -> float:
    delays = sorted(
        arrived - ts / 1000
        for (_p, ts), arrived in arrivals.seen.items()
        if start <= ts / 1000 < end
    )
    return delays[len(delays) // 2] if delays else float("nan")


def _outage(broker: Broker, counter: BrokerCounter, outage: float) -> tuple[float, float, float]:
    """Stop the broker for ``outage`` seconds; return (window start, restart, window end) once
    what both buffered has stopped arriving."""
    t_a = time.time()
    time.sleep(BEFORE_S)
    broker.stop()
    time.sleep(outage)
    broker.start()
    t_up = time.time()
    time.sleep(AFTER_S)
    t_b = time.time()
    last: tuple[int, ...] = (-1, -1)
    deadline = time.monotonic() + 120  # the backlogs drain
    while time.monotonic() < deadline:
        time.sleep(5)
        now = tuple(
            counter.snapshot(s).distinct_between(int(t_a * 1000), int(t_b * 1000))
            for s in ("watchpost", "thingsboard")
        )
        if now == last:
            break
        last = now
    return t_a, t_up, t_b


def peer_run(
    n: int, *, warmup: float, window: float, outage: float, folder: Path
) -> dict[str, Any]:
    """One side-by-side run; see the module docstring."""
    command = ensure_peer()
    devices = layout(n)
    sides = ("watchpost", "thingsboard")
    with contextlib.ExitStack() as exits:
        broker = Broker(folder)
        broker.start()
        exits.callback(broker.stop)
        site = Simulator(folder, devices)
        exits.callback(site.close)
        proxies = {side: CountingProxy(site.ports) for side in sides}
        for proxy in proxies.values():
            exits.callback(proxy.close)
        counter = BrokerCounter(broker.port, "bench-counter")
        exits.callback(counter.close)
        platform = SessionLimits(broker.port)
        exits.callback(platform.close)
        config = folder / "gateway.toml"
        config.write_text(
            gateway_toml(
                devices,
                proxies["watchpost"].ports,
                broker.port,
                anomaly_points=ANOMALY_POINTS,
                calibration_s=CALIBRATION_S,
            )
        )
        tb_folder = folder / "tb"
        tb_config = thingsboard_config(
            tb_folder, devices, proxies["thingsboard"].ports, broker.port
        )
        processes = {
            "watchpost": watchpost_run(folder, config),
            "thingsboard": thingsboard_run(command, tb_folder, tb_config),
        }
        for process in processes.values():
            exits.callback(stop, process)
        for side in sides:
            try:
                wait_for(
                    lambda s=side: getattr(counter, s).first_at,
                    120,
                    f"the first telemetry of {side}",
                    step=0.2,
                )
            except RuntimeError as exc:
                log = folder / ("gateway.log" if side == "watchpost" else "tb/thingsboard.log")
                raise PeerUnavailable(f"{exc}: {log.read_text(errors='replace')[-1500:]}") from exc
        time.sleep(warmup)
        cpu0 = {side: cpu_seconds(p.pid) for side, p in processes.items()}
        t0 = time.time()
        time.sleep(window)
        cpu1 = {side: cpu_seconds(p.pid) for side, p in processes.items()}
        t1 = time.time()
        rss = {side: rss_mb(p.pid) for side, p in processes.items()}

        t_a, t_up, t_b = _outage(broker, counter, outage)
        results: dict[str, Any] = {}
        for side in sides:
            arrivals = counter.snapshot(side)
            requests = proxies[side].between(t0, t1)
            reads = point_reads(requests, devices)
            polled = point_reads(proxies[side].between(t_a, t_b), devices)
            delivered = arrivals.distinct_between(int(t_a * 1000), int(t_b * 1000))
            after = [arrived for arrived, _n, _ts in arrivals.batches if arrived >= t_up]
            live = arrivals.first_after(t_up)
            results[side] = {
                "cpu_s": cpu1[side] - cpu0[side],
                "core_pct": 100 * (cpu1[side] - cpu0[side]) / (t1 - t0),
                "cpu_s_per_1000_reads": (cpu1[side] - cpu0[side]) / (reads / 1000),
                "rss_mb": rss[side],
                "requests_per_cycle": len(requests) / (reads / n),
                "poll_to_broker_s": _latency(arrivals, t0, t1),
                "polled": polled,
                "delivered": delivered,
                "lost": max(0, polled - delivered),
                "lost_fraction": max(0, polled - delivered) / polled if polled else float("nan"),
                "resume_s": (min(after) - t_up) if after else float("nan"),
                "live_s": (live - t_up) if live else float("nan"),
            }
    return {"points": n, **results}


def peer_figures(n: int, runs: int, warmup: float, window: float, outage: float) -> dict[str, Any]:
    """Median figures of both over ``runs`` runs, with ratios peer/watchpost; or the error."""
    done = []
    try:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="wp-peer-") as tmp:
                done.append(
                    peer_run(n, warmup=warmup, window=window, outage=outage, folder=Path(tmp))
                )
    except (PeerUnavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if not done:
            return {"points": n, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {"points": n, "outage_s": outage, "runs": done}
    for side in ("watchpost", "thingsboard"):
        keys = done[0][side].keys()
        out[side] = {k: median([r[side][k] for r in done]) for k in keys}
    wp, tb = out["watchpost"], out["thingsboard"]
    out["cpu_ratio"] = tb["cpu_s_per_1000_reads"] / wp["cpu_s_per_1000_reads"]
    out["rss_ratio"] = tb["rss_mb"] / wp["rss_mb"]
    out["requests_ratio"] = tb["requests_per_cycle"] / wp["requests_per_cycle"]
    out["latency_ratio"] = tb["poll_to_broker_s"] / wp["poll_to_broker_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=60.0)
    args = parser.parse_args()
    print(
        json.dumps(
            peer_figures(args.points, args.runs, args.warmup, args.window, args.outage), indent=1
        )
    )


if __name__ == "__main__":
    main()
