"""Ten thousand gateways' reconnects against one real Mosquitto, through a broker restart.

    .venv/bin/python bench/fleet_connect.py [--gateways 10000] [--processes 4] [--down 10]
                                            [--spread 2] [--policy watchpost|fixed|both]
                                            [--sources 16] [--loop uvloop|asyncio]

``bench/fleet.py`` runs the whole uplink (store, outbox, paho) per gateway; that is too heavy
for 10,000 gateways on one machine. Here each simulated gateway is only what decides the
connection rate a broker sees: the real reconnect policy (``watchpost.reconnect``), deciding
every wait from the same failure kinds the uplink reports, over a real TCP connection and a
real MQTT 3.1.1 CONNECT/CONNACK to a real Mosquitto on loopback (keepalive 30 s, PINGREQ every
15 s, clean session, the uplink's client id and connect timeout). Nothing is published. The
fleet's processes run uvloop when it is installed (``pip install -e '.[bench]'``): it makes an
attempt about 3.5 times cheaper, and 10,000 gateways make 5,000 attempts a second.

The broker is stopped (all connections drop in the same instant) for ``--down`` seconds and
started again. Printed, per policy: connections accepted (CONNACK) per 0.1 s and per 1 s
after the broker listens again, measured by the gateways, and per 1 s from Mosquitto's own
log; time until all are back; attempts and failures by kind after the restart; the load
average of the machine before and after.

``fixed`` is the storm to compare with: a retry every 1 s, no jitter, whatever happened.
``--sources k`` spreads the gateways over the source addresses 127.0.0.1 ... 127.0.0.k, each
with its own ~28,000 ephemeral ports (``net.ipv4.ip_local_port_range``), for fleets larger
than one address can hold. The file limit (``ulimit -n``) must exceed the fleet for
Mosquitto, and the fleet / processes for each worker: the bench raises its soft limit to
the hard one, and Mosquitto inherits it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing as mp
import os
import pwd
import random
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from fleet import FixedInterval  # the storm, as bench/fleet.py runs it

from watchpost.config.uplink import UplinkConfig
from watchpost.reconnect import Failure, ReconnectPolicy, refusal

SITE = "fleet"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEFAULTS = UplinkConfig(broker="mqtt://127.0.0.1:1883")  # the uplink's own defaults
KEEPALIVE = DEFAULTS.keepalive


class Policy(Protocol):
    def after_session(self) -> float: ...
    def after_failure(self, failure: Failure) -> float: ...
    def connecting(self) -> None: ...


# -- the broker ----------------------------------------------------------------------------


class Broker:
    """Mosquitto on a loopback port, no connection limit, its log with epoch-second stamps."""

    def __init__(self, folder: Path, port: int) -> None:
        self.port = port
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root it would drop privileges
            "max_connections -1",
            "persistence false",
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type notice",
            "connection_messages true",
            "log_timestamp true",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start; return the wall-clock time at which the port accepts connections."""
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # inherits the raised file limit of main()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.005)
                continue
            return time.time()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
            self.process = None

    def started(self, since: float) -> list[str]:
        """The log lines of the broker's last start, stamped in seconds from ``since``."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(": ")
            if stamp.isdigit() and int(stamp) >= int(since) and "New client" not in rest:
                lines.append(f"{int(stamp) - int(since)}: {rest}")
        return lines[:6]

    def connects_per_second(self, since: float, what: str = "New client connected") -> list[int]:
        """Log lines starting with ``what`` per wall-clock second from ``since``: MQTT
        connections accepted by default, "New connection from" for TCP accepts."""
        seconds: Counter[int] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(": ")
            if rest.startswith(what) and stamp.isdigit() and int(stamp) >= int(since):
                seconds[int(stamp)] += 1
        if not seconds:
            return []
        return [seconds.get(s, 0) for s in range(int(since), max(seconds) + 1)]


# -- one gateway: the policy over a minimal MQTT 3.1.1 client -------------------------------


def connect_packet(client_id: str, keepalive: int) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, no will, no credentials."""
    cid = client_id.encode()
    body = (
        struct.pack("!H4sBBH", 4, b"MQTT", 4, 0x02, keepalive) + struct.pack("!H", len(cid)) + cid
    )
    return bytes([0x10, len(body)]) + body  # every id here keeps the body under 128 bytes


