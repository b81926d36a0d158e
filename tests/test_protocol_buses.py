"""Meters and line instruments under the poller: a silent meter does not take its line's
rate from the other meter, and a line flooded with garbage does not stall another bus."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Sequence

from tests.dlt645_meter import Meter, MeterLine, bcd
from tests.test_serial_line import Instrument
from watchpost.clock import wall_ms
from watchpost.config.dlt645 import Dlt645Device
from watchpost.config.serial_line import LineDevice
from watchpost.drivers import dlt645, serial_line
from watchpost.poller import BusScheduler, Poller, reader_for
from watchpost.samples import Quality, Sample

LIVE = "000000000001"
DEAD = "000000000002"


def meter(address: str, **keys: object) -> Dlt645Device:
    return Dlt645Device.model_validate(
        {
            "name": f"meter-{address[-1]}",
            "bus": "meters",
            "address": address,
            "interval": 0.2,
            "timeout": 0.3,
            "points": [{"name": f"power_{address[-1]}", "di": "02030000"}],
            **keys,
        }
    )


def run_for(seconds: float, poller: Poller) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_silent_meter_leaves_the_other_meter_its_rate():
    got: list[Sample] = []
    with MeterLine(Meter(LIVE, {"02030000": bcd("123456")}), Meter(DEAD, mode="silent")) as line:
        bus = dlt645.create(dlt645.Config(type="dlt645", name="meters", port=line.path))
        readers = [reader_for(meter(a), bus, wall_ms) for a in (LIVE, DEAD)]
        scheduler = BusScheduler(bus, readers, got.extend)
        run_for(3.0, Poller([scheduler]))
    live = [s for s in got if s.point == "power_1"]
    dead = [s for s in got if s.point == "power_2"]
    assert all(s.quality is Quality.GOOD and s.value == 12.3456 for s in live)
    # every 0.2 s for 3 s is 15 polls; the dead meter's first two timeouts (2 x 0.3 s,
    # then it is polled only every 5 s) cost a few of them
    assert len(live) >= 9, len(live)
    assert 1 <= len(dead) <= 2
    assert all(s.quality is Quality.COMM for s in dead)
    assert readers[1].health.state == "comm"
    assert "no answer" in readers[1].health.last_error
    assert readers[0].health.state == "ok"


def test_garbage_on_one_line_does_not_stall_a_meter_on_another():
    got: list[Sample] = []
    stop = threading.Event()

    def flood(gas: Instrument) -> None:
        while not stop.is_set():  # no line end, ever: the framer drops it as it comes
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(gas.master, os.urandom(2048).replace(b"\n", b"."))
            time.sleep(0.005)

    with MeterLine(Meter(LIVE, {"02030000": bcd("123456")})) as line, Instrument() as gas:
        meters = dlt645.create(dlt645.Config(type="dlt645", name="meters", port=line.path))
        noisy = serial_line.create(
            serial_line.Config(type="serial_line", name="gasline", port=gas.path, max_line=128)
        )
        detector = LineDevice.model_validate(
            {
                "name": "gas-detector",
                "bus": "gasline",
                "interval": 0.2,
                "timeout": 0.5,
                "points": [{"name": "ch4", "pattern": r"CH4=(?P<value>[0-9.]+)"}],
            }
        )
        schedulers: Sequence[BusScheduler] = [
            BusScheduler(meters, [reader_for(meter(LIVE), meters, wall_ms)], got.extend),
            BusScheduler(noisy, [reader_for(detector, noisy, wall_ms)], got.extend),
        ]
        flooder = threading.Thread(target=flood, args=(gas,), daemon=True)
        flooder.start()
        try:
            run_for(3.0, Poller(schedulers))
        finally:
            stop.set()
            flooder.join(timeout=5)
        framer = noisy.framer
    power = [s for s in got if s.point == "power_1"]
    ch4 = [s for s in got if s.point == "ch4"]
    assert len(power) >= 10, len(power)
    assert all(s.quality is Quality.GOOD for s in power)
    assert ch4
    assert all(s.quality is Quality.BAD for s in ch4)  # a line too long, not silence
    assert framer.partial <= 128
    assert framer.overlong >= 1
