"""Durations run on the monotonic clock: a wall clock step neither stretches nor cuts them.

The daemon runs with ``clock = "rtc"`` (it trusts the wall clock for stamps) under
libfaketime, whose offset file lets the test step the daemon's wall clock forward and back
while its monotonic clock runs on. A 6-second shelf must end after 6 seconds and an
``on_delay`` of 12 s must take 12 seconds, whatever the wall clock does meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import Table, alarm, gas, gas_gateway, gas_site, toml, write_config
from tests.kit.processes import SimulatorProcess, gateway_process
from watchpost.control import ControlError, request

ROOT = "watchpost/v1/clock-site/gw-c/"
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
DELAY = 12.0  # s: the on_delay of gas_b
SHELF = 6.0  # s: each shelf of gas_a

SITE = toml(gas_site("clock-site", 150, 150))  # 15.0 %LEL: both above their limit


def gateway_config(broker: str, port: int) -> Table:
    """The wall clock trusted for stamps (``clock = "rtc"``); gas_b raised after DELAY s."""
    return gas_gateway(
        broker,
        port,
        gas("gas_a", 0, alarm("high", threshold=10.0), scale=0.1),
        gas("gas_b", 1, alarm("high", threshold=10.0, on_delay=DELAY), scale=0.1),
        site="clock-site",
        gateway_id="gw-c",
        gateway={"clock": "rtc"},
    )


class SteppedDaemon:
    """`watchpost run` whose wall clock the test steps through libfaketime's offset file."""

    def __init__(self, folder: Path, config: Path) -> None:
        assert FAKETIME.exists(), "libfaketime is missing: scripts/setup installs faketime"
        self.offset_file = folder / "faketime-offset"
        self.step(0)
        env = {
            "LD_PRELOAD": str(FAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        self.process = gateway_process(config, env=env)

    def step(self, seconds: int) -> None:
        """Set the daemon's wall clock to real time + ``seconds`` (takes effect at once)."""
        temporary = self.offset_file.with_suffix(".tmp")
        temporary.write_text(f"{seconds:+d}\n")
        temporary.replace(self.offset_file)


def arrived(sub: Subscriber, alarm: str, event: str) -> list[tuple[float, dict[str, Any]]]:
    """(monotonic arrival time, message) of each ``event`` of ``alarm`` so far."""
    out = []
    for message in list(sub.raw):
        if message.topic != ROOT + "alarms":
            continue
        body = json.loads(message.payload)
        if body["alarm"] == alarm and body["event"] == event:
            out.append((message.timestamp, body))
    return out


def wait_event(sub: Subscriber, alarm: str, event: str, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = arrived(sub, alarm, event)
        if len(got) >= count:
            return got[count - 1][0]
        time.sleep(0.05)
    raise AssertionError(f"no {event} #{count} of {alarm} in {timeout} s")


def shelve(sock: Path, seconds: float) -> float:
    deadline = time.monotonic() + 20
    while True:
        try:
            request(
                sock,
                "shelve",
                alarm="gas_a/high_alarm",
                by="crew",
                reason="test",
                minutes=seconds / 60,
            )
            return time.monotonic()
        except ControlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_shelves_and_delays_ignore_wall_clock_steps(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "alarms")
    with SimulatorProcess.start(SITE, tmp_path) as sim:
        config = gateway_config(broker.url, sim.tcp_port("tcp"))
        path = write_config(tmp_path / "gateway.toml", config)
        started = time.monotonic()
        daemon = SteppedDaemon(tmp_path, path)
        try:
            wait_event(sub, "gas_a/high_alarm", "raised", 1, timeout=30)
            sock = tmp_path / "var" / "control.sock"

            # a step forward: neither the shelf nor gas_b's delay may end early
            shelved = shelve(sock, SHELF)
            daemon.step(+7200)
            ended = wait_event(sub, "gas_a/high_alarm", "unshelved", 1, timeout=SHELF + 10)
            assert SHELF - 1.0 <= ended - shelved <= SHELF + 2.5
            raised_b = wait_event(sub, "gas_b/high_alarm", "raised", 1, timeout=DELAY + 20)
            assert raised_b - started >= DELAY

            # a step back by three hours (the case): the shelf still ends in time
            shelved = shelve(sock, SHELF)
            daemon.step(-3600)
            ended = wait_event(sub, "gas_a/high_alarm", "unshelved", 2, timeout=SHELF + 10)
            assert SHELF - 1.0 <= ended - shelved <= SHELF + 2.5
            assert daemon.process.poll() is None, daemon.process.log()
        finally:
            daemon.process.assert_stops_cleanly()
    # the wall clock still stamps: the events after the step back carry the stepped time
    [(_, unshelved)] = arrived(sub, "gas_a/high_alarm", "unshelved")[1:]
    assert unshelved["ts"] < time.time() * 1000 - 3000 * 1000
