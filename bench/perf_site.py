"""The parts every performance figure stands on: a simulated site of N points, its gateway
config, Mosquitto, a counting Modbus TCP proxy, a broker-side counter, /proc readings.

Layout of the site (one shape for every N): 100 points per device, five devices (units 1-5)
behind each Modbus TCP endpoint, as behind a TCP-to-RTU gateway or a PLC. A device holds

    input    0..59    60 x int16/uint16 (gas, temperature, ...), scale 0.1
    holding  0..39    20 x float32, big word order (flows, levels)
    holding 100..119  20 x uint16 (status words)

so the fewest requests that cover a device are three (three contiguous ranges of at most 125
registers). Five points per device carry a high alarm rule; the first few points can feed the
shipped anomaly model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PER_DEVICE = 100
DEVICES_PER_ENDPOINT = 5
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PYTHON = sys.executable
REPOSITORY = Path(__file__).resolve().parents[1]
# the environment of the processes the bench starts; ``use_code`` points it at one revision
ENV: dict[str, str] = dict(os.environ)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
READ_FUNCTIONS = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


# -- the site ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One simulated point, as both the simulator and the gateways see it."""

    name: str
    table: str
    address: int
    type: str
    scale: float
    base: float
    alarm: float | None = None  # a high alarm threshold on this point

    @property
    def width(self) -> int:
        return 2 if self.type in ("float32", "int32", "uint32") else 1


@dataclass(frozen=True)
class Device:
    name: str
    endpoint: int
    unit: int
    points: tuple[Point, ...]


def layout(n: int) -> list[Device]:
    """The devices of a site with ``n`` points (see the module docstring)."""
    devices = []
    for d in range(math.ceil(n / PER_DEVICE)):
        points: list[Point] = []
        first = d * PER_DEVICE
        count = min(PER_DEVICE, n - first)
        for k in range(count):
            name = f"p{first + k:05d}"
            if k < 60:
                point = Point(
                    name,
                    "input",
                    k,
                    "uint16" if k % 2 else "int16",
                    0.1,
                    base=10 + k % 40,
                    alarm=200.0 if k % 12 == 0 else None,
                )
            elif k < 80:
                point = Point(name, "holding", 2 * (k - 60), "float32", 1.0, base=50 + k)
            else:
                point = Point(name, "holding", 100 + k - 80, "uint16", 1.0, base=1000 + k)
            points.append(point)
        devices.append(
            Device(
                f"dev{d:03d}",
                d // DEVICES_PER_ENDPOINT,
                d % DEVICES_PER_ENDPOINT + 1,
                tuple(points),
            )
        )
    return devices


def endpoints(devices: list[Device]) -> int:
    return max(d.endpoint for d in devices) + 1


def minimum_requests(devices: list[Device], limit: int = 125) -> int:
    """The fewest read requests for one cycle: ceil(span/limit) per contiguous range."""
    total = 0
    for device in devices:
        by_table: dict[str, list[tuple[int, int]]] = {}
        for p in device.points:
            by_table.setdefault(p.table, []).append((p.address, p.address + p.width))
        for spans in by_table.values():
            spans.sort()
            start, end = spans[0]
            for a, b in spans[1:]:
                if a > end:
                    total += math.ceil((end - start) / limit)
                    start = a
                end = max(end, b)
            total += math.ceil((end - start) / limit)
    return total


def site_toml(devices: list[Device], tick: float = 0.5) -> str:
    out = [f'[site]\nname = "bench"\nseed = 7\ntick = {tick}\n']
    out += [
        f'[[buses]]\ntype = "modbus_tcp"\nname = "ep{e}"\nport = 0\n'
        for e in range(endpoints(devices))
    ]
    for device in devices:
        out.append(
            f'[[devices]]\nname = "{device.name}"\nbus = "ep{device.endpoint}"\n'
            f"unit = {device.unit}\n"
        )
        for p in device.points:
            out.append(
                f'[[devices.points]]\nname = "{p.name}"\ntable = "{p.table}"\n'
                f'address = {p.address}\ntype = "{p.type}"\nscale = {p.scale}\n'
                f'signal = {{ kind = "wander", base = {p.base}, noise = 0.5, tau = 5 }}\n'
            )
    return "\n".join(out)


