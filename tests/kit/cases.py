"""Data-driven cases: a regression test is a new folder under ``tests/cases/``.

    tests/cases/<name>/gateway.toml    the config under test
    tests/cases/<name>/errors.txt      a config that must be refused: `watchpost config check`
                                       exits 78 and prints exactly these lines (one per error)
    tests/cases/<name>/expected.json   a config that must read right: every point's value and
                                       quality after one poll against a real pymodbus server
    tests/cases/<name>/registers.json  the server's tables for the driver cases:
                                       {"UNIT": {"holding": {"ADDRESS": value}, "input": ...,
                                                 "coil": {...}, "discrete": {...}}}

In a driver case every `modbus_tcp` bus is pointed at the server, whatever its `port` says.
``expected.json``: ``{"points": {"NAME": {"value": number | null, "quality": "good"}},
"requests": N}``, ``requests`` (optional) being the Modbus requests one poll takes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock

CASES = Path(__file__).resolve().parents[1] / "cases"
TABLE_SIZE = 300


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "gateway.toml"

    @property
    def is_config_error(self) -> bool:
        return (self.folder / "errors.txt").exists()

    def errors(self) -> list[str]:
        text = (self.folder / "errors.txt").read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line.strip()]

    def expected(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "expected.json").read_text(encoding="utf-8")))

    def registers(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "registers.json").read_text(encoding="utf-8")))


def all_cases() -> list[Case]:
    """Every case folder, by name; a folder without gateway.toml is an error, not skipped."""
    cases = []
    for folder in sorted(p for p in CASES.iterdir() if p.is_dir()):
        case = Case(folder.name, folder)
        if not case.config.exists():
            raise FileNotFoundError(f"{folder}: a case needs gateway.toml")
        has_errors = case.is_config_error
        if has_errors == (folder / "expected.json").exists():
            raise FileNotFoundError(f"{folder}: a case has errors.txt or expected.json (one)")
        cases.append(case)
    return cases


def unit_context(tables: Mapping[str, Mapping[str, Any]]) -> ModbusDeviceContext:
    """One unit's four tables, zero unless given (addresses 0-based, as in the config)."""
    image: dict[str, list[Any]] = {
        "holding": [0] * TABLE_SIZE,
        "input": [0] * TABLE_SIZE,
        "coil": [False] * TABLE_SIZE,
        "discrete": [False] * TABLE_SIZE,
    }
    for table, values in tables.items():
        if table not in image:
            raise ValueError(f"registers.json: no table {table!r} (tables: {', '.join(image)})")
        for address, value in values.items():
            image[table][int(address)] = value
    # pymodbus blocks count from 1: a block created at 1 answers requests for address 0
    return ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, image["holding"]),
        ir=ModbusSequentialDataBlock(1, image["input"]),
        co=ModbusSequentialDataBlock(1, image["coil"]),
        di=ModbusSequentialDataBlock(1, image["discrete"]),
    )
