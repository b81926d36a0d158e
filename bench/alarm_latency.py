"""Alarm latency: from a sample being read to its alarm event durable in the store, and to the
broker's acknowledgement (PUBACK) of its message; median and 99th percentile over at least
1,000 alarm events while 1,000 other points are polled at 1 Hz.

The parts are real: Mosquitto (bench/perf_site.Broker), the site simulator in its own process
(`watchpost simulate`: the 1,000 points of perf_site.layout on their Modbus TCP endpoints plus
one device of BITS discrete inputs, each a square wave with its own period, on an endpoint of
its own), and the daemon's Gateway in this process: poller, alarm engine, store (SQLite WAL,
each burst of alarms in one fsync'd commit), uplink (paho). Three probes, one clock (perf_counter):

    read     the poll path receives the sample (right after its device's read returned)
    durable  the event's Outbox.submit future is done, as a task awaiting it would learn:
             committed and fsync'd (Outbox.put of it returned, before the recorder
             handed events over without waiting)
    broker   the uplink takes the PUBACK of the event's message

Each bit has a high alarm at 0.5, so every edge of a square wave is one raised or cleared
event. The first WARMUP seconds are not counted.

What the disk itself gives meanwhile is measured beside it, in a process of its own: a 4 KiB
write and fsync in the same folder every 50 ms (``disk_fsync``). On a shared machine the
store's commit waits for the other tenants' writes too, and that shows there.

    python bench/alarm_latency.py --alarms 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import perf_site
from perf_site import PYTHON, Broker, gateway_toml, layout, site_toml, stop

from watchpost.app import SWITCH_INTERVAL, Gateway
from watchpost.config import load_config
from watchpost.messages import AlarmMessage, Message
from watchpost.samples import Sample

BITS = 50
WARMUP = 5.0
FSYNC_PROBE = """
import json, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
took = []
while not os.path.exists(sys.argv[1] + ".stop"):
    os.pwrite(fd, os.urandom(4096), 0)
    started = time.perf_counter_ns()
    os.fsync(fd)
    took.append((time.perf_counter_ns() - started) / 1e6)
    time.sleep(0.05)
print(json.dumps(took))
"""


def alarm_site(bits: int) -> str:
    out = [
        '[[buses]]\ntype = "modbus_tcp"\nname = "epA"\nport = 0\n',
        '[[devices]]\nname = "alarm-bits"\nbus = "epA"\nunit = 1\n',
    ]
    for i in range(bits):  # periods 2.0, 2.1, ... s: edges spread over the second
        out.append(
            f'[[devices.points]]\nname = "bit{i:03d}"\ntable = "discrete"\naddress = {i}\n'
            f'type = "bool"\nsignal = {{ kind = "square", period = {2.0 + 0.1 * i:.1f} }}\n'
        )
    return "\n".join(out)


def alarm_gateway(bits: int, port: int) -> str:
    out = [
        f'[[buses]]\ntype = "modbus_tcp"\nname = "epA"\nhost = "127.0.0.1"\nport = {port}\n',
        '[[devices]]\nname = "alarm-bits"\nbus = "epA"\nunit = 1\ninterval = 1.0\n',
    ]
    for i in range(bits):
        out.append(
            f'[[devices.points]]\nname = "bit{i:03d}"\ntable = "discrete"\naddress = {i}\n'
            'type = "bool"\n[[devices.points.alarms]]\nkind = "high"\nthreshold = 0.5\n'
        )
    return "\n".join(out)


def start_simulator(
    folder: Path, text: str, buses: Sequence[str]
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    process, doc = perf_site.start_simulator(folder, text)
    return process, {b: int(doc["buses"][b]["port"]) for b in buses}


class Probes:
    def __init__(self, points: set[str]) -> None:
        self.points = points
        self.read: dict[tuple[str, int], int] = {}
        self.durable: dict[int, tuple[tuple[str, int], int, int]] = {}
        self.acked: dict[int, int] = {}
        self.counting = False


class InstrumentedGateway(Gateway):
    """The daemon's Gateway with the three probes."""

    def __init__(self, config: Any, config_path: Path, probes: Probes) -> None:
        self.probes = probes
        super().__init__(config, config_path)
        submit = getattr(self.outbox, "submit", None)

        def timed_submit(message: Message, *, ts: int | None = None) -> asyncio.Future[int]:
            asked = time.perf_counter_ns()
            assert submit is not None
            future = submit(message, ts=ts)
            if isinstance(message, AlarmMessage) and probes.counting:

                def durable(done: asyncio.Future[int]) -> None:
                    if not done.cancelled() and done.exception() is None:
                        key = (message.point, message.sample_ts)
                        probes.durable[done.result()] = (key, asked, time.perf_counter_ns())

                future.add_done_callback(durable)
            return future

        put = self.outbox.put

        async def timed_put(message: Message, *, ts: int | None = None) -> int:
            asked = time.perf_counter_ns()
            seq = await put(message, ts=ts)
            if isinstance(message, AlarmMessage) and probes.counting:
                key = (message.point, message.sample_ts)
                probes.durable[seq] = (key, asked, time.perf_counter_ns())
            return seq

        if hasattr(self.outbox, "submit"):
            self.outbox.submit = timed_submit  # type: ignore[method-assign]
        else:  # code before the recorder submitted (measured with PYTHONPATH, for comparison)
            self.outbox.put = timed_put  # type: ignore[method-assign]
        on_puback = self.uplink._on_puback

        def timed_puback(link: Any, mid: int) -> None:
            now = time.perf_counter_ns()
            row = link.inflight.get(mid)
            on_puback(link, mid)
            if row is not None and row.stream == "alarms":
                probes.acked[row.seq] = now

        self.uplink._on_puback = timed_puback  # type: ignore[method-assign]

    def on_samples(self, samples: Sequence[Sample]) -> None:
        if samples and samples[0].point in self.probes.points:
            now = time.perf_counter_ns()
            for sample in samples:
                self.probes.read[(sample.point, sample.ts)] = now
        super().on_samples(samples)


