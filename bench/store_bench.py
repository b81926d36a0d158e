"""Store and uplink figures: ingest while offline, drain to a local broker, bytes per sample,
resident memory as the backlog grows. Prints figures; not part of the test run.

    .venv/bin/python bench/store_bench.py              # 5 M samples, about two minutes
    .venv/bin/python bench/store_bench.py --samples 1000000
    .venv/bin/python bench/store_bench.py --samples 1000000 --keep-sent 0   # acks delete

Telemetry is shaped like the daemon's: batches of 500 samples (the batcher's maximum), points
named like real ones, values a random walk at the resolution of a scaled 16-bit register,
stamps one poll period apart with a few ms of jitter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Broker
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig
from watchpost.messages import AlarmMessage, SampleReading, TelemetryBatch
from watchpost.outbox import Outbox
from watchpost.store import Store
from watchpost.uplink import Uplink

BATCH = 500
POINTS = 1000
KINDS = ("ch4_face", "co_face", "o2_face", "temp_belt", "tank_level", "tank_press", "kw_feeder")


def rss_mib() -> float:
    """Resident memory now (not the peak), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Site:
    """Samples of POINTS points polled once a second."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.names = [f"{KINDS[i % len(KINDS)]}_{i // len(KINDS) + 1}" for i in range(POINTS)]
        self.values = [self.rng.uniform(0, 100) for _ in range(POINTS)]
        self.t = 1_732_000_000_000
        self.index = 0

    def batch(self) -> list[SampleReading]:
        out: list[SampleReading] = []
        for _ in range(BATCH):
            i = self.index
            self.values[i] += self.rng.gauss(0, 0.05)
            out.append(
                {
                    "point": self.names[i],
                    "ts": self.t + self.rng.randrange(0, 40),
                    "value": round(self.values[i], 2),
                    "quality": "good",
                }
            )
            self.index += 1
            if self.index == POINTS:
                self.index = 0
                self.t += 1000
        return out


_OUTBOXES: dict[int, Outbox] = {}


def outbox_of(store: Store) -> Outbox:
    """The one outbox over ``store``."""
    return _OUTBOXES.setdefault(id(store), Outbox(store, gateway="gw1"))


async def ingest(store: Store, site: Site, samples: int, marks: list[int]) -> dict:
    """Put ``samples`` offline as fast as the store takes them; RSS at each mark."""
    rss = {0: rss_mib()}
    start = time.perf_counter()
    done = 0
    while done < samples:
        await outbox_of(store).put(TelemetryBatch.of(site.batch()), ts=site.t)
        done += BATCH
        if done % (BATCH * 200) == 0:
            await asyncio.sleep(0)  # let the writer's listener callbacks run
        if marks and done >= marks[0]:
            await asyncio.to_thread(store.flush)
            rss[marks.pop(0)] = rss_mib()
    await asyncio.to_thread(store.flush)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss": rss}


async def drain(store: Store, url: str) -> tuple[float, int]:
    uplink = Uplink(
        UplinkConfig(broker=url, max_inflight=256, health_interval=3600),
        outbox_of(store),
        site="bench",
        gateway="gw1",
        version="bench",
        boot_id="bench",
        health=dict,
    )
    depth = store.backlog()["streams"]["telemetry"]["depth"]
    task = asyncio.create_task(uplink.run())
    start = time.perf_counter()
    peak = rss_mib()
    while store.backlog()["streams"]["telemetry"]["depth"] > 0:
        await asyncio.sleep(0.5)
        peak = max(peak, rss_mib())
    seconds = time.perf_counter() - start
    task.cancel()
    with_suppress = asyncio.gather(task, return_exceptions=True)
    await with_suppress
    print(f"  RSS during the drain: peak {peak:.1f} MiB")
    return seconds, depth


async def durable(folder: Path, count: int = 500) -> None:
    """Alarms: one fsync'd commit each, awaited one by one or issued together."""
    store = Store(StoreConfig(path=folder / "alarms.db"))
    alarm = AlarmMessage(
        event="raised",
        alarm="ch4_face_1/high_alarm",
        point="ch4_face_1",
        rule="high_alarm",
        kind="high",
        level="alarm",
        value=1.1,
        threshold=1.0,
        sample_ts=1,
        decided_ts=1,
    )
    outbox = outbox_of(store)
    start = time.perf_counter()
    for _ in range(count):
        await outbox.put(alarm, ts=1)
    one_by_one = count / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*(outbox.put(alarm, ts=1) for _ in range(count)))
    together = count / (time.perf_counter() - start)
    store.close()
    print(
        f"durable alarms: {one_by_one:,.0f}/s awaited one by one (one fsync each), "
        f"{together:,.0f}/s issued together (one fsync per batch)"
    )


