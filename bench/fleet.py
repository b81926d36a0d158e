"""A fleet of gateway uplinks against one real Mosquitto, through a broker restart.

    .venv/bin/python bench/fleet.py [--gateways 1000] [--processes 10] [--down 10]
                                    [--policy watchpost|fixed|both]

Each simulated gateway is the real uplink (``watchpost.uplink.Uplink``) over its own store
(SQLite, its own file) and outbox, many per process. Every gateway sends one telemetry
message a second. The broker (Mosquitto on 127.0.0.1, persistence on) is stopped for
``--down`` seconds and started again. A platform subscriber with a persistent session counts
what arrives. Printed, per policy:

- connections per second at the broker after the restart (from Mosquitto's log),
- time from the broker listening again until every gateway is connected,
- time until every backlog has drained,
- messages lost (a seq the platform never saw that was not still unsent in its gateway's
  store when the bench stopped) and duplicated.

``fixed`` replaces the reconnect policy with a fixed 1 s retry interval and no jitter, as
many MQTT clients do by default: the reconnect storm to compare with.

Broker settings it needs, and a site's broker for a fleet this size needs too: no
``max_connections`` limit below the fleet (default: none), a file-descriptor limit above the
fleet size (the bench raises Mosquitto's to 65536), and enough in-flight and queued
messages for the platform's subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import pwd
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig
from watchpost.messages import TelemetryBatch
from watchpost.outbox import Outbox
from watchpost.reconnect import Failure, ReconnectPolicy
from watchpost.store import Store
from watchpost.uplink import Uplink

SITE = "fleet"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# -- the broker ----------------------------------------------------------------------------


class Broker:
    """Mosquitto on a loopback port, its log with epoch-second stamps."""

    def __init__(self, folder: Path, port: int) -> None:
        self.port = port
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root it would drop
                    "persistence true",
                    f"persistence_location {folder}/",
                    "max_queued_messages 0",
                    "max_inflight_messages 0",
                    "set_tcp_nodelay true",
                    f"log_dest file {self.log}",
                    "log_type notice",
                    "connection_messages true",
                    "log_timestamp true",
                ]
            )
            + "\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start; return the monotonic time at which the port accepts connections."""

        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # inherits the raised file limit of main()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return time.monotonic()
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def connects_per_second(self, since_epoch: float) -> list[int]:
        """New client connections per second after ``since_epoch`` (gateways only)."""
        seconds: Counter[int] = Counter()
        pattern = re.compile(r"^(\d+): New client connected .* as watchpost-")
        for line in self.log.read_text(errors="replace").splitlines():
            match = pattern.match(line)
            if match and int(match.group(1)) >= int(since_epoch):
                seconds[int(match.group(1))] += 1
        if not seconds:
            return []
        first = int(since_epoch)
        return [seconds.get(s, 0) for s in range(first, max(seconds) + 1)]


# -- one worker process: many uplinks ------------------------------------------------------


