"""The floor: a minimal Python process doing, each second, only the irreducible work of the
gateway (run by `bench/perf_floor.py`, which writes its spec; not a product).

One thread, one asyncio loop, callbacks only (no task steps in the steady state), and one
grid: at each whole second of the loop's clock the first request of each Modbus TCP endpoint
goes out; each answer is checked (transaction id, function code, byte count), decoded in one
``struct`` call (the point types in the format) and scaled, each alarmed point's value is
compared with its high threshold, and the endpoint's next request goes out. When every
endpoint has answered its cycle, the second's samples are

- ``json``: encoded as one telemetry message (the envelope and ``samples`` of
  ``gateway/messages.py``, the same compact encoder);
- ``store``: compressed as the store does (zlib level 1) and inserted into an SQLite file in
  WAL mode with ``synchronous = FULL`` (the store's settings), with the rows the broker
  acknowledged since the last commit deleted, in one transaction, committed (fsync) on the
  loop's thread;
- ``mqtt``: published QoS 1 by paho-mqtt driven from the loop (its socket registered with
  ``add_reader``, a write only when paho could not write at once; its keepalive on the grid
  step), and the PUBACK taken by its read callback.

``poll`` alone is the poll path without any of these. On SIGUSR1 the process appends a line
of JSON to the stats file: its thread CPU (ns) and the CPU of each part, for the bench's
window. Usage: ``python bench/floor_process.py SPEC.json``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import signal
import sqlite3
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

MBAP = struct.Struct(">HHHBB")  # transaction id, protocol 0, length, unit, function
ADDRESS_COUNT = struct.Struct(">HH")
ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
COMPRESS_ABOVE = 160  # bytes, as gateway/store.py
DEADBAND = 1.0  # of the bench site's alarm rules
KEEPALIVE = 60  # s; paho's ping is due at this, its check runs on the grid step
SCHEMA = "CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, "
SCHEMA += "ts INTEGER NOT NULL, z INTEGER NOT NULL, body BLOB NOT NULL)"
now_ns = time.thread_time_ns


@dataclass
class Read:
    """One planned read request and the points its answer holds."""

    unit: int
    function: int
    address: int
    count: int
    decode: struct.Struct  # the answer's data, straight to one number per point
    names: list[str]
    scales: list[float]
    alarms: list[tuple[int, float]]  # (index into names, high threshold)
    floats: bool  # a value may be NaN or infinite
    active: set[int] = field(default_factory=set)  # alarmed points now above threshold

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Read:
        points = spec["points"]
        return cls(
            unit=spec["unit"],
            function=spec["function"],
            address=spec["address"],
            count=spec["count"],
            decode=struct.Struct(spec["format"]),
            names=[p[0] for p in points],
            scales=[p[1] for p in points],
            alarms=[(i, p[2]) for i, p in enumerate(points) if p[2] is not None],
            floats="f" in spec["format"],
        )


class Parts:
    """CPU (thread ns) of each part of the work, summed since the start."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = {}

    def add(self, part: str, since: int) -> int:
        now = now_ns()
        self.ns[part] = self.ns.get(part, 0) + now - since
        return now


class Endpoint(asyncio.Protocol):
    """One Modbus TCP connection: its reads in order, one transaction at a time."""

    def __init__(self, floor: Floor, reads: list[Read]) -> None:
        self.floor = floor
        self.reads = reads
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.index = len(reads)  # nothing in flight
        self.tid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.floor.fail(f"Modbus connection lost: {exc}")

    def poll(self) -> None:
        """Start a cycle (the previous one, if unfinished, is given up)."""
        self.index = 0
        self.buffer.clear()
        self.send()

    def send(self) -> None:
        read = self.reads[self.index]
        self.tid = self.tid % 0xFFFF + 1
        body = ADDRESS_COUNT.pack(read.address, read.count)
        assert self.transport is not None
        self.transport.write(MBAP.pack(self.tid, 0, 6, read.unit, read.function) + body)

    def data_received(self, data: bytes) -> None:
        started = now_ns()
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 9 and self.index < len(self.reads):
            tid, protocol, length, unit, function = MBAP.unpack_from(buffer)
            end = 6 + length
            if len(buffer) < end:
                break
            read = self.reads[self.index]
            size = read.decode.size
            if (tid, protocol, unit, function) != (self.tid, 0, read.unit, read.function) or (
                buffer[8] != size or end != 9 + size
            ):
                self.floor.fail(f"unexpected answer {bytes(buffer[:end]).hex(' ')}")
                return
            self.floor.take(read, read.decode.unpack_from(buffer, 9))
            del buffer[:end]
            self.index += 1
            if self.index < len(self.reads):
                self.send()
        self.floor.parts.add("poll", started)
        if self.index == len(self.reads):
            self.floor.cycle_done()