PINGREQ = b"\xc0\x00"


@dataclass
class Figures:
    """What one worker saw, after the restart mark."""

    connacks: list[float] = field(default_factory=list)  # wall-clock times, every gateway
    attempts: list[float] = field(default_factory=list)  # TCP connects started
    established: list[float] = field(default_factory=list)  # TCP connects that succeeded
    failures: Counter[str] = field(default_factory=Counter)
    back: dict[str, float] = field(default_factory=dict)  # first CONNACK after the restart
    due: dict[str, float] = field(default_factory=dict)  # when that attempt was due to start


class Gateway:
    def __init__(self, name: str, policy: Policy, source: str, port: int, figures: Figures):
        self.name = name
        self.policy = policy
        self.source = source
        self.port = port
        self.figures = figures
        self.sessions = 0
        self.restarted = False  # set by the worker when the broker was stopped
        self.due = time.time()  # when the policy wanted the current attempt to start

    async def run(self) -> None:
        while True:
            delay = await self._once()
            self.due = time.time() + delay
            await asyncio.sleep(delay)

    async def _once(self) -> float:
        """One attempt and, if it works, the session until the link is lost; the next wait."""
        timeout = DEFAULTS.connect_timeout
        if self.restarted:
            self.figures.attempts.append(time.time())
        try:
            async with asyncio.timeout(timeout + 1):  # not wait_for: no task per attempt
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(self.source, 0)
                )
        except (OSError, TimeoutError):
            return self._failed(Failure.UNREACHABLE)
        if self.restarted:
            self.figures.established.append(time.time())
        self.policy.connecting()
        try:
            writer.write(connect_packet(f"watchpost-{SITE}-{self.name}", KEEPALIVE))
            try:
                async with asyncio.timeout(timeout):
                    connack = await reader.readexactly(4)
            except TimeoutError:
                return self._failed(Failure.SLOW_DOWN)  # as the uplink: no CONNACK in time
            except (OSError, asyncio.IncompleteReadError):
                return self._failed(Failure.DROPPED)
            if connack[3] != 0:
                return self._failed(refusal(connack[3]))
            self._accepted()
            await self._session(reader, writer)
            return self.policy.after_session()  # the link carried a session: come back soon
        finally:
            writer.close()

    def _failed(self, failure: Failure) -> float:
        if self.restarted:
            self.figures.failures[failure.value] += 1
        return self.policy.after_failure(failure)

    def _accepted(self) -> None:
        self.sessions += 1
        now = time.time()
        if self.restarted:
            self.figures.connacks.append(now)
            if self.name not in self.figures.back:
                self.figures.back[self.name] = now
                self.figures.due[self.name] = self.due

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Ping every keepalive / 2 until the broker closes the link."""
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE / 2):
                    data = await reader.read(64)
            except TimeoutError:
                writer.write(PINGREQ)
                continue
            except OSError:
                return
            if not data:
                return


def worker(index: int, count: int, options: dict[str, Any], pipe: Connection) -> None:
    os.nice(options["nice"])  # the broker has a machine of its own at a site: let it go first
    if options["loop"] == "uvloop":
        import uvloop  # noqa: PLC0415 - optional, for the bench only

        uvloop.run(_worker(index, count, options, pipe))
    else:
        asyncio.run(_worker(index, count, options, pipe))


async def _worker(index: int, count: int, options: dict[str, Any], pipe: Connection) -> None:
    figures = Figures()
    sources = [f"127.0.0.{1 + k % options['sources']}" for k in range(count)]
    gateways = []
    for k in range(count):
        policy: Policy
        if options["policy"] == "fixed":
            policy = FixedInterval(1.0)
        else:
            policy = ReconnectPolicy(
                spread=options["spread"],
                initial=DEFAULTS.reconnect_min,
                cap=DEFAULTS.reconnect_max,
            )
        name = f"gw-{index:03d}-{k:05d}"
        gateways.append(Gateway(name, policy, sources[k], options["port"], figures))

    async def start(gateway: Gateway) -> None:
        await asyncio.sleep(random.uniform(0, options["ramp"]))  # a calm first start
        await gateway.run()

    tasks = [asyncio.create_task(start(g)) for g in gateways]
    loop = asyncio.get_running_loop()
    while not all(g.sessions for g in gateways):  # noqa: ASYNC110 (polls the gateways)
        await asyncio.sleep(0.1)
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)  # "stopping": the broker is about to stop
    for g in gateways:
        g.restarted = True
    deadline = time.monotonic() + options["patience"]
    while len(figures.back) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    pipe.send("back")
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(
        {
            "connacks": figures.connacks,
            "attempts": figures.attempts,
            "established": figures.established,
            "failures": dict(figures.failures),
            "back": list(figures.back.values()),
            "late": [figures.back[n] - figures.due[n] for n in figures.back],
        }
    )


# -- one run -------------------------------------------------------------------------------


def run(policy: str, options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One fleet, one broker restart; the figures."""
    gateways, processes = options["gateways"], options["processes"]
    port = _free_port()
    broker = Broker(folder, port)
    broker.start()
    context = mp.get_context("spawn")
    per = [gateways // processes + (1 if i < gateways % processes else 0) for i in range(processes)]
    pipes, workers = [], []
    for i, n in enumerate(per):
        ours, theirs = context.Pipe()
        process = context.Process(
            target=worker, args=(i, n, {**options, "policy": policy, "port": port}, theirs)
        )
        process.start()
        pipes.append(ours)
        workers.append(process)
    try:
        for pipe in pipes:
            if not pipe.poll(options["ramp"] + 120) or pipe.recv() != "ready":
                raise RuntimeError("the fleet did not connect")
        time.sleep(3)  # steady state
        load_before = os.getloadavg()
        counters_before = _kernel_counters()
        for pipe in pipes:
            pipe.send("stopping")
        broker.stop()
        time.sleep(options["down"])
        listening = broker.start()
        for pipe in pipes:
            pipe.poll(options["patience"] + 10)
            pipe.recv()  # "back", or patience ran out
        time.sleep(2)  # a tail of late attempts
        load_after = os.getloadavg()
        counters = _kernel_counters()
        counters.subtract(counters_before)
        for pipe in pipes:
            pipe.send("stop")
        results = [pipe.recv() for pipe in pipes]
    finally:
        for process in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        broker.stop()

    back = sorted(t - listening for r in results for t in r["back"])
    late = sorted(t for r in results for t in r["late"])
    connacks = [t - listening for r in results for t in r["connacks"]]
    attempts = [t - listening for r in results for t in r["attempts"] if t >= listening]
    established = [t - listening for r in results for t in r["established"]]
    failures: Counter[str] = Counter()
    for r in results:
        failures.update(r["failures"])
    tenths = _histogram(connacks, 0.1)
    seconds = _histogram(connacks, 1.0)
    return {
        "policy": policy,
        "gateways": gateways,
        "loop": options["loop"],
        "spread_s": options["spread"] if policy == "watchpost" else None,
        "down_s": options["down"],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "reconnected": len(back),
        "back_median_s": round(statistics.median(back), 2) if back else None,
        "back_p90_s": round(back[int(0.9 * (len(back) - 1))], 2) if back else None,
        "all_back_s": round(back[-1], 2) if len(back) == gateways else None,
        # how long after the policy wanted it the successful attempt was accepted: a loaded
        # bench (late timers, a busy broker) shows here, the policy's own spread does not
        "late_median_s": round(statistics.median(late), 3) if late else None,
        "late_p90_s": round(late[int(0.9 * (len(late) - 1))], 3) if late else None,
        "connacks_per_100ms": tenths,
        "connacks_per_s": seconds,
        "broker_log_connects_per_s": broker.connects_per_second(listening),
        "broker_log_accepts_per_s": broker.connects_per_second(listening, "New connection from"),
        "peak_per_100ms": max(tenths, default=0),
        "peak_per_s": max(seconds, default=0),
        "attempts_after_listening_per_s": _histogram(attempts, 1.0),
        "tcp_established_per_100ms": _histogram(established, 0.1),
        "broker_started": broker.started(listening),
        "failures_after_stop": dict(failures),
        "kernel_tcp_counters": {k: v for k, v in counters.items() if v},
    }


def _histogram(times: list[float], width: float) -> list[int]:
    """Counts per ``width`` seconds from 0 (the broker listening again)."""
    bins = Counter(int(t // width) for t in times if t >= 0)
    return [bins.get(b, 0) for b in range(max(bins) + 1)] if bins else []


KERNEL_COUNTERS = (
    "ListenOverflows",  # a connection dropped: the listener's accept queue was full
    "ListenDrops",
    "TCPReqQFullDrop",  # a SYN dropped: the half-open queue was full
    "TCPReqQFullDoCookies",
    "SyncookiesSent",
    "TCPTimeouts",  # retransmission timeouts (SYN retries among them)
    "TCPSynRetrans",
)


def _kernel_counters() -> Counter[str]:
    """The TCP counters that tell a listener's queue overflowing (all listeners on this
    host; Mosquitto's accept queue is 100 connections long, fixed in its code)."""
    counters: Counter[str] = Counter()
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split(), values.split(), strict=True))
            counters.update({k: int(table[k]) for k in KERNEL_COUNTERS if k in table})
    return counters


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--down", type=float, default=10.0, help="seconds the broker is down")
    parser.add_argument("--spread", type=float, default=DEFAULTS.reconnect_spread)
    parser.add_argument("--policy", choices=["watchpost", "fixed", "both"], default="both")
    parser.add_argument("--sources", type=int, default=1, help="loopback source addresses")
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which they start")
    parser.add_argument("--patience", type=float, default=90.0)
    parser.add_argument("--nice", type=int, default=0, help="niceness of the fleet's processes")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        help="event loop of the fleet's processes (uvloop: about 3.5 times less CPU a "
        "connection attempt; pip install -e '.[bench]')",
    )
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.gateways + 100:
        print(f"the file limit {hard} is below the fleet: raise `ulimit -Hn`", file=sys.stderr)
        return 1
    options = vars(args)
    policies = ["watchpost", "fixed"] if args.policy == "both" else [args.policy]
    for policy in policies:
        with tempfile.TemporaryDirectory(prefix=f"fleet-connect-{policy}-") as folder:
            figures = run(policy, options, Path(folder))
        print(json.dumps(figures), flush=True)
        print(_table(figures), flush=True)
    return 0