def gateway_toml(
    devices: list[Device],
    ports: list[int],
    broker_port: int,
    anomaly_points: int = 0,
    calibration_s: float = 20.0,
) -> str:
    """The gateway's config for the site; ``anomaly_points`` > 0 adds the shipped model."""
    out = [
        '[gateway]\nsite = "bench"\nid = "gw"\n',
        f'[uplink]\nbroker = "mqtt://127.0.0.1:{broker_port}"\n',
        '[store]\npath = "var/buffer.db"\n',
        '[control]\nsocket = "var/control.sock"\n',
    ]
    out += [
        f'[[buses]]\ntype = "modbus_tcp"\nname = "ep{e}"\nhost = "127.0.0.1"\nport = {port}\n'
        for e, port in enumerate(ports)
    ]
    for device in devices:
        out.append(
            f'[[devices]]\nname = "{device.name}"\nbus = "ep{device.endpoint}"\n'
            f"unit = {device.unit}\ninterval = 1.0\n"
        )
        for p in device.points:
            out.append(
                f'[[devices.points]]\nname = "{p.name}"\ntable = "{p.table}"\n'
                f'address = {p.address}\ntype = "{p.type}"\nscale = {p.scale}\n'
            )
            if p.alarm is not None:
                out.append(
                    f'[[devices.points.alarms]]\nkind = "high"\nlevel = "alarm"\n'
                    f"threshold = {p.alarm}\ndeadband = 1.0\n"
                )
    if anomaly_points:
        names = [p.name for p in devices[0].points[:anomaly_points]]
        out.append(
            f'[anomaly]\n[[anomaly.models]]\nname = "bench"\npoints = {json.dumps(names)}\n'
            f"calibration_s = {calibration_s}\n"
            "drift_lag_s = 50\n"  # short bench calibrations: generic-v2's 180 s needs 220 rows
        )
    return "\n".join(out)


# -- the code under test ------------------------------------------------------------------------


def use_code(revision: str) -> str:
    """Run the simulator and the daemon from ``revision`` of this repository (its committed
    files, unpacked once under the temporary folder), not from the working tree that others
    may be editing; ``worktree`` keeps the working tree. Returns the commit id.

    The measured tree is byte-compiled first, as the package installs it (pip compiles on
    install): without it every start compiled the gateway's own modules from source (the
    unpacked tree has no ``.pyc`` and a shell with PYTHONDONTWRITEBYTECODE never writes them),
    which an installed gateway never does (0.5 MB of the demo daemon's resident memory here).
    """
    if revision == "worktree":
        ENV.pop("PYTHONPATH", None)
        for folder in ("gateway", "drivers", "models", "provisioning"):
            compile_tree(REPOSITORY / folder)
        return "worktree"
    commit = subprocess.run(
        ["git", "rev-parse", revision], cwd=REPOSITORY, check=True, capture_output=True, text=True
    ).stdout.strip()
    # "-pyc": trees unpacked by older benches were never compiled
    root = Path(tempfile.gettempdir()) / f"watchpost-src-{commit[:12]}-pyc"
    if not (root / "watchpost").is_dir():
        partial = root.with_name(root.name + f".{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=REPOSITORY, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        # the installed layout: gateway/ is the package, drivers/ models/ provisioning/ in it
        for sub in ("drivers", "models", "provisioning"):
            link = partial / "gateway" / sub  # a link to the top-level folder since the layout
            if link.is_symlink():
                link.unlink()
            (partial / sub).rename(link)
        (partial / "gateway").rename(partial / "watchpost")
        compile_tree(partial)  # before it is shared: two benches never compile one tree
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    ENV["PYTHONPATH"] = str(root)  # ahead of the editable install's finder
    return commit


def compile_tree(folder: Path) -> None:
    """Write the ``.pyc`` of every module under ``folder`` that lacks a current one."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(folder)], check=True)


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; never raises."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Broker:
    """Mosquitto on a free loopback port; persistent, so a subscriber misses nothing across a
    restart and losses are the publisher's own."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    # as a platform's broker should be set: without it Mosquitto's PUBACKs wait on
                    # Nagle's algorithm against the client's delayed ACK, ~40 ms each on Linux
                    "set_tcp_nodelay true",
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                    "persistence true",
                    f"persistence_location {folder}/",
                    "max_queued_messages 0",
                    "max_inflight_messages 0",
                    f"log_dest file {folder / 'mosquitto.log'}",
                    "log_type error",
                    "log_type warning",
                ]
            )
            + "\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the port may linger a moment after a stop
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_port(self.port, timeout=3.0)
                return
            except OSError:
                stop(self.process)
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None

    def stop(self) -> None:
        stop(self.process)
        self.process = None


