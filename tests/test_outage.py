"""Store-and-forward under fire: broker restarts, a silent dead link, a full quota, a damaged
store, backup brokers. Real Mosquitto, real sockets, bounded in time."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, Proxy, Subscriber
from tests.kit.net import free_port
from tests.kit.stored import put
from tests.test_uplink import ALARM, ROOT, depth, make_uplink, running, until
from watchpost.config.store import StoreConfig
from watchpost.store import Store


def sample_batch(i: int, points: int = 10) -> dict:
    return {
        "samples": [
            {
                "point": f"p{k}",
                "ts": 1_700_000_000_000 + i * 1000,
                "value": i + k,
                "quality": "good",
            }
            for k in range(points)
        ]
    }


def assert_complete_in_order(sub: Subscriber, stream: str, last: int) -> None:
    seqs = [m["seq"] for m in sub.get(ROOT + stream)]
    assert sorted(set(seqs)) == list(range(1, last + 1)), f"{stream}: missing seqs"
    firsts = list(dict.fromkeys(seqs))
    assert firsts == sorted(firsts), f"{stream}: order broken"


@pytest.mark.slow
def test_ten_broker_restarts_lose_nothing(tmp_path: Path, persistent_broker: Broker) -> None:
    broker = persistent_broker
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sub = Subscriber(broker, ROOT + "#", client_id="platform", persistent=True)
    counts = {"alarms": 0, "telemetry": 0}

    async def produce(store: Store, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            counts["telemetry"] = await put(
                store, "telemetry", sample_batch(i), ts=i, durable=False
            )
            if i % 5 == 0:
                counts["alarms"] = await put(store, "alarms", dict(ALARM), ts=i, durable=True)
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.2))
        uplink = make_uplink(broker.url, store)
        stop = asyncio.Event()
        async with running(uplink):
            producer = asyncio.create_task(produce(store, stop))
            for _ in range(10):
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(rng.uniform(0.1, 0.8))
                await asyncio.to_thread(broker.start)
            stop.set()
            await producer
            await asyncio.to_thread(store.flush)
            try:
                for stream in ("alarms", "telemetry"):
                    await asyncio.to_thread(
                        sub.wait_for,
                        ROOT + stream,
                        timeout=30,
                        predicate=lambda ms, n=counts[stream]: len({m["seq"] for m in ms}) >= n,
                    )
            except AssertionError:
                got = {m["seq"] for m in sub.get(ROOT + stream)}
                missing = sorted(set(range(1, counts[stream] + 1)) - got)
                raise AssertionError(
                    f"{stream}: missing {missing[:20]}, store: "
                    f"{store.backlog()['streams']}, "
                    f"uplink: {uplink.stats}"
                ) from None
        store.close()

    try:
        asyncio.run(scenario())
        assert counts["alarms"] > 10
        for stream, last in counts.items():
            assert_complete_in_order(sub, stream, last)
    finally:
        sub.close()
    print(f"seed {seed}: {counts}")


@pytest.mark.slow
def test_silent_dead_link_is_detected_within_one_and_a_half_keepalives(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    keepalive = 5
    detected: list[float] = []
    last = {"alarms": 0}

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.1))
        uplink = make_uplink(proxy.url, store, keepalive=keepalive, connect_timeout=2)
        async with running(uplink):
            await until(lambda: uplink.connected)
            for i in range(5):
                last["alarms"] = await put(store, "alarms", dict(ALARM), ts=i, durable=True)
            await until(lambda: depth(store, "alarms") == 0)
            await asyncio.sleep(1.0)
            proxy.blackhole()  # no FIN, no RST: the bytes just stop
            start = time.monotonic()
            for i in range(20):  # alarms keep coming while the link is dead
                last["alarms"] = await put(store, "alarms", dict(ALARM), ts=i, durable=True)
                if not uplink.connected and not detected:
                    detected.append(time.monotonic() - start)
                await asyncio.sleep(0.1)
            await until(lambda: not uplink.connected, timeout=1.5 * keepalive + 1)
            if not detected:
                detected.append(time.monotonic() - start)
            proxy.reset()
            proxy.heal()
            await asyncio.to_thread(
                sub.wait_for,
                ROOT + "alarms",
                timeout=20,
                predicate=lambda ms: {m["seq"] for m in ms} >= set(range(1, last["alarms"] + 1)),
            )
            await until(lambda: depth(store, "alarms") == 0)
        store.close()

    asyncio.run(scenario())
    print(f"dead link detected after {detected[0]:.2f} s (keepalive {keepalive} s)")
    assert detected[0] <= 1.5 * keepalive
    assert_complete_in_order(sub, "alarms", last["alarms"])


def test_quota_reached_during_outage(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber, validate
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    rng = random.Random(7)
    noise = [
        {"point": f"p{k}", "ts": 1_700_000_000_000 + k, "value": rng.random(), "quality": "good"}
        for k in range(200)
    ]

    async def scenario() -> dict:
        proxy.blackhole()  # the uplink is down from the start
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05, quota_mb=0.4))
        uplink = make_uplink(proxy.url, store, connect_timeout=0.5)
        async with running(uplink):
            for i in range(300):
                await put(store, "telemetry", {"samples": noise}, ts=i, durable=False)
                if i % 10 == 0:
                    await put(store, "alarms", dict(ALARM), ts=i, durable=True)
            await asyncio.to_thread(store.flush)
            backlog = store.backlog()
            assert not uplink.connected
            proxy.reset()
            proxy.heal()
            await until(lambda: uplink.connected, timeout=10)
            await until(
                lambda: depth(store, "telemetry") == 0 and depth(store, "alarms") == 0, timeout=20
            )
            await asyncio.to_thread(sub.wait_for, ROOT + "health", 1, 5)
        store.close()
        return backlog

    backlog = asyncio.run(scenario())
    evicted = backlog["evictions"]["telemetry"]["messages"]
    assert evicted > 0
    assert_complete_in_order(sub, "alarms", 30)  # every alarm, none evicted
    seqs = sorted({m["seq"] for m in sub.get(ROOT + "telemetry")})
    assert seqs == list(range(evicted + 1, 301))  # the oldest telemetry went first
    health = sub.get(ROOT + "health")[-1]
    validate("health", health)
    assert health["backlog"]["evictions"]["telemetry"]["messages"] == evicted
    assert health["backlog"]["evictions"]["telemetry"]["last_seq_range"][1] == evicted


def test_damaged_store_is_reported_to_the_platform(
    tmp_path: Path, broker: Broker, subscriber, validate
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    path = tmp_path / "buffer.db"
    path.write_bytes(b"\x00garbage" * 1000)

    async def scenario() -> None:
        store = Store(StoreConfig(path=path))
        uplink = make_uplink(broker.url, store)
        async with running(uplink):
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 1)
            await asyncio.to_thread(sub.wait_for, ROOT + "health", 1)
        store.close()

    asyncio.run(scenario())
    alarm = sub.get(ROOT + "alarms")[0]
    validate("alarms", alarm)
    assert alarm["kind"] == "store_damaged"
    assert alarm["level"] == "fault"
    assert Path(alarm["moved_to"]).exists()
    assert sub.get(ROOT + "health")[-1]["backlog"]["recovered"]["moved_to"] == alarm["moved_to"]


def test_backup_broker_takes_over(tmp_path: Path, broker: Broker, subscriber) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    dead_primary = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        uplink = make_uplink(dead_primary, store, backup_brokers=[broker.url])
        async with running(uplink):
            for i in range(5):
                await put(store, "alarms", dict(ALARM), ts=i, durable=True)
            await until(lambda: uplink.connected)
            assert uplink.stats["broker"] == f"{broker.host}:{broker.port}"
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 5)
            await until(lambda: depth(store, "alarms") == 0)
        store.close()

    asyncio.run(scenario())
    assert_complete_in_order(sub, "alarms", 5)
