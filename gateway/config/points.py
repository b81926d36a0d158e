"""Devices and their points: where each named quantity is read (`[[devices]]`).

``PointBase`` and ``DeviceBase`` hold what every bus type shares (a point's name, unit,
scale, offset, range and alarm rules; a device's name, bus, interval, timeout, retries);
each bus type adds its own keys: Modbus here (``PointConfig``, ``DeviceConfig``), DL/T 645
meters in ``dlt645``, line-oriented serial instruments in ``serial_line``.
"""

from __future__ import annotations

from gettext import gettext as _
from typing import Any, Literal

from pydantic import Field, model_validator

from watchpost import settings
from watchpost.config.alarms import AlarmRule, resolve_rules
from watchpost.config.base import NAME_PATTERN, Model
from watchpost.drivers.base import Table
from watchpost.settings import REGISTER_WIDTH, DataType

TEXT_TYPE_TABLE = _("type {type!r} does not fit table {table!r} ({expected})")
TEXT_PAST_END = _("address {address} + {width} register(s) runs past 65535")

__all__ = ["REGISTER_WIDTH", "DataType"]  # from watchpost.settings, as before


class PointBase(Model, settings.PointBase):
    """One named physical quantity read from a device: what every bus type shares."""

    name: str = Field(pattern=NAME_PATTERN, description="Point name, unique in the gateway.")
    unit: str = Field(default="", description="Engineering unit, e.g. %CH4, ppm, degC.")
    description: str = Field(default="", description="Free text for people.")
    scale: float = Field(default=1.0, allow_inf_nan=False, description="value = raw*scale+offset")
    offset: float = Field(default=0.0, allow_inf_nan=False, description="value = raw*scale+offset")
    range: tuple[float, float] | None = Field(
        default=None, description="Plausible range [min, max]; outside it a sample is bad."
    )
    alarms: list[AlarmRule] = Field(
        default_factory=list,
        description=("Alarm rules (docs/alarm-rules.md); after loading, also those of rules_from."),
    )
    rules_from: str | None = Field(
        default=None,
        description=(
            "A shipped rule set (drivers/profiles/NAME.toml); own rules override it by name."
        ),
    )

    @model_validator(mode="after")
    def _resolve_rules(self) -> PointBase:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range: min must be below max")
        rules = resolve_rules(
            self.alarms, rules_from=self.rules_from, unit=self.unit, point_range=self.range
        )
        object.__setattr__(self, "alarms", rules)  # frozen: resolved once, here
        return self


class PointConfig(PointBase, settings.PointConfig):
    """A point read from Modbus registers or bits."""

    table: Table = Field(
        default=Table.HOLDING, description="Modbus table: holding, input, coil or discrete."
    )
    address: int = Field(ge=0, le=65535, description="Register or bit address, 0-based.")
    type: DataType = Field(default="uint16", description="Data type of the raw value.")
    word_order: Literal["big", "little"] = Field(
        default="big", description="Order of the two words of 32-bit types."
    )

    @model_validator(mode="after")
    def _type_fits_table(self) -> PointConfig:
        if self.table.is_bits != (self.type == "bool"):
            expected = (
                "coils and discrete inputs are bool"
                if self.table.is_bits
                else "registers hold numbers, not bool"
            )
            raise ValueError(
                TEXT_TYPE_TABLE.format(type=self.type, table=str(self.table), expected=expected)
            )
        if self.address + self.width > 65536:
            raise ValueError(TEXT_PAST_END.format(address=self.address, width=self.width))
        return self


MIN_INTERVAL = 0.05  # s: 20 polls a second is more than any field bus here can carry


class DeviceBase(Model, settings.DeviceBase):
    """A device on a bus: what every bus type shares. ``points`` is narrowed by each type."""

    name: str = Field(pattern=NAME_PATTERN, description="Device name, unique in the file.")
    bus: str = Field(description="Name of the bus the device is on.")
    interval: float = Field(
        default=1.0,
        ge=MIN_INTERVAL,
        le=3600,
        allow_inf_nan=False,
        description=f"Seconds between polls (at least {MIN_INTERVAL}).",
    )
    timeout: float = Field(default=1.0, gt=0, le=30, description="Seconds to wait for an answer.")
    retries: int = Field(default=1, ge=0, le=5, description="Retries of a failed transaction.")

    @model_validator(mode="before")
    @classmethod
    def _untag(cls, data: Any) -> Any:
        """Take off the bus type that config.devices.tag_devices put on (not a file key)."""
        if isinstance(data, dict) and "__bus_type__" in data:
            return {k: v for k, v in data.items() if k != "__bus_type__"}
        return data


class DeviceConfig(DeviceBase, settings.DeviceConfig):
    """A Modbus unit on a bus and the points read from it."""

    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id.")
    max_gap: int = Field(
        default=settings.MAX_GAP,
        ge=0,
        le=100,
        description="Unused registers a single request may bridge between two points.",
    )
    points: list[PointConfig] = Field(min_length=1, description="The points read from it.")
