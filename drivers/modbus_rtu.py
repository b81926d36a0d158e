"""Modbus RTU over a serial line (RS-485): one line is one bus, shared by its units.

Reads on a line where traffic the gateway did not cause was seen lately (a second master,
see ``line_watch``) are refused as bad answers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pymodbus.client import AsyncModbusSerialClient

from watchpost.drivers.base import AnswerError, CommError, ReadRequest, Table
from watchpost.drivers.line_watch import LineWatch
from watchpost.drivers.modbus import ModbusBus

KEY = "modbus_rtu"


class Config(BaseModel):
    """An RS-485 line carrying Modbus RTU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["modbus_rtu"] = Field(description="Bus type.")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Bus name, unique in the file.")
    port: str = Field(min_length=1, description="Serial device path, e.g. /dev/ttyUSB0.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed in baud."
    )
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")


class ModbusRtuBus(ModbusBus):
    """A Modbus RTU line."""

    def __init__(self, config: Config) -> None:
        self._watch = LineWatch(config.name)
        client = AsyncModbusSerialClient(
            config.port,
            baudrate=config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
            bytesize=config.bytesize,
            name=config.name,
            retries=0,
            timeout=1.0,
            reconnect_delay=0,
            trace_packet=self._watch.trace,
        )
        super().__init__(config.name, client)
        self._where = config.port

    def describe(self) -> str:
        return self._where

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        self._watch.begin(request.unit)
        timed_out = False
        try:
            values = await super().read(request, timeout=timeout)
        except CommError:
            timed_out = True
            raise
        finally:
            self._watch.end(timed_out=timed_out)
        suspect = self._watch.suspect()
        if suspect is not None:
            what = f"unit {request.unit} {request.table} {request.address}+{request.count}"
            raise AnswerError(f"bus {self.name}: {what}: {suspect}")
        return values

    async def write(
        self,
        unit: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
        *,
        timeout: float,
    ) -> None:
        self._watch.begin(unit)
        timed_out = False
        try:
            await super().write(unit, table, address, values, timeout=timeout)
        except CommError:
            timed_out = True
            raise
        finally:
            self._watch.end(timed_out=timed_out)


def create(config: Config) -> ModbusRtuBus:
    return ModbusRtuBus(config)
