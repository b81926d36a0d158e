"""One gateway's uplink against a real Mosquitto restarted many times: how soon it is back.

    .venv/bin/python bench/reconnect.py [--restarts 20] [--spread 2] [--seed 1]

The real uplink (``watchpost.uplink.Uplink``) over its own store, with a site's defaults
(``reconnect_spread`` 2 s, backoff 0.5 to 15 s). Before each restart one telemetry message is
stored; the broker (Mosquitto on 127.0.0.1, persistence on) is stopped for an outage drawn
from 0.5 to 6 s, then started again. Printed: for each restart, the seconds from the broker
listening again until the gateway's next CONNACK; their median and 90th percentile; the load
average before and after. The target (issue 16): median <= 2 s. Restarts are at least
``CYCLE`` apart, so that the gateway's own limit of ``MAX_CONNECTS`` connections a minute
(brokers ban clients that connect more often) does not hold it back.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import Broker, _free_port
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig
from watchpost.messages import TelemetryBatch
from watchpost.outbox import Outbox
from watchpost.reconnect import CONNECT_WINDOW, MAX_CONNECTS
from watchpost.store import Store
from watchpost.uplink import Uplink

CYCLE = 1.1 * CONNECT_WINDOW / MAX_CONNECTS  # seconds from one broker stop to the next


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the uplink did not connect in time")
        await asyncio.sleep(0.005)


async def measure(folder: Path, restarts: int, spread: float, seed: int) -> list[float]:
    broker = Broker(folder, _free_port())
    broker.start()
    store = Store(StoreConfig(path=folder / "gateway.db", commit_interval=0.1))
    outbox = Outbox(store, gateway="gw-1")
    config = UplinkConfig(
        broker=f"mqtt://127.0.0.1:{broker.port}",
        reconnect_spread=spread,
        reconnect_min=0.5,
        reconnect_max=15.0,
    )
    uplink = Uplink(
        config,
        outbox,
        site="bench",
        gateway="gw-1",
        version="bench",
        boot_id="bench",
        health=lambda: {"devices": {}},
    )
    outages = random.Random(seed)
    back_after: list[float] = []
    task = asyncio.create_task(uplink.run())
    try:
        await _until(lambda: uplink.connected, 30)
        for n in range(restarts):
            await outbox.put(
                TelemetryBatch.of(
                    [{"point": "p", "ts": int(time.time() * 1000), "value": n, "quality": "good"}]
                )
            )
            await asyncio.sleep(0.3)
            connects = uplink.stats["connects"]
            cycle_started = time.monotonic()
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(outages.uniform(0.5, 6.0))
            listening = await asyncio.to_thread(broker.start)
            await _until(lambda c=connects: uplink.stats["connects"] > c, 60)
            back_after.append(time.monotonic() - listening)
            # a gateway connects at most 10 times a minute (reconnect.MAX_CONNECTS): restarts
            # closer together than that measure the flapping guard, not the reconnect
            await asyncio.sleep(max(0.0, CYCLE - (time.monotonic() - cycle_started)))
            print(f"restart {n + 1:2d}: back {back_after[-1]:5.2f} s after the broker listened")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
        broker.stop()
    return back_after


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--spread", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        back = asyncio.run(measure(Path(tmp), args.restarts, args.spread, args.seed))
    after = os.getloadavg()[0]
    ordered = sorted(back)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    print(
        f"{len(back)} restarts, reconnect_spread {args.spread} s: back after the broker "
        f"listened, median {statistics.median(back):.2f} s, p90 {p90:.2f} s, "
        f"max {max(back):.2f} s (load average {before:.1f} -> {after:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
