"""The daemon behind a broker that takes the connection but does not deliver (issue 11, 6).

A real daemon polls a real pymodbus server whose gas reading crosses an alarm threshold; its
primary broker is a misbehaving one written for these tests (``tests/misbehaving_broker.py``:
never a PUBACK, or a PUBACK and then the link dropped, every time); its backup is a real
Mosquitto. What the platform would see is read at the backup's subscriber.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from tests.conftest import Broker, Subscriber
from tests.kit.configs import alarm, device, gateway, point, tcp_bus, write_config
from tests.kit.net import free_port
from tests.kit.processes import Watchpost
from tests.kit.stored import put
from tests.misbehaving_broker import MisbehavingBroker
from tests.modbus_servers import device_context, tcp_server
from tests.test_crew_cli import crew
from tests.test_uplink import depth, make_uplink, running, until
from watchpost.config.store import StoreConfig
from watchpost.control import ControlError, request
from watchpost.store import Store

ROOT = "watchpost/v1/mine-7/gw-01/"
ACK_TIMEOUT = 2.0  # s, [uplink] ack_timeout in these tests (default 20 s)
LOW, HIGH = 500, 1500  # register values: 5 and 15 %LEL, the alarm is at 10


class GasServer:
    """A pymodbus TCP server in a thread of its own (the daemon is another process); its
    holding register 0 is the gas reading, in 0.01 %LEL."""

    def __init__(self, value: int) -> None:
        self.context = device_context({0: value})
        self.value = value
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Modbus server did not start")

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with tcp_server({1: self.context}) as port:
            self.port = port
            self._ready.set()
            await self._stop.wait()

    def set(self, value: int) -> None:
        """Write the reading over Modbus (function 6), as a second master would."""
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=5)
        try:
            assert client.connect(), "cannot reach the Modbus server"
            assert not client.write_register(0, value, device_id=1).isError()
        finally:
            client.close()
        self.value = value

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.fixture
def gas() -> Iterator[GasServer]:
    server = GasServer(HIGH)  # the alarm is up from the first poll
    yield server
    server.close()


def config_for(folder: Path, primary: str, backups: list[str], port: int, **uplink: Any) -> Path:
    document = gateway(
        primary,
        buses=[tcp_bus("plant", port)],
        devices=[
            device(
                "gas",
                "plant",
                point("gas_a", 0, alarm("high", threshold=10.0), scale=0.01, unit="%LEL"),
                interval=0.2,
            )
        ],
        uplink={
            "backup_brokers": backups,
            "ack_timeout": ACK_TIMEOUT,
            "keepalive": 5,
            "reconnect_spread": 0.5,  # the wait before the backup is within one spread
            **uplink,
        },
    )
    (folder / "var").mkdir(exist_ok=True)
    return write_config(folder / "gateway.toml", document)


def daemon(folder: Path, config: Path) -> Watchpost:
    return Watchpost("run", "--config", str(config), folder=folder, name="gateway")


def seqs(messages: list[Any]) -> set[int]:
    return {m["seq"] for m in messages if isinstance(m, dict)}


def decoded(messages: list[tuple[str, bytes]], topic: str) -> list[dict[str, Any]]:
    return [json.loads(payload) for name, payload in messages if name == topic]


@pytest.mark.slow
def test_an_alarm_held_by_a_broker_that_never_acknowledges_reaches_the_backup(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], gas: GasServer
) -> None:
    sub = subscriber(ROOT + "#")
    with MisbehavingBroker("no_puback") as bad:
        config = config_for(tmp_path, bad.url, [broker.url], gas.port)
        with daemon(tmp_path, config) as gw:
            gw.wait_ready()
            got = sub.wait_for(ROOT + "alarms", timeout=30)
            arrived = time.monotonic()
            health = sub.wait_for(
                ROOT + "health",
                timeout=10,
                predicate=lambda ms: any(m["uplink"].get("broker_role") == "backup" for m in ms),
            )
            assert gw.running(), gw.log()
            log = gw.log(20000)
        held_at = bad.first_seen(ROOT + "alarms")
    assert held_at is not None, "the alarm was never offered to the broken primary"
    assert got[0]["event"] == "raised"
    assert bad.acked() == []
    waited = arrived - held_at
    print(f"alarm at the backup {waited:.2f} s after the broken primary took it")
    # the deadline (ack_timeout), a connect to the backup, and a loaded machine's margin
    assert waited <= ACK_TIMEOUT + 4.0, waited
    uplink = next(m for m in health if m["uplink"].get("broker_role") == "backup")["uplink"]
    assert uplink["broker"] == f"127.0.0.1:{broker.port}"
    assert uplink["failover"]["primary"] == f"127.0.0.1:{bad.port}"
    assert "PUBACK" in uplink["failover"]["reason"]
    assert log.count("accepted the gateway but does not deliver") == 1, log


@pytest.mark.slow
def test_a_broker_that_drops_after_every_puback_does_not_hold_back_alarms(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], gas: GasServer
) -> None:
    sub = subscriber(ROOT + "#")
    stop = threading.Event()

    def toggle() -> None:  # the alarm goes up and down every 0.7 s, ten times
        for _ in range(10):
            if stop.wait(0.7):
                return
            gas.set(LOW if gas.value == HIGH else HIGH)

    with MisbehavingBroker("drop_after_puback") as bad:
        config = config_for(tmp_path, bad.url, [broker.url], gas.port)
        with daemon(tmp_path, config) as gw:
            gw.wait_ready()
            toggler = threading.Thread(target=toggle, daemon=True)
            toggler.start()
            sub.wait_for(
                ROOT + "telemetry",
                timeout=30,
                predicate=lambda ms: len(ms) >= 3,
            )
            toggler.join(15)
            time.sleep(2.0)  # the last events are stored and sent
            assert gw.stop() == 0, gw.log()
            log = gw.log(20000)
        stop.set()
        acked = bad.acked()
        acked_topics = [topic.rsplit("/", 1)[-1] for topic, _ in acked]
        connections = len(bad.connections)
    at_backup = {stream: sub.get(ROOT + stream) for stream in ("alarms", "telemetry")}
    for stream, messages in at_backup.items():
        delivered = seqs(messages) | seqs(decoded(acked, ROOT + stream))
        assert delivered, stream
        assert delivered == set(range(1, max(delivered) + 1)), f"{stream}: a gap in {delivered}"
    alarms = {m["seq"]: m["event"] for m in at_backup["alarms"]}
    alarms.update({m["seq"]: m["event"] for m in decoded(acked, ROOT + "alarms")})
    events = [alarms[s] for s in sorted(alarms)]
    print(
        f"{connections} connection(s) to the dropping primary, {len(acked)} message(s) it "
        f"acknowledged ({acked_topics}); at the backup {len(at_backup['alarms'])} alarm and "
        f"{len(at_backup['telemetry'])} telemetry message(s); alarm events {events}"
    )
    assert events.count("raised") >= 5, events  # every toggle's event is there
    assert len(acked) <= 3, acked  # three short links, then the backup
    assert "accepted the gateway but does not deliver" in log


@pytest.mark.slow
def test_the_gateway_returns_to_its_primary_once_it_is_back(
    tmp_path: Path,
    broker: Broker,
    subscriber: Callable[..., Subscriber],
    gas: GasServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    backup_sub = subscriber(ROOT + "#")
    primary = Broker(tmp_path_factory.mktemp("primary"))  # down at first
    # bound, not listening: connections are refused, and no other process (nor an outgoing
    # connection's source port) takes the port before the primary starts on it
    holder = socket.socket()
    holder.bind((primary.host, primary.port))
    failback = 3.0
    config = config_for(tmp_path, primary.url, [broker.url], gas.port, failback_after=failback)
    try:
        with daemon(tmp_path, config) as gw:
            gw.wait_ready()
            backup_sub.wait_for(ROOT + "telemetry", timeout=30)
            crews = crew(config, "status")  # what a crew at the cabinet reads
            holder.close()
            primary.start()
            started = time.monotonic()
            primary_sub = Subscriber(primary, ROOT + "#")
            try:
                got = primary_sub.wait_for(ROOT + "telemetry", timeout=failback + 15)
                back_after = time.monotonic() - started
                health = primary_sub.wait_for(
                    ROOT + "health",
                    timeout=10,
                    predicate=lambda ms: any(m["uplink"]["broker_role"] == "primary" for m in ms),
                )
                time.sleep(2 * failback)  # it stays: nothing more at the backup
                at_backup = len(backup_sub.get(ROOT + "telemetry"))
                time.sleep(1.0)
                assert len(backup_sub.get(ROOT + "telemetry")) == at_backup
                assert gw.stop() == 0, gw.log()
                telemetry = seqs(primary_sub.get(ROOT + "telemetry"))
            finally:
                primary_sub.close()
    finally:
        holder.close()
        primary.stop()
    print(f"telemetry at the primary {back_after:.2f} s after it listened (failback {failback} s)")
    assert got
    assert back_after <= failback + 6.0, back_after
    assert f"uplink: on the backup MQTT server 127.0.0.1:{broker.port}" in crews.stdout, crews
    assert f"the primary 127.0.0.1:{primary.port}: " in crews.stdout, crews
    assert any(m["uplink"]["failover"] is None for m in health)
    statuses = [m["state"] for m in backup_sub.get(ROOT + "status")]
    assert statuses[-1] == "offline", statuses  # it said goodbye to the backup
    both = telemetry | seqs(backup_sub.get(ROOT + "telemetry"))
    assert both == set(range(1, max(both) + 1)), "telemetry seq has a gap"


@pytest.mark.slow
def test_on_a_new_connection_waiting_alarms_go_before_status(
    tmp_path: Path, gas: GasServer
) -> None:
    port = free_port()  # the broker is not there yet: the alarm waits in the store
    holder = socket.socket()  # bound, not listening: refused, and kept from other processes
    holder.bind(("127.0.0.1", port))
    config = config_for(tmp_path, f"mqtt://127.0.0.1:{port}", [], gas.port)
    sock = tmp_path / "var" / "control.sock"
    with daemon(tmp_path, config) as gw:
        gw.wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if request(sock, "status", timeout=5)["alarms"]:
                    break
            except ControlError:
                pass
            time.sleep(0.1)
        time.sleep(0.5)  # stored (an alarm commits at once)
        holder.close()
        with MisbehavingBroker("ok", port=port) as recorder:
            wanted = {ROOT + "status", ROOT + "telemetry"}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not wanted <= {
                topic for topic, _ in recorder.published()
            }:
                time.sleep(0.05)
            topics = [topic for topic, _ in recorder.connections[0].published]
    assert wanted <= set(topics), topics
    assert topics[0] == ROOT + "alarms", topics
    assert topics.index(ROOT + "status") < topics.index(ROOT + "telemetry"), topics


def test_messages_held_by_a_broker_without_pubacks_stay_stored_until_one_acknowledges(
    tmp_path: Path,
) -> None:
    """No backup: the uplink leaves the silent broker at each deadline and tries it again;
    nothing leaves the store until a PUBACK, and once the broker acknowledges, all arrive."""
    uplink_root = "watchpost/v1/site1/gw1/"
    counted: dict[str, Any] = {}

    async def scenario(bad: MisbehavingBroker) -> None:
        store = Store(StoreConfig(path=tmp_path / "b.db", commit_interval=0.05))
        uplink = make_uplink(bad.url, store, ack_timeout=1.0, reconnect_max=0.5)
        async with running(uplink):
            for i in range(3):
                await put(store, "alarms", {"event": "raised", "n": i}, ts=i, durable=True)
            await until(lambda: len(bad.connections) >= 2, timeout=15)
            counted["depth_while_silent"] = depth(store, "alarms")
            counted["last_error"] = uplink.last_error
            bad.mode = "ok"
            await until(lambda: depth(store, "alarms") == 0, timeout=15)
        store.close()

    with MisbehavingBroker("no_puback") as bad:
        asyncio.run(scenario(bad))
        acked = decoded(bad.acked(), uplink_root + "alarms")
        offered = decoded(bad.published(), uplink_root + "alarms")
    assert counted["depth_while_silent"] == 3
    assert "no PUBACK within 1 s" in counted["last_error"]
    assert sorted({m["seq"] for m in acked}) == [1, 2, 3]
    assert len(offered) >= 6  # offered on the silent connections too, then again
