"""Modbus TCP: each endpoint is its own bus."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pymodbus.client import AsyncModbusTcpClient

from watchpost.drivers.modbus import ModbusBus

KEY = "modbus_tcp"


class Config(BaseModel):
    """A Modbus TCP endpoint (a device, or a gateway in front of several units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["modbus_tcp"] = Field(description="Bus type.")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Bus name, unique in the file.")
    host: str = Field(min_length=1, description="Host name or IP address of the endpoint.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")


class ModbusTcpBus(ModbusBus):
    """A Modbus TCP endpoint."""

    def __init__(self, config: Config) -> None:
        client = AsyncModbusTcpClient(
            config.host,
            port=config.port,
            name=config.name,
            retries=0,
            timeout=1.0,
            reconnect_delay=0,  # the poller reconnects on its own schedule
        )
        super().__init__(config.name, client)
        self._where = f"{config.host}:{config.port}"

    def describe(self) -> str:
        return self._where


def create(config: Config) -> ModbusTcpBus:
    return ModbusTcpBus(config)