def _table(f: dict[str, Any]) -> str:
    spread = f" (spread {f['spread_s']:g} s)" if f["spread_s"] else ""
    return "\n".join(
        [
            f"policy {f['policy']}{spread}: {f['gateways']} gateways, broker down "
            f"{f['down_s']:g} s ({f['loop']}); load average {f['load_before']} -> "
            f"{f['load_after']}",
            f"  back: {f['reconnected']}, median {f['back_median_s']} s, 90% {f['back_p90_s']} s, "
            f"all {f['all_back_s']} s after the broker listened",
            f"  accepted after the policy's time: median {f['late_median_s']} s, "
            f"90% {f['late_p90_s']} s",
            f"  connections/s (gateways): {f['connacks_per_s'][:20]}",
            f"  connections/s (broker log): {f['broker_log_connects_per_s'][:20]}",
            f"  TCP accepts/s (broker log): {f['broker_log_accepts_per_s'][:20]}",
            f"  connections per 0.1 s: {f['connacks_per_100ms'][:40]}",
            f"  peak {f['peak_per_s']}/s, {f['peak_per_100ms']} per 0.1 s",
            f"  attempts/s after listening: {f['attempts_after_listening_per_s'][:20]}",
            f"  TCP established per 0.1 s: {f['tcp_established_per_100ms'][:40]}",
            f"  broker log at its start: {f['broker_started']}",
            f"  failures after the stop: {f['failures_after_stop']}, "
            f"TCP counters: {f['kernel_tcp_counters']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
