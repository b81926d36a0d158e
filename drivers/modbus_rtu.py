"""Modbus RTU over a serial line (RS-485): one line is one bus, shared by its units.

Reads on a line where traffic the gateway did not cause was seen lately (a second master,
see ``line_watch``) are refused as bad answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from watchpost import settings
from watchpost.drivers.entry import BusSettings, DriverEntry

if TYPE_CHECKING:
    from watchpost.drivers.modbus import ModbusRtuBus

KEY = "modbus_rtu"


class Config(BusSettings, settings.ModbusRtuSettings):
    """An RS-485 line carrying Modbus RTU."""

    type: Literal["modbus_rtu"] = Field(description="Bus type.")
    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/ttyUSB0.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed in baud."
    )
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")


def create(config: settings.ModbusRtuSettings) -> ModbusRtuBus:
    """A closed bus; pymodbus is imported here, not when the config is loaded."""
    from watchpost.drivers.modbus import ModbusRtuBus  # noqa: PLC0415 - keeps the config light

    return ModbusRtuBus(config)


DRIVER = DriverEntry(KEY, Config, create)
