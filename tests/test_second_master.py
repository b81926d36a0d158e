"""A second master on an RTU line: the daemon notices traffic it did not cause.

The simulated site's RS-485 line is a pair of real pseudo-terminals. While the gateway
polls, a second writer opens the gateway's end of the line and sends requests of its own;
the simulated unit answers them, and those answers reach the gateway between its own
transactions. The gateway must publish the line's samples as `bad`, say why in `health`,
and trust the line again once it has been quiet.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import (
    Table,
    constant,
    device,
    gateway,
    point,
    rtu_bus,
    simulated_site,
    toml,
    write_config,
)
from tests.kit.processes import SimulatorProcess, running_gateway
from watchpost.drivers.line_watch import QUIET

ROOT = "watchpost/v1/line-site/gw-l/"

SITE = toml(
    simulated_site(
        "line-site",
        {"type": "modbus_rtu", "name": "rs485", "link": "var/rs485", "baudrate": 19200},
        constant("gas_a", 0, 150),
    )
)


def gateway_config(broker: str) -> Table:
    """gas_a over the simulator's RS-485 link, health published every second."""
    return gateway(
        broker,
        site="line-site",
        gateway_id="gw-l",
        uplink={"health_interval": 1},
        buses=[rtu_bus("rs485", "var/rs485")],
        devices=[device("gas", "rs485", point("gas_a", 0), interval=0.5, timeout=0.5)],
    )


def crc16(frame: bytes) -> bytes:
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class SecondMaster:
    """Another master on the same line: writes a read request for unit 1 every ``period``."""

    def __init__(self, line: Path, period: float = 0.3) -> None:
        self.fd = os.open(line, os.O_RDWR | os.O_NOCTTY)
        self.period = period
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="second-master", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request = b"\x01\x03\x00\x00\x00\x01"
        while not self._stop.wait(self.period):
            os.write(self.fd, request + crc16(request))
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.fd)


def qualities(got: list[dict]) -> list[str]:
    return [s["quality"] for m in got for s in m["samples"] if s["point"] == "gas_a"]


@pytest.mark.slow
def test_a_second_master_makes_the_line_bad_until_it_is_quiet(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "telemetry", ROOT + "health")
    with SimulatorProcess.start(SITE, tmp_path):
        config = write_config(tmp_path / "gateway.toml", gateway_config(broker.url))
        with running_gateway(config) as process:
            got = sub.wait_for(
                ROOT + "telemetry", timeout=30, predicate=lambda g: qualities(g).count("good") >= 3
            )
            assert set(qualities(got)) == {"good"}, qualities(got)
            before = len(qualities(got))

            master = SecondMaster(tmp_path / "var" / "rs485")
            try:
                got = sub.wait_for(
                    ROOT + "telemetry",
                    timeout=20,
                    predicate=lambda g: qualities(g)[before:].count("bad") >= 4,
                )
                health = sub.wait_for(
                    ROOT + "health",
                    timeout=10,
                    predicate=lambda g: g[-1]["devices"]["gas"]["state"] == "bad",
                )
            finally:
                master.stop()
            assert master.sent >= 3
            stopped = time.monotonic()
            during = qualities(got)[before:]
            # once noticed, every sample of the line is bad while the other master talks
            first_bad = during.index("bad")
            assert set(during[first_bad:]) == {"bad"}, during
            assert "another master" in health[-1]["devices"]["gas"]["last_error"]

            after = len(qualities(sub.get(ROOT + "telemetry")))
            got = sub.wait_for(
                ROOT + "telemetry",
                timeout=QUIET + 20,
                predicate=lambda g: qualities(g)[-3:] == ["good"] * 3 and len(qualities(g)) > after,
            )
            # trusted again only after the line was quiet for QUIET seconds
            assert time.monotonic() - stopped >= QUIET - 1.0
            assert process.poll() is None, process.log()
    text = (tmp_path / "gateway.log").read_text()
    assert text.count("traffic the gateway did not cause") == 1, text
    assert text.count("answers are trusted again") == 1, text
