"""Modbus TCP: each endpoint is its own bus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from watchpost import settings
from watchpost.drivers.entry import BusSettings, DriverEntry

if TYPE_CHECKING:
    from watchpost.drivers.modbus_tcp_bus import ModbusTcpBus

KEY = "modbus_tcp"


class Config(BusSettings, settings.ModbusTcpSettings):
    """A Modbus TCP endpoint (a device, or a gateway in front of several units)."""

    type: Literal["modbus_tcp"] = Field(description="Bus type.")
    host: str = Field(min_length=1, description="Host name or IP address of the endpoint.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")


def create(config: settings.ModbusTcpSettings) -> ModbusTcpBus:
    """A closed bus; pymodbus is imported here, not when the config is loaded."""
    from watchpost.drivers.modbus_tcp_bus import ModbusTcpBus  # noqa: PLC0415 - keeps the config light

    return ModbusTcpBus(config)


DRIVER = DriverEntry(KEY, Config, create)
