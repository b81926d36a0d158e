"""The uplink in a fleet: back soon after a broker restart, MQTT 5 reason codes that say
"slow down" or "go elsewhere", and command topics outside the gateway's own prefix.

Real Mosquitto, and a small listener that answers CONNECT with a chosen CONNACK code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.connack_broker import ConnackBroker
from tests.kit.stored import put
from tests.test_outage import assert_complete_in_order, sample_batch
from tests.test_uplink import ROOT, make_uplink, running, until
from watchpost.config.store import StoreConfig
from watchpost.store import Store
from watchpost.uplink import TEXT_BROKEN, TEXT_BROKEN_WAIT, command_name


@pytest.mark.slow
def test_back_soon_after_each_broker_restart(
    tmp_path: Path, persistent_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Clean broker restarts, one after another: after each the gateway tries again within
    its spread, never judges the broker broken (which would make it back off longer and
    longer), and every message arrives once, in order. How soon it is back, measured over
    many restarts, is bench/reconnect.py's figure (docs/fleet.md)."""
    broker = persistent_broker
    sub = Subscriber(broker, ROOT + "#", client_id="platform", persistent=True)
    back_after: list[float] = []
    sent = {"n": 0}
    spread = 2.0

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.1))
        # the defaults a site gets: reconnect_spread 2 s, backoff 0.5 to 15 s
        uplink = make_uplink(
            broker.url, store, reconnect_spread=spread, reconnect_min=0.5, reconnect_max=15.0
        )
        async with running(uplink):
            await until(lambda: uplink.connected)
            for outage in (0.5, 3.0, 1.0, 6.0, 2.0):
                sent["n"] = await put(
                    store, "telemetry", sample_batch(sent["n"]), ts=1, durable=False
                )
                connects = uplink.stats["connects"]
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(outage)
                await asyncio.to_thread(broker.start)  # returns once the port listens
                listening = time.monotonic()
                await until(lambda c=connects: uplink.stats["connects"] > c, timeout=30)
                back_after.append(time.monotonic() - listening)
            sent["n"] = await put(store, "telemetry", sample_batch(sent["n"]), ts=1, durable=False)
            await asyncio.to_thread(store.flush)
            await asyncio.to_thread(
                sub.wait_for,
                ROOT + "telemetry",
                timeout=30,
                predicate=lambda ms: len({m["seq"] for m in ms}) >= sent["n"],
            )
        store.close()

    caplog.set_level(logging.INFO, logger="watchpost.uplink")
    try:
        asyncio.run(scenario())
        assert_complete_in_order(sub, "telemetry", sent["n"])
    finally:
        sub.close()
    print(f"back after broker listening: {[round(b, 2) for b in back_after]} s")
    verdicts = [r for r in caplog.records if r.msg in (TEXT_BROKEN_WAIT, TEXT_BROKEN)]
    assert verdicts == [], [r.getMessage() for r in verdicts]
    # attempts at a closed port come every 0.5 to 1.5 spreads: the first after the broker
    # listens comes within 1.5 spreads; the rest is room for a connect on a loaded machine,
    # far below what a backoff that grew towards its 15 s cap would wait
    assert max(back_after) <= 1.5 * spread + 3.0


def test_mqtt5_carries_the_streams(tmp_path: Path, broker: Broker, subscriber) -> None:
    sub: Subscriber = subscriber(ROOT + "#")

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        uplink = make_uplink(broker.url, store, protocol="mqtt5", session_expiry=60)
        async with running(uplink):
            for i in range(5):
                await put(store, "telemetry", sample_batch(i), ts=i, durable=False)
            await asyncio.to_thread(
                sub.wait_for, ROOT + "telemetry", timeout=10, predicate=lambda ms: len(ms) >= 5
            )
        store.close()

    asyncio.run(scenario())
    assert [m["seq"] for m in sub.get(ROOT + "telemetry")] == [1, 2, 3, 4, 5]
    assert sub.get(ROOT + "status")[0]["state"] == "online"


@pytest.mark.parametrize(
    ("code", "name"),
    [(0x89, "Server busy"), (0x97, "Quota exceeded"), (0x9F, "Connection rate exceeded")],
)
def test_slow_down_codes_make_the_gateway_wait_longer(
    tmp_path: Path, code: int, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    slow = ConnackBroker(code, reason="too many clients, come back later")
    counted: dict[str, int] = {}

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        # an unreachable broker would be tried every ~0.2 s with these settings: 30 in 6 s
        uplink = make_uplink(
            slow.url, store, protocol="mqtt5", reconnect_spread=0.2, reconnect_max=0.5
        )
        async with running(uplink):
            await asyncio.sleep(6.0)
            counted["connects"] = len(slow.connects)
            counted["refusal"] = uplink.stats["last_refusal"]["code"]
            counted["reason"] = uplink.stats["last_refusal"]["reason"]
        store.close()

    try:
        with caplog.at_level(logging.WARNING, logger="watchpost.uplink"):
            asyncio.run(scenario())
    finally:
        slow.close()
    assert 1 <= counted["connects"] <= 8, counted
    assert counted["refusal"] == code
    assert "too many clients, come back later" in counted["reason"]
    assert name in caplog.text
    assert "too many clients" in caplog.text


def test_use_another_server_is_followed_to_a_configured_broker(
    tmp_path: Path, broker: Broker, subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    # the primary sends the gateway to the real broker, listed as its second backup
    primary = ConnackBroker(0x9C, server=f"127.0.0.1:{broker.port}")
    unused = ConnackBroker(0x89)

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        uplink = make_uplink(
            primary.url, store, protocol="mqtt5", backup_brokers=[unused.url, broker.url]
        )
        async with running(uplink):
            await until(lambda: uplink.connected, timeout=10)
            await put(store, "telemetry", sample_batch(1), ts=1, durable=False)
            await asyncio.to_thread(sub.wait_for, ROOT + "telemetry", 1, timeout=10)
        store.close()

    try:
        with caplog.at_level(logging.WARNING, logger="watchpost.uplink"):
            asyncio.run(scenario())
    finally:
        primary.close()
        unused.close()
    assert len(primary.connects) == 1
    assert unused.connects == []  # the reference was followed, not the list
    assert f"127.0.0.1:{broker.port}, a configured broker" in caplog.text


def test_a_server_the_config_does_not_name_is_never_followed(
    tmp_path: Path, broker: Broker, subscriber
) -> None:
    sub: Subscriber = subscriber(ROOT + "#")
    primary = ConnackBroker(0x9D, server=f"127.0.0.1:{broker.port}")

    async def scenario() -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db"))
        uplink = make_uplink(primary.url, store, protocol="mqtt5", reconnect_spread=0.2)
        async with running(uplink):
            await until(lambda: len(primary.connects) >= 3, timeout=10)
            assert not uplink.connected
        store.close()

    try:
        asyncio.run(scenario())
    finally:
        primary.close()
    assert sub.get(ROOT + "status") == []  # it never went to the broker it was sent to


def test_only_the_gateways_own_command_topics_name_commands() -> None:
    root = ROOT
    assert command_name(root + "cmd/ping", root) == "ping"
    assert command_name(root + "cmd/ack", root) == "ack"
    for topic in (
        "watchpost/v1/mine-7/gw-02/cmd/ack",  # another gateway's
        "watchpost/v1/other/cmd/ack",
        root + "cmd/ack/reply",  # a reply, or anything deeper
        root + "cmd/",
        root + "telemetry",
    ):
        assert command_name(topic, root) is None, topic
