"""Local outputs on a real pymodbus TCP server: written, read back, and faults when they fail."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from tests.kit import configs
from tests.modbus_servers import KnownUnitsOnly, device_context, silent_server, tcp_server
from watchpost.alarms import AlarmEngine, AlarmEvent
from watchpost.config import ConfigError, load_config
from watchpost.config.alarms import AlarmRule
from watchpost.config.outputs import OutputConfig
from watchpost.drivers import modbus_tcp
from watchpost.drivers.base import ReadRequest, Table
from watchpost.drivers.modbus_tcp_bus import ModbusTcpBus
from watchpost.outputs import OutputDriver, fault_levels
from watchpost.poller import BusScheduler
from watchpost.samples import Quality, Sample

T0 = 1_700_000_000_000
RULES = TypeAdapter(list[AlarmRule]).validate_python(
    [
        {"kind": "high", "level": "prealarm", "threshold": 0.8},
        {"kind": "high", "level": "alarm", "threshold": 1.0},
        {"kind": "high", "level": "critical", "threshold": 1.5, "deadband": 0.5},
    ]
)


@dataclass
class Device:
    name: str
    bus: str
    unit: int


def tcp_bus(name: str, port: int) -> ModbusTcpBus:
    return modbus_tcp.create(
        modbus_tcp.Config(type="modbus_tcp", name=name, host="127.0.0.1", port=port)
    )


class Rig:
    """An engine, an output driver on one TCP bus, and a clock of sample times."""

    def __init__(
        self,
        port: int,
        outputs: Sequence[dict[str, Any]],
        *,
        retry_cap: float = 30.0,
        restore: dict[str, Any] | None = None,
    ) -> None:
        self.configs = [OutputConfig(**{"device": "station", **o}) for o in outputs]
        self.engine = AlarmEngine(
            {"ch4": RULES, "co": RULES}, lambda: self.ts, outputs=fault_levels(self.configs)
        )
        self.engine.restore(restore)
        self.scheduler = BusScheduler(tcp_bus("face", port), [], lambda _s: None)
        self.emitted: list[AlarmEvent] = []
        self.driver = OutputDriver(
            self.configs,
            engine=self.engine,
            devices=[Device("station", "face", 1)],
            schedulers={"face": self.scheduler},
            emit=self.emitted.append,
            retry_cap=retry_cap,
        )
        self.ts = T0
        self.probe = tcp_bus("probe", port)

    def feed(self, value: float, point: str = "ch4") -> list[AlarmEvent]:
        self.ts += 1000
        return self.engine.evaluate([Sample(point, self.ts, value, Quality.GOOD)])

    async def read(self, table: Table, address: int) -> int:
        return int((await self.probe.read(ReadRequest(1, table, address, 1), timeout=1.0))[0])

    def faults(self) -> list[tuple[str, str]]:
        return [(e.event, e.alarm) for e in self.emitted]

    @contextlib.asynccontextmanager
    async def running(self):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(self.driver.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.probe.close()
            await self.scheduler.bus.close()


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate() if asyncio.iscoroutinefunction(predicate) else not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_a_coil_follows_the_alarm_and_is_read_back() -> None:
    async def scenario() -> None:
        async with (
            tcp_server({1: device_context()}) as port,
            Rig(port, [{"name": "beacon", "address": 3, "points": ["ch4"]}]).running() as rig,
        ):
            await until(lambda: rig.driver.status()["beacon"]["verified"] is False)
            rig.feed(0.9)  # a prealarm does not drive it by default
            await asyncio.sleep(0.1)
            assert await rig.read(Table.COIL, 3) == 0
            rig.feed(1.1)
            await until(lambda: rig.driver.status()["beacon"]["verified"] is True)
            assert await rig.read(Table.COIL, 3) == 1
            rig.feed(0.1, point="co")  # another point's alarms are not its business
            rig.feed(0.5)
            await until(lambda: rig.driver.status()["beacon"]["verified"] is False)
            assert await rig.read(Table.COIL, 3) == 0
            assert rig.emitted == []
            assert rig.driver.status()["beacon"]["fault"] is None

    asyncio.run(scenario())


def test_a_sounder_falls_silent_once_every_alarm_driving_it_is_acknowledged() -> None:
    async def scenario() -> None:
        output = {
            "name": "sounder",
            "table": "holding",
            "address": 7,
            "on": 2,
            "off": 0,
            "until": "ack",
        }
        async with tcp_server({1: device_context()}) as port, Rig(port, [output]).running() as rig:
            rig.feed(1.6)  # alarm and critical
            await until(lambda: rig.driver.status()["sounder"]["verified"] is True)
            assert await rig.read(Table.HOLDING, 7) == 2
            rig.engine.acknowledge("ch4/high_critical", by="crew")
            await asyncio.sleep(0.1)
            assert await rig.read(Table.HOLDING, 7) == 2  # one alarm still unacknowledged
            rig.engine.acknowledge("ch4/high_alarm", by="crew")
            await until(lambda: rig.driver.status()["sounder"]["verified"] is False)
            assert await rig.read(Table.HOLDING, 7) == 0
            rig.feed(1.2, point="co")  # a new alarm sounds again
            await until(lambda: rig.driver.status()["sounder"]["verified"] is True)

    asyncio.run(scenario())


def test_an_output_left_on_is_switched_off_at_start() -> None:
    async def scenario() -> None:
        async with (
            tcp_server({1: device_context(coils={4: True})}) as port,
            Rig(port, [{"name": "relay", "address": 4}]).running() as rig,
        ):
            await until(lambda: rig.driver.status()["relay"]["verified"] is False)
            assert await rig.read(Table.COIL, 4) == 0

    asyncio.run(scenario())


def test_restored_alarms_drive_outputs_from_the_start() -> None:
    async def scenario() -> None:
        async with tcp_server({1: device_context()}) as port:
            first = Rig(port, [{"name": "relay", "address": 4}])
            first.feed(1.2)
            # a restart: the engine takes the saved state before the driver starts
            rig = Rig(port, [{"name": "relay", "address": 4}], restore=first.engine.snapshot())
            async with rig.running():
                await until(lambda: rig.driver.status()["relay"]["verified"] is True)
                assert await rig.read(Table.COIL, 4) == 1

    asyncio.run(scenario())


def test_shelved_and_unselected_alarms_do_not_drive_an_output() -> None:
    async def scenario() -> None:
        outputs = [
            {"name": "power_cut", "address": 0, "levels": ["critical"], "points": ["ch4"]},
            {"name": "faults", "address": 1, "levels": ["fault"], "kinds": ["comm_loss"]},
        ]
        rig = Rig(1, outputs)  # run() is never started: no I/O
        rig.feed(1.2)
        assert rig.driver.status()["power_cut"]["on"] is False
        rig.feed(1.6, point="co")
        assert rig.driver.status()["power_cut"]["on"] is False
        rig.feed(1.6)
        assert rig.driver.status()["power_cut"]["alarms"] == ["ch4/high_critical"]
        rig.engine.shelve("ch4/high_critical", by="crew", reason="relay test", duration_s=60)
        assert rig.driver.status()["power_cut"]["on"] is False
        rig.engine.unshelve("ch4/high_critical", by="crew")
        assert rig.driver.status()["power_cut"]["on"] is True
        rig.engine.test_alarm("ch4")
        assert rig.driver.status()["faults"]["on"] is False

    asyncio.run(scenario())


def test_a_refused_write_raises_an_output_fault_and_the_poll_path_goes_on() -> None:
    async def scenario() -> None:
        async with (
            tcp_server({1: device_context(size=10)}) as port,
            Rig(port, [{"name": "sounder", "address": 50}]).running() as rig,
        ):
            rig.feed(1.2)
            await until(lambda: rig.emitted)
            [fault] = rig.emitted
            assert (fault.event, fault.alarm, fault.kind, fault.level) == (
                "raised",
                "sounder/output_fault",
                "output_fault",
                "fault",
            )
            assert fault.detail is not None
            assert "exception 2" in fault.detail
            assert rig.engine.describe("sounder/output_fault")["state"] == "unacknowledged"
            # the alarms themselves go on: their events do not wait for the output
            assert [e.event for e in rig.feed(0.2)] == ["cleared", "cleared"]

    asyncio.run(scenario())


def test_a_silent_device_raises_an_output_fault_without_holding_up_evaluate() -> None:
    async def scenario() -> None:
        async with (
            silent_server() as port,
            Rig(port, [{"name": "sounder", "address": 0, "timeout": 0.3}]).running() as rig,
        ):
            await asyncio.sleep(0.05)  # the start-up read is now waiting on the silent unit
            started = time.perf_counter()
            events = rig.feed(1.2)
            assert time.perf_counter() - started < 0.01
            assert [e.event for e in events] == ["raised", "raised"]  # prealarm, alarm
            await until(lambda: rig.emitted)
            assert rig.faults() == [("raised", "sounder/output_fault")]
            assert "no answer" in (rig.emitted[0].detail or "")

    asyncio.run(scenario())


def test_a_write_that_does_not_hold_is_a_fault_until_the_relay_is_repaired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_set = KnownUnitsOnly.async_setValues

    async def stuck_at_address_5(
        self: KnownUnitsOnly, device_id: int, func_code: int, address: int, values: Any
    ) -> Any:
        if address == 5:
            return None  # accepted, not done: a welded relay contact
        return await real_set(self, device_id, func_code, address, values)

    monkeypatch.setattr(KnownUnitsOnly, "async_setValues", stuck_at_address_5)

    async def scenario() -> None:
        async with (
            tcp_server({1: device_context()}) as port,
            Rig(port, [{"name": "relay", "address": 5}], retry_cap=0.2).running() as rig,
        ):
            rig.feed(1.2)
            await until(lambda: rig.emitted)
            assert rig.faults() == [("raised", "relay/output_fault")]
            assert rig.emitted[0].detail is not None
            assert "reads back 0 after writing 1" in rig.emitted[0].detail
            assert rig.emitted[0].value == 0
            monkeypatch.setattr(KnownUnitsOnly, "async_setValues", real_set)
            await until(lambda: len(rig.emitted) == 2)
            assert rig.faults()[1] == ("cleared", "relay/output_fault")
            assert await rig.read(Table.COIL, 5) == 1

    asyncio.run(scenario())


# -- config ---------------------------------------------------------------------------------


def test_output_config_rejects_ambiguous_targets_and_odd_values() -> None:
    with pytest.raises(ValidationError, match="exactly one of device or bus"):
        OutputConfig(name="x", device="d", bus="b", unit=1, address=0)
    with pytest.raises(ValidationError, match="exactly one of device or bus"):
        OutputConfig(name="x", bus="b", address=0)
    with pytest.raises(ValidationError, match="0 or 1"):
        OutputConfig(name="x", device="d", address=0, on=2)
    with pytest.raises(ValidationError, match="must differ"):
        OutputConfig(name="x", device="d", table="holding", address=0, on=0)


# one Modbus TCP device with one point; a test appends keys of that point, or tables
CONFIG = configs.toml(
    configs.gateway(
        site="s",
        gateway_id="g",
        buses=[configs.tcp_bus("face", 502)],
        devices=[configs.device("station", "face", configs.point("ch4", 0))],
    )
)


def test_config_names_every_wrong_output_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG
        + """
[[outputs]]
name = "ch4"
device = "nowhere"
address = 0
points = ["ch4", "ghost"]
[[outputs]]
name = "relay"
bus = "rs485"
unit = 3
address = 1
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        "outputs[0].name: output name 'ch4' is also a point name",
        "outputs[0].device: no device named 'nowhere' (devices: station)",
        "outputs[0].points[1]: no point named 'ghost'",
        "outputs[1].bus: no bus named 'rs485' (buses: face)",
    ]
    path.write_text(CONFIG + '[[outputs]]\nname = "relay"\ndevice = "station"\naddress = 1\n')
    assert load_config(path).outputs[0].name == "relay"
