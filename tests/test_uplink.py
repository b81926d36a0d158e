"""The uplink against a real Mosquitto: delivery, PUBACK before delete, status and will,
outage and reconnect, commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.conftest import Broker, Proxy, Subscriber
from tests.kit.stored import outbox, put
from watchpost.clock import Clock
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig
from watchpost.store import Store
from watchpost.uplink import Uplink

SITE, GW = "site1", "gw1"
ROOT = f"watchpost/v1/{SITE}/{GW}/"
ALARM = {  # a raised alarm's body, as the engine makes it
    "event": "raised",
    "alarm": "ch4/high_alarm",
    "point": "ch4",
    "rule": "high_alarm",
    "kind": "high",
    "level": "alarm",
    "value": 1.2,
    "threshold": 1.0,
    "sample_ts": 1,
    "decided_ts": 2,
}


def make_uplink(url: str, store: Store, **config: Any) -> Uplink:
    config.setdefault("reconnect_min", 0.1)
    config.setdefault("reconnect_max", 0.5)
    config.setdefault("health_interval", 0.5)
    return Uplink(
        UplinkConfig(broker=url, **config),
        outbox(store, GW),
        site=SITE,
        gateway=GW,
        version="0.1.0",
        boot_id="boot-1",
        health=lambda: {"devices": {}},
    )


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def depth(store: Store, stream: str) -> int:
    return store.backlog()["streams"].get(stream, {}).get("depth", 0)


def test_delivers_in_order_and_forgets_after_puback(
    tmp_path: Path, broker: Broker, subscriber, validate
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        for i in range(50):  # stored before any connection: the backlog
            await put(
                store,
                "telemetry",
                {
                    "samples": [
                        {
                            "point": "ch4",
                            "ts": 1_700_000_000_000 + i,
                            "value": i / 10,
                            "quality": "good",
                        }
                    ]
                },
                ts=1_700_000_000_000 + i,
                durable=False,
            )
        await put(
            store,
            "alarms",
            dict(ALARM),
            ts=2,
            durable=True,
        )
        uplink = make_uplink(broker.url, store)
        async with running(uplink):
            await until(lambda: uplink.connected)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 50)
            live = await put(store, "telemetry", {"samples": []}, ts=3, durable=False)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 51)
            await until(lambda: depth(store, "telemetry") == 0 and depth(store, "alarms") == 0)
        store.close()
        telemetry = sub.get(ROOT + "telemetry")
        assert [m["seq"] for m in telemetry] == list(range(1, 52))
        assert all(m.get("replay") for m in telemetry[:50])
        assert telemetry[-1]["seq"] == live
        assert "replay" not in telemetry[-1]
        alarm = sub.get(ROOT + "alarms")[0]
        assert alarm["seq"] == 1
        assert alarm["replay"] is True
        validate("alarms", alarm)
        for message in telemetry[:-1]:
            validate("telemetry", message)
        # the stored alarm went out ahead of the telemetry backlog
        order = [m.topic for m in sub.raw if not m.topic.endswith(("status", "health"))]
        assert order.index(ROOT + "alarms") < 10

    asyncio.run(scenario())


def test_live_rows_beyond_the_window_go_out_as_pubacks_free_it(
    tmp_path: Path, broker: Broker, subscriber
) -> None:
    """A commit hands over more live rows than the window holds: each PUBACK makes room
    for the next at once (a PUBACK with nothing waiting wakes nobody), and every row is
    forgotten by the store once acknowledged."""
    sub: Subscriber = subscriber(ROOT + "telemetry")

    async def scenario() -> float:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        # two slots for telemetry: the rest of the window is the alarms'
        uplink = make_uplink(broker.url, store, max_inflight=10)
        async with running(uplink):
            await until(lambda: uplink.connected)
            live = await put(store, "telemetry", {"samples": []}, ts=0, durable=False)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 1)
            assert live == 1
            start = time.monotonic()
            for i in range(1, 121):  # in one turn of the loop: one commit, 120 rows
                await put(store, "telemetry", {"samples": []}, ts=i, durable=False)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 121, 20)
            took = time.monotonic() - start
            await until(lambda: depth(store, "telemetry") == 0)
        store.close()
        return took

    took = asyncio.run(scenario())
    assert [m["seq"] for m in sub.get(ROOT + "telemetry")] == list(range(1, 122))
    # 60 rounds of two rows: far less than the drain's once-a-second look would take
    assert took < 15, took


def test_rows_stay_until_the_broker_acknowledges(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber
) -> None:
    sub: Subscriber = subscriber(ROOT + "alarms")

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        uplink = make_uplink(proxy.url, store, keepalive=30)
        async with running(uplink):
            await until(lambda: uplink.connected)
            proxy.blackhole()  # the bytes leave the gateway, no PUBACK comes back
            for i in range(5):
                await put(store, "alarms", {"event": "raised", "n": i}, ts=i, durable=True)
            await until(lambda: uplink.stats["published"] >= 5)
            await asyncio.sleep(0.5)
            assert depth(store, "alarms") == 5  # sent, not acknowledged: kept
            proxy.reset()
            proxy.heal()
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 5)
            await until(lambda: depth(store, "alarms") == 0)
        store.close()
        assert [m["seq"] for m in sub.get(ROOT + "alarms")] == [1, 2, 3, 4, 5]

    asyncio.run(scenario())


def test_status_is_retained_and_the_will_says_offline(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber, validate
) -> None:
    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        uplink = make_uplink(proxy.url, store)
        watcher: Subscriber = subscriber(ROOT + "status")
        async with running(uplink):
            await until(lambda: uplink.connected)
            online = (await asyncio.to_thread(watcher.wait_for, ROOT + "status", 1))[0]
            late: Subscriber = subscriber(ROOT + "status")  # joins later: gets the retained one
            retained = (await asyncio.to_thread(late.wait_for, ROOT + "status", 1))[0]
            assert retained == online
            assert late.raw[0].retain
            proxy.reset()  # the gateway vanishes without DISCONNECT: the broker sends the will
            got = await asyncio.to_thread(
                watcher.wait_for,
                ROOT + "status",
                predicate=lambda ms: any(m["state"] == "offline" for m in ms),
            )
            will = next(m for m in got if m["state"] == "offline")
            await asyncio.to_thread(
                watcher.wait_for, ROOT + "status", predicate=lambda ms: ms[-1]["state"] == "online"
            )
        # a clean stop says offline itself
        got = await asyncio.to_thread(
            watcher.wait_for, ROOT + "status", predicate=lambda ms: ms[-1]["state"] == "offline"
        )
        store.close()
        assert online["state"] == "online"
        assert online["boot_id"] == "boot-1"
        assert will["seq"] == online["seq"] + 1
        for message in got:
            validate("status", message)

    asyncio.run(scenario())


def test_outage_every_seq_arrives(tmp_path: Path, persistent_broker: Broker) -> None:
    broker = persistent_broker
    sub = Subscriber(broker, ROOT + "#", client_id="platform", persistent=True)

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.1))
        uplink = make_uplink(broker.url, store)
        async with running(uplink):
            await until(lambda: uplink.connected)
            for i in range(30):
                if i == 10:
                    await asyncio.to_thread(broker.stop)
                if i == 20:
                    await until(lambda: not uplink.connected)
                    await asyncio.to_thread(broker.start)
                await put(store, "alarms", {"event": "raised", "n": i}, ts=i, durable=True)
                await put(store, "telemetry", {"samples": []}, ts=i, durable=False)
                await asyncio.sleep(0.05)
            await asyncio.to_thread(
                sub.wait_for,
                ROOT + "alarms",
                predicate=lambda ms: {m["seq"] for m in ms} >= set(range(1, 31)),
                timeout=20,
            )
            await asyncio.to_thread(
                sub.wait_for,
                ROOT + "telemetry",
                predicate=lambda ms: {m["seq"] for m in ms} >= set(range(1, 31)),
                timeout=20,
            )
        store.close()

    try:
        asyncio.run(scenario())
        for stream in ("alarms", "telemetry"):
            seqs = [m["seq"] for m in sub.get(ROOT + stream)]
            assert sorted(set(seqs)) == list(range(1, 31))
            firsts = list(dict.fromkeys(seqs))
            assert firsts == sorted(firsts)  # first arrivals in order
    finally:
        sub.close()


def test_commands_get_replies(tmp_path: Path, broker: Broker, subscriber, validate) -> None:
    sub: Subscriber = subscriber(ROOT + "cmd/+/reply")

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        uplink = make_uplink(broker.url, store)

        async def ping(request: dict) -> dict:
            return {"pong": request.get("n")}

        uplink.on_command("ping", ping)
        async with running(uplink):
            await until(lambda: uplink.connected)
            await asyncio.sleep(0.2)  # the subscription to cmd/+
            sub.client.publish(ROOT + "cmd/ping", json.dumps({"id": "r1", "n": 7}), qos=1)
            sub.client.publish(ROOT + "cmd/nope", b"{}", qos=1)
            await asyncio.to_thread(sub.wait_for, ROOT + "cmd/ping/reply", 1)
            await asyncio.to_thread(sub.wait_for, ROOT + "cmd/nope/reply", 1)
        store.close()
        reply = sub.get(ROOT + "cmd/ping/reply")[0]
        assert reply["ok"] is True
        assert reply["id"] == "r1"
        assert reply["result"] == {"pong": 7}
        assert sub.get(ROOT + "cmd/nope/reply")[0]["ok"] is False
        validate("reply", reply)

    asyncio.run(scenario())


def test_live_alarm_overtakes_the_telemetry_backlog(
    tmp_path: Path, broker: Broker, subscriber
) -> None:
    sub: Subscriber = subscriber(ROOT + "alarms", ROOT + "telemetry")
    batch = {
        "samples": [{"point": f"p{k}", "ts": k, "value": k, "quality": "good"} for k in range(300)]
    }

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        for i in range(3000):
            await put(store, "telemetry", batch, ts=i, durable=False)
        await asyncio.to_thread(store.flush)
        uplink = make_uplink(broker.url, store, max_inflight=32)
        async with running(uplink):
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 200, 20)
            await put(store, "alarms", {"event": "raised"}, ts=1, durable=True)
            published.append(uplink.stats["published"])  # sent before the alarm was stored
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 1)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 3000, 60)
        store.close()

    published: list[int] = []
    asyncio.run(scenario())
    topics = [m.topic for m in sub.raw]
    at = topics.index(ROOT + "alarms")
    # the alarm waited for one free slot at most, never for the rest of the backlog
    assert topics[:at].count(ROOT + "telemetry") <= published[0] + 32
    assert [m["seq"] for m in sub.get(ROOT + "telemetry")] == list(range(1, 3001))


def test_clock_sync_corrects_the_backlog_and_the_status(
    tmp_path: Path, broker: Broker, proxy: Proxy, subscriber, validate
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    state = {"synced": False}
    wall = [1_000.0]
    clock = Clock(
        lambda: state["synced"], boot_id="boot-x", wall=lambda: wall[0], monotonic=time.monotonic
    )

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"), clock=clock)
        uplink = Uplink(
            UplinkConfig(broker=proxy.url, reconnect_min=0.1, reconnect_max=0.3, connect_timeout=1),
            outbox(store, GW),
            site=SITE,
            gateway=GW,
            version="0.1.0",
            boot_id="boot-x",
            health=dict,
            clock=clock,
        )
        proxy.blackhole()  # offline while unsynced: the alarm waits in the store
        stamp = clock.now_ms()
        await put(
            store,
            "alarms",
            {
                "event": "raised",
                "alarm": "p/high",
                "point": "p",
                "rule": "high",
                "kind": "high",
                "level": "alarm",
                "value": 2.0,
                "threshold": 1.0,
                "sample_ts": stamp,
                "decided_ts": stamp,
            },
            ts=stamp,
            durable=True,
        )
        async with running(uplink):
            wall[0] = 1_700_000_000.0  # NTP answers
            state["synced"] = True
            await until(lambda: clock.synced, timeout=10)
            await asyncio.sleep(0.2)
            proxy.heal()
            await asyncio.to_thread(sub.wait_for, ROOT + "alarms", 1, 20)
            await asyncio.to_thread(
                sub.wait_for,
                ROOT + "status",
                predicate=lambda ms: ms and ms[-1]["clock"] == "synced",
            )
        store.close()

    asyncio.run(scenario())
    alarm = sub.get(ROOT + "alarms")[0]
    assert alarm["clock"] == "corrected"
    assert alarm["ts"] == alarm["decided_ts"]
    assert 1_699_999_900_000 < alarm["ts"] < 1_700_000_000_000
    validate("alarms", alarm)