class FixedInterval:
    """The storm: retry every ``interval`` seconds, no jitter, whatever happened."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def after_session(self) -> float:
        return self.interval

    def after_failure(self, _failure: object) -> float:
        return self.interval

    def moving_on(self) -> float:
        return self.interval

    def at_once(self) -> float:
        return self.interval

    def connecting(self) -> None:
        pass


class Scheduled:
    """Wraps a gateway's policy: when its next attempt is due, and its failures by kind.

    The gap between that due time and the gateway being back is the bench's own delay (a
    busy CPU, a busy broker); the due time itself is what the policy chose."""

    def __init__(self, policy: ReconnectPolicy | FixedInterval) -> None:
        self.policy = policy
        self.due = time.monotonic()
        self.failures: Counter[str] = Counter()

    def after_session(self) -> float:
        return self._due(self.policy.after_session())

    def after_failure(self, failure: Failure) -> float:
        self.failures[failure.value] += 1
        return self._due(self.policy.after_failure(failure))

    def moving_on(self) -> float:
        return self._due(self.policy.moving_on())

    def at_once(self) -> float:
        return self._due(self.policy.at_once())

    def connecting(self) -> None:
        self.policy.connecting()

    def _due(self, delay: float) -> float:
        self.due = time.monotonic() + delay
        return delay


def worker(index: int, count: int, *, port: int, folder: str, policy: str, plan: Any) -> None:
    """Run ``count`` gateways until told to stop; put their figures on ``plan['results']``."""
    asyncio.run(_worker(index, count, port=port, folder=Path(folder), policy=policy, plan=plan))


async def _worker(
    index: int, count: int, *, port: int, folder: Path, policy: str, plan: Any
) -> None:
    logging.basicConfig(level=logging.ERROR)
    # each simulated gateway is a box of its own: give every one a thread for its blocking
    # connect, as it would have, instead of asyncio's default pool of cores + 4
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2 * count + 8))
    gateways = []
    for k in range(count):
        name = f"gw-{index:03d}-{k:04d}"
        store = Store(StoreConfig(path=folder / f"{name}.db", commit_interval=1.0))
        outbox = Outbox(store, gateway=name)
        uplink = Uplink(
            UplinkConfig(broker=f"mqtt://127.0.0.1:{port}", health_interval=3600),
            outbox,
            site=SITE,
            gateway=name,
            version="bench",
            boot_id=f"boot-{name}",
            health=dict,
        )
        chosen = FixedInterval(1.0) if policy == "fixed" else uplink._policy
        uplink._policy = Scheduled(chosen)  # type: ignore[assignment]
        gateways.append((name, store, outbox, uplink))

    tasks = [asyncio.create_task(u.run()) for _, _, _, u in gateways]
    sent = dict.fromkeys((g[0] for g in gateways), 0)
    back_at: dict[str, float] = {}
    drained_at: dict[str, float] = {}

    async def produce(name: str, outbox: Outbox) -> None:
        n = 0
        while not plan["stop_producing"].is_set():
            n += 1
            batch = TelemetryBatch.of(
                [
                    {
                        "point": "p",
                        "ts": int(time.time() * 1000),
                        "value": float(n),
                        "quality": "good",
                    }
                ]
            )
            sent[name] = await outbox.put(batch)
            await asyncio.sleep(1.0)

    producers = [asyncio.create_task(produce(n, o)) for n, _, o, _ in gateways]
    while not all(u.connected for *_, u in gateways):  # noqa: ASYNC110 (polls the uplinks)
        await asyncio.sleep(0.05)
    plan["ready"].put(index)
    connects_before = {n: u.stats["connects"] for n, _, _, u in gateways}
    for *_, uplink in gateways:
        uplink._policy.failures.clear()  # type: ignore[attr-defined]
    due_at: dict[str, float] = {}
    await asyncio.to_thread(plan["restarted"].wait)
    deadline = time.monotonic() + plan["patience"]
    while time.monotonic() < deadline and len(drained_at) < len(gateways):
        now = time.monotonic()
        for name, store, _, uplink in gateways:
            if name not in back_at and uplink.stats["connects"] > connects_before[name]:
                back_at[name] = now
                due_at[name] = uplink._policy.due  # type: ignore[attr-defined]
            if (
                name in back_at
                and name not in drained_at
                and store.backlog()["streams"].get("telemetry", {}).get("depth", 0) == 0
            ):
                drained_at[name] = now  # the outage's backlog is out; new rows flow live
        await asyncio.sleep(0.05)
    for task in (*producers, *tasks):
        task.cancel()
    await asyncio.gather(*producers, *tasks, return_exceptions=True)
    unsent: dict[str, list[int]] = {}  # seqs still in the store when the bench stopped
    for name, store, _, _ in gateways:
        store.flush()
        queued = store.backlog()["streams"].get("telemetry", {})
        if queued.get("depth"):
            unsent[name] = [queued["first_seq"], queued["last_seq"]]
        store.close()
    failures: Counter[str] = Counter()
    for *_, uplink in gateways:
        failures.update(uplink._policy.failures)  # type: ignore[attr-defined]
    plan["results"].put(
        {
            "sent": sent,
            "back_at": back_at,
            "drained_at": drained_at,
            "due_at": due_at,
            "failures": dict(failures),
            "unsent": unsent,
        }
    )


# -- the platform --------------------------------------------------------------------------


class Platform:
    """A persistent-session subscriber that records (gateway, seq) of every telemetry."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fleet-platform", clean_session=False
        )
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 0.5)
        topic = f"watchpost/v1/{SITE}/+/telemetry"
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self._lock:
            self.seen.append((body["gateway"], body["seq"]))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- one run -------------------------------------------------------------------------------


