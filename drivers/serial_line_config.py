"""The `serial_line` bus type's config class (pydantic) and its registry entry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from watchpost import settings
from watchpost.drivers.entry import BusSettings, DriverEntry
from watchpost.drivers.serial_line import KEY, TEXT_LINE_END, check_escapes, create


class Config(BusSettings, settings.SerialLineSettings):
    """A serial line (RS-232 or RS-485) carrying instruments that talk in lines of text."""

    type: Literal["serial_line"] = Field(description="Bus type.")
    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/ttyUSB2.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed in baud."
    )
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    line_end: str = Field(
        default="\\r\\n",
        description="What ends a line, escapes allowed: \\r\\n (the default), \\n or \\r.",
    )
    max_line: int = Field(
        default=256, ge=8, le=4096, description="Longest line in bytes; longer ones are dropped."
    )
    encoding: Literal["ascii", "latin-1", "utf-8"] = Field(
        default="ascii", description="How the instrument's bytes are read as text."
    )

    @field_validator("line_end")
    @classmethod
    def _line_end(cls, value: str) -> str:
        end = check_escapes(value)
        if not 1 <= len(end) <= 2:
            raise ValueError(TEXT_LINE_END)
        return value


DRIVER = DriverEntry(KEY, Config, create)
