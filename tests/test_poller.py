"""Polling real Modbus TCP servers: values, quality, and dead devices that stall nobody."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.modbus_servers import device_context, silent_server, tcp_server
from watchpost import ticks
from watchpost.clock import wall_ms
from watchpost.config import DeviceConfig, PointConfig
from watchpost.drivers import modbus_tcp
from watchpost.drivers.codec import encode
from watchpost.poller import BusScheduler, DeviceReader, Poller
from watchpost.samples import Quality


def tcp_bus(name: str, port: int):
    return modbus_tcp.create(
        modbus_tcp.Config(type="modbus_tcp", name=name, host="127.0.0.1", port=port)
    )


def device(name: str, points: list[dict], **settings) -> DeviceConfig:
    return DeviceConfig(name=name, bus="b", points=[PointConfig(**p) for p in points], **settings)


class Collector:
    def __init__(self) -> None:
        self.samples = []

    def __call__(self, samples) -> None:
        self.samples.extend(samples)

    def of(self, point: str):
        return [s for s in self.samples if s.point == point]


async def run_for(seconds: float, *schedulers: BusScheduler) -> None:
    task = asyncio.create_task(Poller(schedulers).run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_values_are_decoded_scaled_and_checked_against_range():
    holding = {0: 1234, 1: 0xFFFF, **dict(enumerate(encode(2.5, "float32"), start=2))}

    async def scenario():
        async with tcp_server({1: device_context(holding)}) as port:
            dev = device(
                "d",
                [
                    {"name": "scaled", "address": 0, "scale": 0.01, "offset": -2},
                    {"name": "negative", "address": 1, "type": "int16"},
                    {"name": "implausible", "address": 2, "type": "float32", "range": [0, 1]},
                ],
                interval=0.1,
            )
            reader = DeviceReader(dev, wall_ms)
            samples = {s.point: s for s in await reader.poll(tcp_bus("b", port))}
            assert len(reader.plan) == 1  # three points, one request
            return samples

    samples = asyncio.run(scenario())
    assert samples["scaled"].value == pytest.approx(10.34)
    assert samples["scaled"].quality is Quality.GOOD
    assert samples["negative"].value == -1
    assert samples["implausible"].value == 2.5
    assert samples["implausible"].quality is Quality.BAD


def test_exception_answers_give_bad_samples_and_a_refused_gap_is_read_point_by_point():
    async def scenario():
        # the unit's tables end at address 20: a request spanning 18..30 is refused
        async with tcp_server({1: device_context({18: 7}, size=20)}) as port:
            dev = device(
                "d",
                [{"name": "inside", "address": 18}, {"name": "outside", "address": 25}],
                interval=0.1,
            )
            reader = DeviceReader(dev, wall_ms)
            bus = tcp_bus("b", port)
            first = {s.point: s for s in await reader.poll(bus)}
            second = {s.point: s for s in await reader.poll(bus)}
            await bus.close()
            return reader, first, second

    reader, first, second = asyncio.run(scenario())
    assert first["inside"].quality is Quality.BAD
    assert first["outside"].quality is Quality.BAD
    assert "illegal data address" in reader.health.last_error
    assert len(reader.plan) == 2  # split after the refusal
    assert second["inside"].quality is Quality.GOOD
    assert second["inside"].value == 7
    assert second["outside"].quality is Quality.BAD
    assert reader.health.state == "bad"


def test_a_hung_device_does_not_slow_the_others():
    """A silent endpoint on its own bus and a silent unit sharing a bus with a live one."""

    async def scenario():
        async with tcp_server({1: device_context({0: 5})}) as port, silent_server() as hung:
            live = device("live", [{"name": "live_p", "address": 0}], interval=0.25)
            mute = device(
                "mute",
                [{"name": "mute_p", "address": 0}],
                unit=9,
                interval=0.25,
                timeout=0.3,
                retries=1,
            )
            hung_dev = device(
                "hung", [{"name": "hung_p", "address": 0}], interval=0.25, timeout=2.0
            )
            sink = Collector()
            shared = BusScheduler(
                tcp_bus("shared", port),
                [DeviceReader(live, wall_ms), DeviceReader(mute, wall_ms)],
                sink,
            )
            alone = BusScheduler(tcp_bus("alone", hung), [DeviceReader(hung_dev, wall_ms)], sink)
            await run_for(5.0, shared, alone)
            return sink

    sink = asyncio.run(scenario())
    live = sink.of("live_p")
    assert all(s.quality is Quality.GOOD and s.value == 5 for s in live)
    # 5 s at 0.25 s is 20 polls; the mute unit costs 0.6 s once, then 0.3 s per recheck
    assert len(live) >= 14, len(live)
    assert sink.of("mute_p")
    assert all(s.quality is Quality.COMM for s in sink.of("mute_p"))
    assert len(sink.of("mute_p")) <= 3  # rechecked after a backoff, not every interval
    assert sink.of("hung_p")
    assert all(s.quality is Quality.COMM for s in sink.of("hung_p"))


@pytest.mark.parametrize(
    ("when", "interval", "instant"),
    [
        (10.2, 1.0, 10.05),
        (10.6, 1.0, 11.05),
        (11.9, 5.0, 10.05),
        (12.9, 5.0, 15.05),
        (10.35, 0.5, 10.55),
        (7.05, 0.2, 7.05),
        (3.01, 0.05, 3.025),  # an interval shorter than the lag: half of it
    ],
)
def test_the_polls_grid_lies_just_after_the_ticks(when, interval, instant):
    assert ticks.poll_instant(when, interval) == pytest.approx(instant)


def test_polls_after_the_first_fall_just_after_each_tick_of_the_loops_clock():
    """The batcher and the store's commit run on whole seconds of the loop's clock; a
    device polled every second is read just after each of them, whenever it started."""
    polled_at: list[float] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        async with tcp_server({1: device_context({0: 5})}) as port:
            # start half a second after a tick, far from the grid
            await asyncio.sleep(ticks.next_tick(loop.time(), 1.0) + 0.5 - loop.time())
            dev = device("d", [{"name": "p", "address": 0}], interval=1.0)
            scheduler = BusScheduler(
                tcp_bus("b", port),
                [DeviceReader(dev, wall_ms)],
                lambda _samples: polled_at.append(loop.time()),
            )
            await run_for(3.8, scheduler)

    asyncio.run(scenario())
    assert len(polled_at) >= 4, polled_at
    phases = [round(t % 1.0, 3) for t in polled_at]
    assert 0.5 <= phases[0] < 0.7, phases  # the first poll at once
    lag = ticks.POLL_LAG
    assert all(lag <= phase < lag + 0.2 for phase in phases[1:]), phases