def run(policy: str, gateways: int, processes: int, down: float, folder: Path) -> dict[str, Any]:
    """One fleet, one broker restart; the figures."""
    port = _free_port()
    broker = Broker(folder, port)
    broker.start()
    platform = Platform(port)
    context = mp.get_context("spawn")
    manager = context.Manager()
    plan = {
        "ready": manager.Queue(),
        "results": manager.Queue(),
        "restarted": manager.Event(),
        "stop_producing": manager.Event(),
        "patience": 120.0,
    }
    per = [gateways // processes + (1 if i < gateways % processes else 0) for i in range(processes)]
    workers = [
        context.Process(
            target=worker,
            args=(i, n),
            kwargs={"port": port, "folder": str(folder), "policy": policy, "plan": plan},
        )
        for i, n in enumerate(per)
        if n
    ]
    for w in workers:
        w.start()
    for _ in workers:
        plan["ready"].get(timeout=300)
    time.sleep(5)  # steady state
    broker.stop()
    time.sleep(down)
    restart_epoch = time.time()
    listening = broker.start()
    plan["restarted"].set()
    time.sleep(10)
    plan["stop_producing"].set()
    results = [plan["results"].get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    time.sleep(2)
    platform.close()
    broker.stop()

    sent: dict[str, int] = {}
    back: list[float] = []
    drained: list[float] = []
    chosen: list[float] = []  # when the policy had the successful attempt start
    late: list[float] = []  # how long after that the gateway was seen back
    failures: Counter[str] = Counter()
    for result in results:
        sent.update(result["sent"])
        back += [t - listening for t in result["back_at"].values()]
        drained += [t - listening for t in result["drained_at"].values()]
        chosen += [max(0.0, result["due_at"][n] - listening) for n in result["back_at"]]
        late += [t - result["due_at"][n] for n, t in result["back_at"].items()]
        failures.update(result["failures"])
    seen = Counter(platform.seen)
    unsent: dict[str, list[int]] = {}
    for result in results:
        unsent.update(result["unsent"])
    missing = [(g, s) for g, last in sent.items() for s in range(1, last + 1) if (g, s) not in seen]
    # a seq the platform did not see is lost unless it was still in its gateway's store,
    # unsent, when the bench stopped the uplinks (it would go out at the next connection)
    kept = [(g, s) for g, s in missing if g in unsent and unsent[g][0] <= s <= unsent[g][1]]
    lost = len(missing) - len(kept)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    rate = broker.connects_per_second(restart_epoch)
    tenths = Counter(int(t * 10) for t in back)
    return {
        "policy": policy,
        "gateways": gateways,
        "down_s": down,
        "reconnected": len(back),
        "back_median_s": round(statistics.median(back), 2) if back else None,
        "all_back_s": round(max(back), 2) if len(back) == gateways else None,
        "policy_wait_median_s": round(statistics.median(chosen), 2) if chosen else None,
        "policy_wait_max_s": round(max(chosen), 2) if chosen else None,
        "late_median_s": round(statistics.median(late), 2) if late else None,
        "late_max_s": round(max(late), 2) if late else None,
        "failures_after_restart": dict(failures),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "drained": len(drained),
        "all_drained_s": round(max(drained), 2) if len(drained) == gateways else None,
        "connects_per_s": rate,
        "peak_connects_per_s": max(rate, default=0),
        "peak_connects_per_100ms": max(tenths.values(), default=0),
        "sent": sum(sent.values()),
        "not_seen": len(missing),
        "still_in_store": len(kept),
        "lost": lost,
        "duplicated": duplicated,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--down", type=float, default=10.0, help="seconds the broker is down")
    parser.add_argument("--policy", choices=["watchpost", "fixed", "both"], default="both")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    policies = ["watchpost", "fixed"] if args.policy == "both" else [args.policy]
    for policy in policies:
        with tempfile.TemporaryDirectory(prefix=f"fleet-{policy}-") as folder:
            figures = run(policy, args.gateways, args.processes, args.down, Path(folder))
        print(json.dumps(figures))
        print(_table(figures), flush=True)
    return 0


def _table(f: dict[str, Any]) -> str:
    rate = f["connects_per_s"]
    lines = [
        f"policy {f['policy']}: {f['gateways']} gateways, broker down {f['down_s']:g} s",
        f"  reconnected {f['reconnected']}, median {f['back_median_s']} s, "
        f"all back after {f['all_back_s']} s (from the broker listening)",
        f"  connections per second after the restart: {rate[:15]}"
        + (" ..." if len(rate) > 15 else ""),
        f"  peak {f['peak_connects_per_s']} connections in one second, "
        f"{f['peak_connects_per_100ms']} in one tenth of a second",
        f"  the policy had the attempt start {f['policy_wait_median_s']} s after the broker "
        f"listened (median; max {f['policy_wait_max_s']}), the bench took "
        f"{f['late_median_s']} s more (median; max {f['late_max_s']})",
        f"  failures after the stop: {f['failures_after_restart']}; "
        f"load average {f['load_average']}",
        f"  every backlog drained after {f['all_drained_s']} s ({f['drained']} drained)",
        f"  sent {f['sent']}, lost {f['lost']}, duplicated {f['duplicated']} (not seen by the "
        f"platform {f['not_seen']}, of which still unsent in the stores {f['still_in_store']})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