async def main(samples: int, folder: Path, keep_sent: float) -> None:
    path = folder / "buffer.db"
    store = Store(StoreConfig(path=path, quota_mb=100_000, keep_sent=keep_sent))
    marks = [m for m in (1_000_000, 5_000_000) if m <= samples]
    await durable(folder)
    print(f"ingest offline: {samples:,} samples in batches of {BATCH}")
    result = await ingest(store, Site(), samples, marks)
    backlog = store.backlog()
    per_sample = backlog["used_bytes"] / samples
    print(
        f"  {samples / result['seconds']:,.0f} samples/s "
        f"({samples / BATCH / result['seconds']:,.0f} messages/s)"
    )
    print(
        f"  {per_sample:.1f} bytes on disk per sample "
        f"(store {backlog['used_bytes'] / 2**20:.1f} MiB used, "
        f"file+WAL {backlog['bytes'] / 2**20:.1f} MiB)"
    )
    for mark, mib in result["rss"].items():
        print(f"  RSS at a backlog of {mark:>9,} samples: {mib:.1f} MiB")
    quota = StoreConfig(path=path).quota_mb * 2**20
    for rate in (1000, 100):
        print(
            f"  default quota ({quota / 2**20:.0f} MiB) holds "
            f"{quota / per_sample / rate / 3600:,.1f} h of outage at {rate} points/s"
        )
    broker = Broker(folder)
    broker.start()
    try:
        seconds, depth = await drain(store, broker.url)
    finally:
        broker.stop()
    print(
        f"drain to a local Mosquitto: {depth:,} messages in {seconds:.1f} s: "
        f"{depth / seconds:,.0f} messages/s, {samples / seconds:,.0f} samples/s "
        f"(keep_sent {keep_sent:g} s)"
    )
    await asyncio.to_thread(store.flush)
    kept = store.backlog()
    if keep_sent > 0:  # what gap repair costs on disk: the sent rows kept
        per_kept = kept["used_bytes"] / samples
        print(
            f"  kept after sending: {kept['used_bytes'] / 2**20:.1f} MiB, "
            f"{per_kept:.1f} bytes per sample; a day kept at 100 points/s: "
            f"{per_kept * 100 * 86400 / 2**20:,.0f} MiB"
        )
    store.close()
    print(
        f"peak RSS of the whole run: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB"
    )


async def fill_quota(folder: Path) -> None:
    """Fill a store with the default quota until the first eviction: the outage it holds."""
    path = folder / "quota.db"
    store = Store(StoreConfig(path=path))
    site = Site()
    done, start = 0, time.perf_counter()
    while True:
        await outbox_of(store).put(TelemetryBatch.of(site.batch()), ts=site.t)
        done += BATCH
        if done % (BATCH * 1000) == 0:
            await asyncio.to_thread(store.flush)
            evictions = store.backlog()["evictions"]
            if evictions:
                held = done - evictions["telemetry"]["items"]
                break
    store.close()
    quota = StoreConfig(path=path).quota_mb
    print(
        f"default quota {quota:.0f} MiB filled in {time.perf_counter() - start:.0f} s: "
        f"first eviction after {done:,} samples, {held:,} held"
    )
    for rate in (1000, 100):
        print(f"  = {held / rate / 3600:,.1f} h of outage at {rate} points/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes")
    parser.add_argument(
        "--keep-sent", type=float, default=86400, help="[store] keep_sent: 0 deletes on ack"
    )
    parser.add_argument(
        "--fill-quota",
        action="store_true",
        help="instead: fill the default quota and report the outage it holds",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        asyncio.run(
            fill_quota(Path(folder))
            if args.fill_quota
            else main(args.samples, Path(folder), args.keep_sent)
        )