class Floor:
    """The process's work: the grid, the samples of the second, JSON, store and uplink."""

    def __init__(self, spec: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.spec = spec
        self.parts = Parts()
        self.kinds = set(spec["parts"])
        self.samples: list[dict[str, Any]] = []
        self.endpoints: list[Endpoint] = []
        self.pending = 0  # endpoints whose cycle is not done
        self.seq = 0
        self.raised = 0
        self.acked: list[int] = []  # row ids the broker acknowledged, deleted at the next commit
        self.rows: dict[int, int] = {}  # paho mid -> row id
        self.db: sqlite3.Connection | None = None
        self.client: mqtt.Client | None = None
        self.sock: Any = None  # the broker connection's socket
        self.writing = False  # waiting for the socket to take paho's bytes
        self.error: str | None = None
        self.stopped = loop.create_future()

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        for endpoint in self.spec["endpoints"]:
            reads = [Read.of(r) for r in endpoint["reads"]]
            _t, link = await self.loop.create_connection(
                functools.partial(Endpoint, self, reads), "127.0.0.1", endpoint["port"]
            )
            self.endpoints.append(link)
        if "store" in self.kinds:
            self.db = open_store(Path(self.spec["store"]))
        if "mqtt" in self.kinds:
            await self.connect()
        self.loop.call_at(math.floor(self.loop.time()) + 1.0, self.tick)

    async def connect(self) -> None:
        client = self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.spec["gateway"],
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        connected: asyncio.Future[None] = self.loop.create_future()

        def on_connect(*_a: Any) -> None:
            if not connected.done():
                connected.set_result(None)

        client.on_connect = on_connect
        client.on_publish = self.on_puback
        client.connect("127.0.0.1", self.spec["broker_port"], KEEPALIVE)  # CONNECT written
        self.sock = client.socket()
        self.loop.add_reader(self.sock, self.mqtt_read)
        self.mqtt_write()  # what paho could not write at once
        await asyncio.wait_for(connected, 10)

    # -- the grid ------------------------------------------------------------------------------

    def tick(self) -> None:
        self.loop.call_at(math.floor(self.loop.time()) + 1.0, self.tick)
        if self.pending:  # a cycle that did not finish in its second: send what it got
            self.flush()
        started = now_ns()
        self.pending = len(self.endpoints)
        for endpoint in self.endpoints:
            endpoint.poll()
        if self.client is not None:
            self.client.loop_misc()  # the keepalive's check, in the same step
        self.parts.add("poll", started)

    def take(self, read: Read, raw: tuple[float, ...]) -> None:
        """The answer's values as samples, and the alarm comparisons."""
        ts = time.time_ns() // 1_000_000
        scales = read.scales
        values: list[float | None] = [raw[i] * scales[i] for i in range(len(raw))]
        if read.floats:
            values = [v if v is not None and math.isfinite(v) else None for v in values]
        self.samples += [
            {"point": name, "ts": ts, "value": value, "quality": "good"}
            for name, value in zip(read.names, values, strict=True)
        ]
        active = read.active
        for i, threshold in read.alarms:
            value = values[i]
            if i in active:
                if value is None or value < threshold - DEADBAND:
                    active.discard(i)
            elif value is not None and value > threshold:
                active.add(i)
                self.raised += 1

    def cycle_done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.flush()

    def flush(self) -> None:
        """The second's step: one message, stored and committed, then published."""
        self.pending = 0
        samples, self.samples = self.samples, []
        if not samples or not self.kinds & {"json", "store", "mqtt"}:
            return
        started = now_ns()
        self.seq += 1
        head = {"gateway": self.spec["gateway"], "stream": "telemetry", "seq": self.seq}
        message = {**head, "ts": time.time_ns() // 1_000_000, "samples": samples}
        body = ENCODER.encode(message).encode()
        started = self.parts.add("json", started)
        if self.db is not None:
            stored, z = (zlib.compress(body, 1), 1) if len(body) > COMPRESS_ABOVE else (body, 0)
            acked, self.acked = self.acked, []
            self.db.execute("BEGIN IMMEDIATE")
            if acked:
                self.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in acked])
            self.db.execute(
                "INSERT INTO outbox(id, seq, ts, z, body) VALUES (?, ?, ?, ?, ?)",
                (self.seq, self.seq, message["ts"], z, stored),
            )
            self.db.execute("COMMIT")
            started = self.parts.add("store", started)
        if self.client is not None:
            info = self.client.publish(self.spec["topic"], body, qos=1)
            self.rows[info.mid] = self.seq
            self.mqtt_write()
            self.parts.add("mqtt", started)

    # -- paho on the loop ----------------------------------------------------------------------

    def mqtt_read(self) -> None:
        started = now_ns()
        assert self.client is not None
        rc = self.client.loop_read()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.fail(f"broker connection: {mqtt.error_string(rc)}")
        self.parts.add("mqtt", started)

    def mqtt_write(self) -> None:
        """paho writes at ``publish`` itself; only what it could not write waits for the
        socket to be writable."""
        client = self.client
        if client is None:
            return
        if client.want_write():
            client.loop_write()
        if client.want_write() != self.writing:
            self.writing = not self.writing
            if self.writing:
                self.loop.add_writer(self.sock, self.mqtt_write)
            else:
                self.loop.remove_writer(self.sock)

    def on_puback(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        row = self.rows.pop(mid, None)
        if row is not None and self.db is not None:
            self.acked.append(row)

    # -- stats and errors ----------------------------------------------------------------------

    def stats(self, path: Path) -> None:
        line = {
            "thread_ns": now_ns(),
            "parts": dict(self.parts.ns),
            "seq": self.seq,
            "raised": self.raised,
            "rows": self.db.execute("SELECT count(*) FROM outbox").fetchone()[0] if self.db else 0,
        }
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    def fail(self, error: str) -> None:
        if not self.stopped.done():
            self.error = error
            self.stopped.set_result(None)


def open_store(path: Path) -> sqlite3.Connection:
    """An SQLite file with the store's durability settings (gateway/store.py ``_connect``,
    ``_open_checked``)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("PRAGMA cache_size = -512")
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL").fetchone()
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA journal_size_limit = 8388608")
    db.execute(SCHEMA)
    return db


def stop(floor: Floor) -> None:
    if not floor.stopped.done():
        floor.stopped.set_result(None)


async def main(spec: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    floor = Floor(spec, loop)
    loop.add_signal_handler(signal.SIGUSR1, floor.stats, Path(spec["stats"]))
    loop.add_signal_handler(signal.SIGTERM, stop, floor)
    await floor.start()
    print("READY", flush=True)
    await floor.stopped
    if floor.error is not None:
        print(floor.error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
