"""The telemetry batcher and the store: the batches of one flush go into one commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from tests.kit.stored import outbox
from watchpost.config.store import StoreConfig
from watchpost.messages import AlarmMessage, SampleReading, TelemetryBatch
from watchpost.samples import Quality, Sample
from watchpost.store import Store
from watchpost.telemetry import EARLY_FLUSH_BATCHES, TelemetryBatcher
from watchpost.ticks import sleep_to_tick


def test_the_batches_of_one_flush_are_committed_together(tmp_path: Path) -> None:
    """1,200 samples at 500 a message: three messages, in order, handed over in one commit
    (the writer does not wake for the first while the next is encoded)."""
    path = tmp_path / "buffer.db"
    commits: list[list[int]] = []

    async def scenario() -> list[int]:
        store = Store(StoreConfig(path=path, commit_interval=0.2))
        store.add_listener(lambda rows: commits.append([r.seq for r in rows]))
        box = outbox(store)
        seqs: list[int] = []

        async def put(batches: list[list[SampleReading]]) -> None:
            seqs.extend(await box.put_all([TelemetryBatch.of(b) for b in batches]))

        batcher = TelemetryBatcher(put, interval=60, max_samples=500)
        try:
            batcher.add(
                [Sample(f"p{i}", 1_000 + i, float(i), Quality.GOOD, 0) for i in range(1200)]
            )
            await batcher.flush()
            await asyncio.to_thread(store.flush)
        finally:
            store.close()
        return seqs

    assert asyncio.run(scenario()) == [1, 2, 3]
    assert commits == [[1, 2, 3]]
    conn = sqlite3.connect(path)
    try:
        stored = conn.execute("SELECT seq, items, z, body FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    points: list[str] = []
    for seq, items, z, body in stored:
        samples = json.loads(zlib.decompress(body) if z else body)["samples"]
        assert items == len(samples), seq
        points.extend(s["point"] for s in samples)
    assert [items for _seq, items, _z, _body in stored] == [500, 500, 200]
    assert points == [f"p{i}" for i in range(1200)]


def test_the_batcher_flushes_on_the_tick_also_past_one_message() -> None:
    """More samples than one message holds wait for the tick, then go in one hand-over;
    only far more (EARLY_FLUSH_BATCHES messages) are flushed before it."""
    interval = 0.5

    async def scenario() -> list[tuple[float, list[int]]]:
        loop = asyncio.get_running_loop()
        puts: list[tuple[float, list[int]]] = []

        async def put(batches: list[list[SampleReading]]) -> None:
            puts.append((loop.time(), [len(b) for b in batches]))

        batcher = TelemetryBatcher(put, interval=interval, max_samples=500)
        task = asyncio.create_task(batcher.run())
        try:
            await sleep_to_tick(interval)
            await asyncio.sleep(interval / 5)
            batcher.add([Sample(f"p{i}", i, 1.0, Quality.GOOD, 0) for i in range(1200)])
            added = loop.time()
            await asyncio.sleep(interval / 2)
            assert puts == []  # not before the tick
            while not puts:
                assert loop.time() - added < 3 * interval
                await asyncio.sleep(0.01)
            batcher.add(
                [Sample("q", i, 1.0, Quality.GOOD, 0) for i in range(500 * EARLY_FLUSH_BATCHES)]
            )
            early = loop.time()
            while len(puts) < 2:
                assert loop.time() - early < 3 * interval
                await asyncio.sleep(0.005)
            assert puts[1][0] - early < interval / 4  # flushed at once, not at the tick
            return puts
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    puts = asyncio.run(scenario())
    assert puts[0][1] == [500, 500, 200]
    assert puts[1][1] == [500] * EARLY_FLUSH_BATCHES


def test_put_all_takes_batched_streams_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "buffer.db"))
        try:
            alarm = AlarmMessage(
                event="raised",
                alarm="ch4/high",
                point="ch4",
                rule="high",
                kind="high",
                level="alarm",
                value=1.2,
                threshold=1.0,
                sample_ts=1,
                decided_ts=2,
            )
            with pytest.raises(TypeError, match="alarms"):
                await outbox(store).put_all([alarm])
        finally:
            store.close()

    asyncio.run(scenario())
