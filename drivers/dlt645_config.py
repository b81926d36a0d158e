"""The `dlt645` bus type's config class (pydantic) and its registry entry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from watchpost import settings
from watchpost.drivers.dlt645 import KEY, create
from watchpost.drivers.entry import BusSettings, DriverEntry


class Config(BusSettings, settings.Dlt645BusSettings):
    """An RS-485 line carrying DL/T 645-2007 meters."""

    type: Literal["dlt645"] = Field(description="Bus type.")
    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/ttyUSB1.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200] = Field(
        default=2400, description="Line speed in baud (DL/T 645-2007 meters default to 2400)."
    )
    parity: Literal["N", "E", "O"] = Field(default="E", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    wake: int = Field(
        default=4, ge=0, le=8, description="FE wake-up bytes sent before each request."
    )


DRIVER = DriverEntry(KEY, Config, create)