def start_simulator(folder: Path, text: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``watchpost simulate`` on the site ``text`` in ``folder``, on free ports; the process
    and its events document once it says it is ready (RuntimeError if it does not in 60 s)."""
    (folder / "site.toml").write_text(text)
    events = folder / "events.json"
    with (folder / "simulator.log").open("ab") as log:
        command = ["simulate", "site.toml", "--port-base", "0", "--events", str(events)]
        process = subprocess.Popen(
            [PYTHON, "-m", "watchpost", *command],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((folder / "simulator.log").read_text()[-2000:])
        with contextlib.suppress(OSError, ValueError):  # not written yet, or half written
            doc: dict[str, Any] = json.loads(events.read_text())
            if any(e.get("event") == "ready" for e in doc.get("events", [])):
                return process, doc
        time.sleep(0.1)
    stop(process)
    raise RuntimeError("the simulator did not get ready in 60 s")


class Simulator:
    """``watchpost simulate`` on free ports in ``folder``; ``ports`` once it is ready."""

    def __init__(self, folder: Path, devices: list[Device], tick: float = 0.5) -> None:
        self.process, doc = start_simulator(folder, site_toml(devices, tick))
        self.ports = [int(doc["buses"][f"ep{e}"]["port"]) for e in range(endpoints(devices))]

    def close(self) -> None:
        stop(self.process)


def watchpost_run(folder: Path, config: Path) -> subprocess.Popen[bytes]:
    with (folder / "gateway.log").open("ab") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "watchpost", "run", "--config", str(config)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def thread_cpu_seconds(pid: int) -> float:
    """CPU of a process's live threads, seconds, in nanoseconds (``/proc/PID/task/*/
    schedstat``): for short windows of a process that uses little, where the 10 ms ticks of
    ``cpu_seconds`` are too coarse. Threads that ended are not in it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_mb(pid: int) -> float:
    """VmRSS of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- a counting proxy in front of each Modbus TCP endpoint --------------------------------------


@dataclass
class Request:
    t: float
    unit: int
    function: int
    address: int
    count: int


class CountingProxy:
    """Relays Modbus TCP to the simulator's endpoints and records every read request.

    One asyncio loop in a thread; ``ports[i]`` is the proxy of ``targets[i]``. The bench reads
    the requests a client made in a window, and the points each one covered.
    """

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modbus-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting proxy did not start")
        self.ports = [int(s.sockets[0].getsockname()[1]) for s in self._servers]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            for target in self.targets:
                self._servers.append(
                    await asyncio.start_server(
                        lambda r, w, t=target: self._relay(r, w, t), "127.0.0.1", 0
                    )
                )
            self._ready.set()

        self._loop.run_until_complete(listen())
        self._loop.run_forever()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return

        async def requests() -> None:
            while True:
                header = await reader.readexactly(7)
                length = struct.unpack(">H", header[4:6])[0]
                body = await reader.readexactly(length - 1)
                if body and body[0] in READ_FUNCTIONS and len(body) >= 5:
                    address, count = struct.unpack(">HH", body[1:5])
                    with self._lock:
                        self.requests.append(
                            Request(time.time(), header[6], body[0], address, count)
                        )
                up_writer.write(header + body)

        async def answers() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)

        with contextlib.suppress(Exception):
            await asyncio.gather(requests(), answers())
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    def between(self, start: float, end: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if start <= r.t < end]

    def close(self) -> None:
        def shutdown() -> None:
            for server in self._servers:
                server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(5)


def point_reads(requests: list[Request], devices: list[Device]) -> int:
    """How many point values the requests covered (a point counts when wholly inside).

    Every device has the same layout (N is a multiple of 100), so a request's unit and
    endpoint do not change what it covers.
    """
    by_table: dict[str, list[Point]] = {}
    for p in devices[0].points:
        by_table.setdefault(p.table, []).append(p)
    total = 0
    for r in requests:
        points = by_table.get(READ_FUNCTIONS[r.function], [])
        total += sum(
            1
            for p in points
            if r.address <= p.address and p.address + p.width <= r.address + r.count
        )
    return total


# -- what arrives at the broker -----------------------------------------------------------------


@dataclass
class Arrivals:
    """Telemetry values seen at the broker: (point, ts ms) first-arrival times, and counts."""

    first_at: float | None = None
    messages: int = 0
    values: int = 0
    seen: dict[tuple[str, int], float] = field(default_factory=dict)
    batches: list[tuple[float, int, int]] = field(default_factory=list)  # arrival, n, max ts

    def add(self, keys: list[tuple[str, int]], now: float) -> None:
        self.messages += 1
        self.values += len(keys)
        if self.first_at is None:
            self.first_at = now
        for key in keys:
            self.seen.setdefault(key, now)
        if keys:
            self.batches.append((now, len(keys), max(ts for _p, ts in keys)))

    def distinct_between(self, start_ms: int, end_ms: int) -> int:
        return sum(1 for (_p, ts) in self.seen if start_ms <= ts < end_ms)

    def first_after(self, t: float) -> float | None:
        """Arrival time of the first value stamped at or after ``t`` (seconds)."""
        stamp = int(t * 1000)
        times = [arrived for (_p, ts), arrived in self.seen.items() if ts >= stamp]
        return min(times) if times else None


def watchpost_keys(payload: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (s["point"], int(s["ts"])) for s in payload.get("samples", ()) if s.get("quality") == "good"
    ]


def thingsboard_keys(payload: dict[str, Any]) -> list[tuple[str, int]]:
    keys = []
    for rows in payload.values():
        for row in rows if isinstance(rows, list) else [rows]:
            ts = int(row.get("ts", 0)) if isinstance(row, dict) else 0
            values = row.get("values", row) if isinstance(row, dict) else {}
            keys += [(name, ts) for name in values if name != "ts"]
    return keys


class BrokerCounter:
    """A persistent-session subscriber counting telemetry values per gateway kind."""

    def __init__(self, port: int, client_id: str) -> None:
        self.watchpost = Arrivals()
        self.thingsboard = Arrivals()
        self.topics: Counter[str] = Counter()
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )

        def on_connect(client: mqtt.Client, _u: Any, flags: Any, _rc: Any, _p: Any) -> None:
            if not getattr(flags, "session_present", False):
                client.subscribe([("watchpost/v1/+/+/telemetry", 1), ("v1/gateway/telemetry", 1)])
            else:
                subscribed.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the bench's subscriber did not subscribe")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        with self._lock:
            self.topics[message.topic] += 1
            if message.topic.startswith("watchpost/"):
                self.watchpost.add(watchpost_keys(payload), now)
            else:
                self.thingsboard.add(thingsboard_keys(payload), now)

    def snapshot(self, kind: str) -> Arrivals:
        """A copy of what arrived so far from ``kind`` (watchpost or thingsboard)."""
        with self._lock:
            got: Arrivals = getattr(self, kind)
            return Arrivals(
                got.first_at, got.messages, got.values, dict(got.seen), list(got.batches)
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
