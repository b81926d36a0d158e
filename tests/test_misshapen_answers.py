"""Modbus TCP answers that do not fit their request are `bad`, never `good`.

A server written for the test answers register reads with one register too many, one too
few, or an odd byte count; the gateway's bus refuses each, and the daemon publishes the
points of such a device as `bad` and names the fault in its log once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import device, gateway, point, tcp_bus, write_config
from tests.kit.processes import running_gateway
from tests.modbus_servers import MisshapenAnswers
from watchpost.drivers import modbus_tcp
from watchpost.drivers.base import AnswerError, ReadRequest, Table

ROOT = "watchpost/v1/shape-site/gw-s/"


def _read(port: int, unit: int, count: int) -> list[int] | list[bool]:
    async def scenario() -> list[int] | list[bool]:
        bus = modbus_tcp.create(
            modbus_tcp.Config(type="modbus_tcp", name="tcp", host="127.0.0.1", port=port)
        )
        try:
            return await bus.read(ReadRequest(unit, Table.HOLDING, 0, count), timeout=1.0)
        finally:
            await bus.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("count", [1, 3, 10])
def test_an_exact_answer_is_read(count: int) -> None:
    with MisshapenAnswers({1: "exact"}) as server:
        assert _read(server.port, 1, count) == [1234] * count


@pytest.mark.parametrize(
    ("shape", "count", "byte_count"),
    [("extra", 3, 8), ("short", 3, 4), ("odd", 3, 5), ("extra", 1, 4), ("odd", 1, 1)],
)
def test_a_misshapen_answer_is_refused_and_named(shape: str, count: int, byte_count: int) -> None:
    with MisshapenAnswers({1: shape}) as server, pytest.raises(AnswerError) as refused:
        _read(server.port, 1, count)
    message = str(refused.value)
    assert "bus tcp" in message
    assert f"unit 1 holding 0+{count}" in message
    assert f"byte count {byte_count}" in message
    assert refused.value.retry_can_help


@pytest.mark.slow
def test_the_daemon_publishes_misshapen_answers_as_bad(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    shapes = {1: "exact", 2: "extra", 3: "odd"}
    names = {1: "honest", 2: "extra", 3: "odd"}
    sub = subscriber(ROOT + "telemetry")
    devices = [
        device(name, "tcp", point(f"{name}_a", 0), point(f"{name}_b", 1), unit=u, interval=0.2)
        for u, name in names.items()
    ]
    with MisshapenAnswers(shapes) as server:
        config = gateway(
            broker.url,
            site="shape-site",
            gateway_id="gw-s",
            buses=[tcp_bus("tcp", server.port)],
            devices=devices,
        )
        with running_gateway(write_config(tmp_path / "gateway.toml", config)) as process:

            def polled_often(got: list[dict]) -> bool:
                seen = [s["point"] for m in got for s in m["samples"]]
                return all(seen.count(f"{name}_a") >= 10 for name in names.values())

            got = sub.wait_for(ROOT + "telemetry", timeout=30, predicate=polled_often)
            assert process.poll() is None, process.log()
    samples = [s for m in got for s in m["samples"]]
    qualities = {
        name: {s["quality"] for s in samples if s["point"].startswith(name + "_")}
        for name in names.values()
    }
    assert qualities == {"honest": {"good"}, "extra": {"bad"}, "odd": {"bad"}}
    honest = [s["value"] for s in samples if s["point"] == "honest_a"]
    assert set(honest) == {1234}
    assert all(s["value"] is None for s in samples if s["point"].startswith(("extra", "odd")))
    text = (tmp_path / "gateway.log").read_text()
    for unit, name in ((2, "extra"), (3, "odd")):
        named = [
            line
            for line in text.splitlines()
            if f"unit {unit} holding 0+2" in line and "byte count" in line
        ]
        assert len(named) == 1, (name, named)
