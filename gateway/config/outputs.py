"""The `[[outputs]]` list: local outputs (sounders, beacons, relays) driven by alarms.

The driver that writes them is ``watchpost.outputs``.
"""

from __future__ import annotations

from gettext import gettext as _
from typing import Literal

from pydantic import Field, model_validator

from watchpost import settings
from watchpost.config.base import NAME_PATTERN, Model
from watchpost.settings import Level

TEXT_DEVICE_OR_BUS = _("give exactly one of device or bus (with unit)")
TEXT_UNIT_WITH_BUS = _("unit goes with bus; a device brings its own unit")
TEXT_COIL_VALUES = _("a coil takes on/off values 0 or 1")
TEXT_SAME_VALUES = _("on and off must differ")

DEFAULT_LEVELS: tuple[Level, ...] = ("alarm", "critical")


class OutputConfig(Model, settings.OutputConfig):
    """One local output: a coil or holding register written when alarms raise and clear."""

    name: str = Field(
        pattern=NAME_PATTERN, description=("Output name; its fault alarm is NAME/output_fault.")
    )
    description: str = Field(default="", description="Free text for people.")
    device: str | None = Field(
        default=None, description=("A device of [[devices]]: its bus and unit carry the write.")
    )
    bus: str | None = Field(
        default=None,
        description=("A bus of [[buses]], for a relay module that is not polled (with unit)."),
    )
    unit: int | None = Field(
        default=None, ge=0, le=255, description=("Modbus unit on bus (only with bus).")
    )
    table: Literal["coil", "holding"] = Field(
        default="coil", description=("coil or holding register.")
    )
    address: int = Field(ge=0, le=65535, description="Coil or register address, 0-based.")
    on: int = Field(default=1, ge=0, le=65535, description="Value written to switch on.")
    off: int = Field(default=0, ge=0, le=65535, description="Value written to switch off.")
    points: list[str] = Field(
        default_factory=list, description=("Points whose alarms drive it; empty: every point.")
    )
    levels: list[Level] = Field(
        default_factory=lambda: list(DEFAULT_LEVELS), description=("Alarm levels that drive it.")
    )
    kinds: list[str] = Field(
        default_factory=list,
        description=("Rule kinds that drive it; empty: every kind but output_fault."),
    )
    until: Literal["clear", "ack"] = Field(
        default="clear",
        description=(
            "clear: on until the alarms clear; ack: off once they are acknowledged (sounders)."
        ),
    )
    timeout: float = Field(
        default=1.0, gt=0, le=30, description=("Seconds to wait for each answer.")
    )
    refresh: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description=("Seconds between read-backs that confirm the output still holds; 0: never."),
    )
    fault_level: Level = Field(
        default="fault", description=("Level of the output's output_fault alarm.")
    )

    @model_validator(mode="after")
    def _target(self) -> OutputConfig:
        if (self.device is None) == (self.bus is None) or (self.bus and self.unit is None):
            raise ValueError(TEXT_DEVICE_OR_BUS)
        if self.device is not None and self.unit is not None:
            raise ValueError(TEXT_UNIT_WITH_BUS)
        if self.table == "coil" and not {self.on, self.off} <= {0, 1}:
            raise ValueError(TEXT_COIL_VALUES)
        if self.on == self.off:
            raise ValueError(TEXT_SAME_VALUES)
        return self
