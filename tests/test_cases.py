"""The data-driven cases of tests/cases/ (see tests/kit/cases.py): config errors and drivers."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from tests.kit.cases import Case, all_cases, unit_context
from tests.kit.clock import FakeClock
from tests.modbus_servers import tcp_server
from watchpost.cli import main
from watchpost.config import EXIT_CONFIG, load_config
from watchpost.drivers import DRIVERS
from watchpost.drivers.modbus_tcp import Config as TcpConfig
from watchpost.poller import reader_for

CASES = all_cases()
CONFIG_ERRORS = [c for c in CASES if c.is_config_error]
DRIVER_CASES = [c for c in CASES if not c.is_config_error]


def test_there_are_cases_of_both_kinds() -> None:
    assert len(CONFIG_ERRORS) >= 5
    assert len(DRIVER_CASES) >= 3


@pytest.mark.parametrize("case", CONFIG_ERRORS, ids=lambda c: c.name)
def test_config_error_case(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["config", "check", str(case.config)])
    err = capsys.readouterr().err.splitlines()
    assert status == EXIT_CONFIG
    header, *lines = err
    assert header == f"{case.config}: {len(lines)} error(s)"
    assert [line.strip() for line in lines] == case.errors()


@pytest.mark.parametrize("case", DRIVER_CASES, ids=lambda c: c.name)
def test_driver_case(case: Case) -> None:
    config = load_config(case.config)
    expected = case.expected()
    units = {int(unit): unit_context(tables) for unit, tables in case.registers().items()}

    async def poll_once() -> tuple[dict[str, Any], int]:
        async with tcp_server(units) as port:
            samples: dict[str, Any] = {}
            requests = 0
            for device in config.devices:
                bus_config = next(b for b in config.buses if b.name == device.bus)
                if isinstance(bus_config, TcpConfig):
                    bus_config = bus_config.model_copy(update={"host": "127.0.0.1", "port": port})
                bus = DRIVERS[bus_config.type].create(bus_config)
                try:
                    reader = reader_for(device, bus, FakeClock())
                    samples.update({s.point: s for s in await reader.poll(bus)})
                    requests += reader.health.requests
                finally:
                    await bus.close()
            return samples, requests

    samples, requests = asyncio.run(poll_once())
    assert sorted(samples) == sorted(expected["points"])
    for name, want in expected["points"].items():
        got = samples[name]
        assert str(got.quality) == want["quality"], name
        if want["value"] is None:
            assert got.value is None or not math.isfinite(got.value), name
        else:
            assert got.value == pytest.approx(want["value"], rel=1e-6, abs=1e-9), name
    if "requests" in expected:
        assert requests == expected["requests"]
