"""The power watch in the running daemon: a real Mosquitto, the gateway as a process, a
DL/T 645 meter (the tests' emulator) on a real pseudo-terminal drawing production power.

The platform sends `cmd/shutdown_order`; the alarm is raised within on_delay plus one poll and
names the order; `cmd/shutdown_cancel` clears it; the order is still there after a restart;
a malformed or overlapping order is answered with an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import Broker, Subscriber, free_port
from tests.dlt645_meter import Meter, MeterLine, bcd
from tests.site_run import stop, watchpost

ROOT = "watchpost/v1/quarry-3/gw-1/"
INTERVAL = 0.5
ON_DELAY = 2.0


def config_text(folder: Path, broker: Broker, port: str) -> str:
    return f"""
[gateway]
site = "quarry-3"
id = "gw-1"

[uplink]
broker = "{broker.url}"

[store]
path = "{folder}/buffer.db"

[control]
socket = "{folder}/control.sock"

[[buses]]
type = "dlt645"
name = "meters"
port = "{port}"

[[devices]]
name = "main-meter"
bus = "meters"
address = "000012345678"
interval = {INTERVAL}
timeout = 0.5

[[devices.points]]
name = "plant_power"
di = "02030000"
scale = 80.0

[[devices.points.alarms]]
kind = "production_during_shutdown"
threshold = 80.0
on_delay = {ON_DELAY}
"""


class Platform:
    """The platform's side: commands out, replies and events in."""

    def __init__(self, broker: Broker) -> None:
        self.sub = Subscriber(broker, ROOT + "#")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pf-{free_port()}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def command(self, name: str, body: dict[str, Any], timeout: float = 15.0) -> Any:
        topic = ROOT + f"cmd/{name}/reply"
        before = len(self.sub.get(topic))
        self.client.publish(ROOT + f"cmd/{name}", json.dumps(body), qos=1).wait_for_publish(5)
        return self.sub.wait_for(topic, count=before + 1, timeout=timeout)[before]

    def ready(self, attempts: int = 30) -> None:
        """Ping until the gateway answers: its command subscription is in place."""
        topic = ROOT + "cmd/ping/reply"
        for _ in range(attempts):
            before = len(self.sub.get(topic))
            self.client.publish(ROOT + "cmd/ping", "{}", qos=1).wait_for_publish(5)
            try:
                self.sub.wait_for(topic, count=before + 1, timeout=1.0)
                return
            except AssertionError:
                continue
        raise AssertionError("the gateway never answered a ping")

    def alarms(self) -> list[dict[str, Any]]:
        return self.sub.get(ROOT + "alarms")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.sub.close()


@pytest.fixture
def plant(tmp_path: Path, broker: Broker) -> Iterator[tuple[Path, Platform]]:
    meter = Meter("000012345678", {"02030000": bcd("052500")})  # 5.25 kW x 80 = 420 kW
    with MeterLine(meter) as line:
        config = tmp_path / "gateway.toml"
        config.write_text(config_text(tmp_path, broker, line.path))
        config.chmod(0o640)
        platform = Platform(broker)
        try:
            yield config, platform
        finally:
            platform.close()


def run_gateway(config: Path) -> Any:
    return watchpost(
        "run", "--config", str(config), cwd=config.parent, log=config.parent / "gw.log"
    )


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply.get("ok") is not False, reply
    assert "error" not in reply, reply
    return reply


def test_an_order_arms_the_watch_cancel_clears_it_and_it_survives_a_restart(plant, validate):
    config, platform = plant
    gateway = run_gateway(config)
    try:
        platform.sub.wait_for(ROOT + "telemetry", timeout=30)
        platform.ready()
        time.sleep(2 * ON_DELAY)
        assert platform.alarms() == []  # producing, but no order: no alarm

        now = int(time.time() * 1000)
        order = {"id": "flood-7", "start": now, "end": now + 3_600_000, "reason": "flood"}
        sent = time.monotonic()
        reply = ok(platform.command("shutdown_order", order))
        [raised] = platform.sub.wait_for(ROOT + "alarms", timeout=ON_DELAY + 10)
        took = time.monotonic() - sent
        assert raised["event"] == "raised"
        assert raised["kind"] == "production_during_shutdown"
        assert raised["order"] == "flood-7"
        assert raised["value"] == pytest.approx(420.0)
        assert took <= ON_DELAY + 2 * INTERVAL + 3.0  # on_delay, one poll, slack for the box
        validate("alarms", raised)
        assert json.dumps(reply).count("flood-7") >= 1

        overlapping = {"id": "other", "start": now + 60_000, "end": now + 120_000, "reason": "x"}
        refused = platform.command("shutdown_order", overlapping)
        assert "overlaps order 'flood-7'" in json.dumps(refused)
        malformed = platform.command("shutdown_order", {"id": "bad", "start": now + 5, "end": now})
        assert "end must be after start" in json.dumps(malformed) or "reason" in json.dumps(
            malformed
        )
    finally:
        assert stop(gateway) == 0

    gateway = run_gateway(config)  # a restart: the order is kept
    try:
        status = platform.sub.wait_for(
            ROOT + "status",
            timeout=30,
            predicate=lambda got: any(
                m.get("state") == "online" and m.get("shutdown_orders") for m in got[1:]
            ),
        )
        platform.ready()
        online = [m for m in status if m.get("state") == "online"][-1]
        assert [o["id"] for o in online["shutdown_orders"]] == ["flood-7"]
        assert online["shutdown_orders"][0]["state"] == "in_force"
        validate("status", online)

        ok(platform.command("shutdown_cancel", {"id": "flood-7"}))
        cleared = platform.sub.wait_for(
            ROOT + "alarms",
            timeout=15,
            predicate=lambda got: any(m["event"] == "cleared" for m in got),
        )
        assert [m["event"] for m in cleared] == ["raised", "cleared"]
        assert cleared[-1]["order"] == "flood-7"
        unknown = platform.command("shutdown_cancel", {"id": "nope"})
        assert "no order with id 'nope'" in json.dumps(unknown)
    finally:
        assert stop(gateway) == 0
