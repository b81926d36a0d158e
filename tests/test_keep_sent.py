"""The store keeps what the broker acknowledged for ``[store] keep_sent`` (gap repair).

Acknowledged rows move to the ``sent`` table with their bytes; ``fetch_sent`` frames them
again as replays; they expire after ``keep_sent`` and go first when the quota is reached
(other streams' before alarms'), before any unsent telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, Proxy, Subscriber
from tests.kit.stored import outbox, put
from watchpost.commands import CommandError
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig
from watchpost.resend import GapRepair, runs
from watchpost.store import Store
from watchpost.uplink import Uplink


def make(path: Path, **kwargs: object) -> Store:
    return Store(StoreConfig(path=path, **kwargs))


def acknowledge(store: Store, stream: str) -> list[int]:
    """Play the uplink: every waiting row of ``stream`` acknowledged; their seqs."""
    rows = store.fetch(stream, 0, 100_000)
    store.ack([row.id for row in rows])
    store.flush()
    return [row.seq for row in rows]


def sent_seqs(path: Path, stream: str) -> list[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq FROM sent WHERE stream = ? ORDER BY seq", (stream,))
        return [int(row[0]) for row in rows]
    finally:
        conn.close()


def test_acknowledged_rows_are_kept_and_framed_again_as_replays(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"

    async def scenario() -> None:
        store = make(path)
        try:
            for n in range(1, 6):
                body = {"n": n, "pad": "x" * 300}
                await put(store, "telemetry", body, ts=1000 + n, durable=False)
            await put(store, "alarms", {"alarm": "a/high", "event": "raised"}, ts=7, durable=True)
            store.flush()
            first = outbox(store).fetch("telemetry", 0, 10, replay_upto=0)
            assert acknowledge(store, "telemetry") == [1, 2, 3, 4, 5]
            assert store.fetch("telemetry", 0, 10) == []  # no longer waiting
            found = store.sent_range("telemetry", 2, 9)
            assert [seq for seq, _ in found.kept] == [2, 3, 4, 5]
            assert found.waiting == []
            assert found.last_seq == 5
            assert store.sent_range("alarms", 1, 1).waiting == [1]  # not yet acknowledged
            again = outbox(store).fetch_sent([row_id for _, row_id in found.kept])
            assert [out.seq for out in again] == [2, 3, 4, 5]
            assert all(out.resend for out in again)
            for before, after in zip(first[1:], again, strict=True):
                sent, replayed = json.loads(before.payload), json.loads(after.payload)
                assert replayed.pop("replay") is True
                assert replayed == sent  # same envelope, same body, same bytes kept
            assert store.backlog()["kept"] == {
                "telemetry": {"count": 5, "first_seq": 1, "last_seq": 5}
            }
        finally:
            store.close()

    asyncio.run(scenario())


def test_gap_repair_answers_which_seqs_are_resent_waiting_or_gone(tmp_path: Path) -> None:
    queued: list[list[int]] = []

    async def scenario() -> None:
        store = make(tmp_path / "buffer.db")
        try:
            for n in range(1, 9):
                await put(store, "telemetry", {"n": n}, ts=n, durable=False)
            store.flush()
            rows = store.fetch("telemetry", 0, 100)
            store.ack([row.id for row in rows if row.seq in (1, 2, 3, 5, 6)])
            store.flush()
            repair = GapRepair(store, lambda ids: queued.append(ids) is None)
            answer = await repair("telemetry", 2, 12)
            assert answer["resent"] == [[2, 3], [5, 6]]
            assert answer["waiting"] == [[4, 4], [7, 8]]
            assert answer["not_kept"] == []
            assert answer["last_seq"] == 8
            assert len(queued[0]) == 4
            with sqlite3.connect(store.path) as conn:  # as if dropped at the quota
                conn.execute("DELETE FROM sent WHERE seq = 3")
            answer = await repair("telemetry", 1, 8)
            assert answer["resent"] == [[1, 2], [5, 6]]
            assert answer["not_kept"] == [[3, 3]]
            busy = GapRepair(store, lambda ids: False)
            with pytest.raises(CommandError, match="ask again later"):
                await busy("telemetry", 1, 2)
        finally:
            store.close()

    asyncio.run(scenario())
    assert runs([9, 1, 2, 3, 7]) == [[1, 3], [7, 7], [9, 9]]


def test_sent_rows_expire_after_keep_sent(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"

    async def scenario() -> None:
        store = make(path, keep_sent=0.5)
        try:
            for n in range(3):
                await put(store, "alarms", {"n": n}, ts=n, durable=True)
            acknowledge(store, "alarms")
            assert sent_seqs(path, "alarms") == [1, 2, 3]
            await asyncio.sleep(1.2)  # past keep_sent, and past the writer's next expiry check
            await put(store, "alarms", {"n": 9}, ts=9, durable=True)  # a commit: housekeeping
            store.flush()
            assert sent_seqs(path, "alarms") == []
            assert store.sent_range("alarms", 1, 4).waiting == [4]
        finally:
            store.close()

    asyncio.run(scenario())


def test_keep_sent_zero_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"

    async def scenario() -> None:
        store = make(path, keep_sent=0)
        try:
            await put(store, "alarms", {"n": 1}, ts=1, durable=True)
            acknowledge(store, "alarms")
            assert sent_seqs(path, "alarms") == []
        finally:
            store.close()

    asyncio.run(scenario())


def test_the_quota_takes_sent_rows_first_and_alarms_last_before_unsent_telemetry(
    tmp_path: Path,
) -> None:
    """2 KiB incompressible bodies under a 0.25 MiB quota: 40 sent telemetry, 30 sent
    alarms, then unsent telemetry until the quota forces a choice."""
    path = tmp_path / "buffer.db"

    def body(n: int) -> dict[str, object]:
        return {"n": n, "noise": os.urandom(1024).hex()}

    async def scenario() -> None:
        store = make(path, quota_mb=0.25)
        try:
            for n in range(40):
                await put(store, "telemetry", body(n), ts=n, durable=False)
            store.flush()
            acknowledge(store, "telemetry")
            for n in range(30):
                await put(store, "alarms", body(n), ts=n, durable=True)
            acknowledge(store, "alarms")
            assert len(sent_seqs(path, "telemetry")) == 40
            unsent = 0
            # fill with unsent telemetry until the first sent rows are dropped
            while len(sent_seqs(path, "telemetry")) == 40 and unsent < 200:
                await put(store, "telemetry", body(unsent), ts=unsent, durable=False)
                store.flush()
                unsent += 1
            assert len(sent_seqs(path, "telemetry")) < 40  # the quota took sent telemetry
            assert len(sent_seqs(path, "alarms")) == 30  # sent alarms outlast it
            backlog = store.backlog()
            assert backlog["streams"]["telemetry"]["depth"] == unsent  # no unsent one lost
            assert backlog["evictions"] == {}
            # go on: while a sent alarm is kept, no unsent telemetry is evicted
            while sent_seqs(path, "alarms") and unsent < 400:
                assert sent_seqs(path, "telemetry") == [] or len(sent_seqs(path, "alarms")) == 30
                await put(store, "telemetry", body(unsent), ts=unsent, durable=False)
                store.flush()
                unsent += 1
                if sent_seqs(path, "alarms"):
                    assert store.backlog()["evictions"] == {}
            assert sent_seqs(path, "telemetry") == []
            assert sent_seqs(path, "alarms") == []
            # only now does unsent telemetry go
            for n in range(60):
                await put(store, "telemetry", body(n), ts=n, durable=False)
            store.flush()
            assert store.backlog()["evictions"]["telemetry"]["messages"] > 0
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_schema_3_store_gains_the_sent_table(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"

    async def fill() -> None:
        store = make(path)
        await put(store, "alarms", {"n": 1}, ts=1, durable=True)
        store.close()

    asyncio.run(fill())
    with sqlite3.connect(path) as conn:  # what a schema-3 gateway left
        conn.executescript(
            "DROP TABLE sent; UPDATE meta SET value = '3' WHERE key = 'schema_version';"
        )
    store = make(path)
    try:
        assert store.recovery is None
        acknowledge(store, "alarms")
        assert sent_seqs(path, "alarms") == [1]
        version = sqlite3.connect(path).execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        )
        assert version.fetchone()[0] == "4"
    finally:
        store.close()


# -- the uplink sends what cmd/resend queued: real Mosquitto --------------------------------

SITE, GW = "site1", "gw1"
ROOT = f"watchpost/v1/{SITE}/{GW}/"


def make_uplink(url: str, store: Store, **config: Any) -> Uplink:
    return Uplink(
        UplinkConfig(broker=url, reconnect_min=0.1, reconnect_max=0.5, **config),
        outbox(store, GW),
        site=SITE,
        gateway=GW,
        version="0.1.0",
        boot_id="boot-1",
        health=lambda: {"devices": {}},
    )


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_resend_cut_off_by_a_lost_link_goes_out_on_the_next(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "alarms")
    path = tmp_path / "b.db"

    async def scenario() -> None:
        store = Store(StoreConfig(path=path, commit_interval=0.05))
        uplink = make_uplink(proxy.url, store, keepalive=30)
        task = asyncio.create_task(uplink.run())
        try:
            for n in range(20):
                await put(store, "alarms", {"event": "raised", "n": n}, ts=n, durable=True)
            await until(lambda: len(sent_seqs(path, "alarms")) == 20)
            ids = [row_id for _, row_id in store.sent_range("alarms", 1, 20).kept]
            proxy.blackhole()  # what goes out now gets no PUBACK
            assert uplink.resend(ids)
            await until(lambda: uplink.stats["resent"] >= 20)
            proxy.reset()  # the link dies with the resends in flight
            proxy.heal()
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 40, 20)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert sent_seqs(path, "alarms") == list(range(1, 21))  # still kept, never re-acked
        assert store.backlog()["streams"]["alarms"]["depth"] == 0
        store.close()

    asyncio.run(scenario())
    got = sub.get(ROOT + "alarms")
    first, again = got[:20], got[20:]
    assert [m["seq"] for m in first] == list(range(1, 21))
    assert sorted(m["seq"] for m in again) == list(range(1, 21))  # each once more at least
    by_seq = {m["seq"]: m for m in first}
    for message in again:
        assert message == {**by_seq[message["seq"]], "replay": True}


def test_resends_never_hold_back_a_live_alarm(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """3,000 kept telemetry messages asked for again, a window of 32 in flight: an alarm
    raised meanwhile waits for one free slot at most, never for the repair."""
    sub = subscriber(ROOT + "alarms", ROOT + "telemetry")
    path = tmp_path / "b.db"
    batch = {
        "samples": [{"point": f"p{k}", "ts": k, "value": k, "quality": "good"} for k in range(300)]
    }
    published: list[int] = []

    async def scenario() -> None:
        store = Store(StoreConfig(path=path))
        uplink = make_uplink(broker.url, store, max_inflight=32)
        task = asyncio.create_task(uplink.run())
        try:
            for i in range(3000):
                await put(store, "telemetry", batch, ts=i, durable=False)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 3000, 60)
            await until(lambda: len(sent_seqs(path, "telemetry")) == 3000)
            ids = [row_id for _, row_id in store.sent_range("telemetry", 1, 3000).kept]
            assert uplink.resend(ids)
            await until(lambda: uplink.stats["resent"] >= 200)
            await put(store, "alarms", {"event": "raised"}, ts=1, durable=True)
            published.append(uplink.stats["resent"])  # resent before the alarm was stored
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 1)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 6000, 60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store.close()

    asyncio.run(scenario())
    topics = [m.topic for m in sub.raw]
    at = topics.index(ROOT + "alarms")
    assert published[0] < 3000  # the repair was still under way
    assert topics[3000:at].count(ROOT + "telemetry") <= published[0] + 32
    replays = sub.get(ROOT + "telemetry")[3000:]
    assert [m["seq"] for m in replays] == list(range(1, 3001))  # in order, each once
    assert all(m["replay"] is True for m in replays)