async def measure(config_path: Path, probes: Probes, alarms: int, timeout: float) -> float:
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `watchpost run` sets it
    gateway = InstrumentedGateway(load_config(config_path), config_path, probes)
    task = asyncio.create_task(gateway.run())
    await asyncio.sleep(WARMUP)
    probes.counting = True
    started = time.monotonic()
    while len([s for s in probes.durable if s in probes.acked]) < alarms:
        if task.done():
            task.result()
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {len(probes.acked)} alarms acknowledged in {timeout:g} s")
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figures(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(percentile(values, 0.5), 3),
        "p99_ms": round(percentile(values, 0.99), 3),
        "max_ms": round(max(values), 3),
    }


def run(points: int, bits: int, alarms: int, folder: Path) -> dict[str, Any]:
    devices = layout(points)
    buses = [*sorted({f"ep{d.endpoint}" for d in devices}), "epA"]
    with contextlib.ExitStack() as exits:
        broker = Broker(folder)
        broker.start()
        exits.callback(broker.stop)
        simulator, ports = start_simulator(
            folder, site_toml(devices) + "\n" + alarm_site(bits), buses
        )
        exits.callback(stop, simulator)
        text = (
            gateway_toml(devices, [ports[f"ep{e}"] for e in range(len(buses) - 1)], broker.port)
            + "\n"
            + alarm_gateway(bits, ports["epA"])
        )
        config = folder / "gateway.toml"
        config.write_text(text.replace('"var/', f'"{folder}/var/'))
        probes = Probes({f"bit{i:03d}" for i in range(bits)})
        disk = folder / "fsync-probe"
        probe = subprocess.Popen(
            [PYTHON, "-c", FSYNC_PROBE, str(disk)], stdout=subprocess.PIPE, text=True
        )
        try:
            elapsed = asyncio.run(measure(config, probes, alarms, timeout=max(120.0, alarms / 5)))
        finally:
            Path(f"{disk}.stop").touch()
            fsyncs = json.loads(probe.communicate(timeout=30)[0] or "[]")
    durable, broker_ms, to_put, in_store = [], [], [], []
    for seq, (key, asked, done) in probes.durable.items():
        read = probes.read.get(key)
        if read is None or seq not in probes.acked:
            continue
        durable.append((done - read) / 1e6)
        broker_ms.append((probes.acked[seq] - read) / 1e6)
        to_put.append((asked - read) / 1e6)
        in_store.append((done - asked) / 1e6)
    return {
        "other_points": points,
        "alarm_points": bits,
        "alarms": len(durable),
        "window_s": round(elapsed, 1),
        "read_to_durable": figures(durable),
        "read_to_broker_puback": figures(broker_ms),
        "of_which_read_to_store_put": figures(to_put),
        "of_which_store_put_to_durable": figures(in_store),
        "disk_fsync": figures(fsyncs) if fsyncs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1000, help="other points, polled at 1 Hz")
    parser.add_argument("--bits", type=int, default=BITS, help="points that raise and clear")
    parser.add_argument("--alarms", type=int, default=1000, help="alarm events to measure")
    parser.add_argument("--keep", type=Path, help="keep the run's folder (logs) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wp-alarm-latency-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(args.points, args.bits, args.alarms, folder), indent=1))


if __name__ == "__main__":
    main()
