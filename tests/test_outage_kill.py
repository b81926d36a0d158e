"""Power-cut stand-in: a process holding the store is killed with SIGKILL 20 times while it
raises alarms and stores telemetry. Every alarm it reported as stored must reach the broker;
telemetry may lose at most what was put within one commit interval before each kill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber

ROOT = "watchpost/v1/site1/gw1/"
COMMIT_INTERVAL = 0.2
KILLS = 20

# The driver: a gateway reduced to its store and uplink, fed by a fast producer. It prints
# one line per stored message: "A seq run n" once an alarm is durable, "T seq wall_time"
# once telemetry is queued.
DRIVER = r"""
import asyncio, json, sys, time
from pathlib import Path
from watchpost.outbox import Outbox
from watchpost.store import Store
from watchpost.config.store import StoreConfig
from watchpost.uplink import Uplink
from watchpost.config.uplink import UplinkConfig

def encode(body):
    return json.dumps(body, separators=(",", ":")).encode()

db, url, run, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

async def main():
    store = Store(StoreConfig(path=Path(db), commit_interval=float(sys.argv[5])))
    uplink = Uplink(UplinkConfig(broker=url, reconnect_min=0.05, reconnect_max=0.2),
                    Outbox(store, gateway="gw1"),
                    site="site1", gateway="gw1", version="test", boot_id=f"run-{run}",
                    health=dict)
    task = asyncio.create_task(uplink.run())
    if mode == "drain":
        while True:
            await asyncio.sleep(0.1)
            streams = store.backlog()["streams"]
            if uplink.connected and all(s["depth"] == 0 for s in streams.values()):
                break
        print("DRAINED", flush=True)
        return
    i = 0
    while True:
        i += 1
        seq = await store.put("telemetry", encode({"samples": [
            {"point": "p", "ts": 1, "value": i, "quality": "good"}]}), ts=1, durable=False)
        print(f"T {seq} {time.time():.4f}", flush=True)
        if i % 4 == 0:
            body = {"event": "raised", "alarm": "p/high", "point": "p", "rule": "high",
                    "kind": "high", "level": "alarm", "value": i, "threshold": 0,
                    "sample_ts": 1, "decided_ts": 1, "run": run, "n": i}
            seq = await store.put("alarms", encode(body), ts=1, durable=True)
            print(f"A {seq} {run} {i}", flush=True)
        await asyncio.sleep(0.005)

asyncio.run(main())
"""


def start_driver(script: Path, db: Path, url: str, run: int, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(db), url, str(run), mode, str(COMMIT_INTERVAL)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_sigkill_loses_no_reported_alarm(tmp_path: Path, broker: Broker, subscriber) -> None:
    sub: Subscriber = subscriber(ROOT + "alarms", ROOT + "telemetry")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    db = tmp_path / "buffer.db"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    alarms: dict[int, tuple[int, int]] = {}  # seq -> (run, n), as reported durable
    runs: list[tuple[list[tuple[int, float]], float]] = []  # telemetry (seq, put time), kill

    for run in range(KILLS):
        process = start_driver(script, db, broker.url, run, "produce")
        lines: list[str] = []
        first = threading.Event()

        def read(
            process: subprocess.Popen[str] = process,
            lines: list[str] = lines,
            first: threading.Event = first,
        ) -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                first.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert first.wait(20), "driver did not start"
        time.sleep(rng.uniform(0.3, 1.2))
        process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        process.wait(10)
        reader.join(10)
        telemetry = []
        for line in lines:
            kind, *rest = line.split()
            if kind == "A":
                alarms[int(rest[0])] = (int(rest[1]), int(rest[2]))
            elif kind == "T":
                telemetry.append((int(rest[0]), float(rest[1])))
        runs.append((telemetry, killed_at))

    drain = start_driver(script, db, broker.url, KILLS, "drain")
    assert drain.stdout is not None
    assert drain.stdout.readline().strip() == "DRAINED"
    drain.wait(10)

    got = {
        m["seq"]: (m["run"], m["n"])
        for m in sub.wait_for(
            ROOT + "alarms", predicate=lambda ms: {m["seq"] for m in ms} >= set(alarms), timeout=20
        )
    }
    assert all(got[seq] == reported for seq, reported in alarms.items())
    delivered = {m["seq"] for m in sub.get(ROOT + "telemetry")}
    assert delivered == set(range(1, max(delivered) + 1)), "telemetry seq has a gap"
    worst = 0.0
    for k, (telemetry, killed_at) in enumerate(runs):
        next_first = runs[k + 1][0][0][0] if k + 1 < len(runs) else max(delivered) + 1
        lost = [(seq, at) for seq, at in telemetry if seq >= next_first]
        if lost:
            worst = max(worst, killed_at - lost[0][1])
    print(
        f"seed {seed}: {len(alarms)} alarms reported and delivered; worst telemetry loss "
        f"window {worst:.3f} s (commit interval {COMMIT_INTERVAL} s)"
    )
    assert worst <= COMMIT_INTERVAL + 0.25
