"""DL/T 645-2007 meters (`[[devices]]` on a bus of type ``dlt645``): address and DIs."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from watchpost import settings
from watchpost.config.points import MIN_INTERVAL, DeviceBase, PointBase
from watchpost.drivers.dlt645 import TEXT_UNKNOWN_DI, data_format


class Dlt645Point(PointBase, settings.Dlt645Point):
    """A meter reading: the data identifier (DI) it reads, decoded per its data format."""

    di: str = Field(
        description="Data identifier as written in the standard, 8 hex digits, e.g. 02030000 "
        "(total active power); docs/dlt645.md lists those the gateway decodes."
    )

    @model_validator(mode="before")
    @classmethod
    def _unit_from_di(cls, data: Any) -> Any:
        """Without a unit, the point takes the one of its DI's format (kWh, kW, V, ...)."""
        if isinstance(data, dict) and not data.get("unit") and isinstance(data.get("di"), str):
            fmt = data_format(data["di"])
            if fmt is not None and fmt.unit:
                return {**data, "unit": fmt.unit}
        return data

    @field_validator("di")
    @classmethod
    def _known_di(cls, di: str) -> str:
        if data_format(di) is None:
            raise ValueError(TEXT_UNKNOWN_DI.format(di=di))
        return di.upper()


class Dlt645Device(DeviceBase, settings.Dlt645Device):
    """A meter on a DL/T 645 line: one DI read per point, one meter after the other."""

    address: str = Field(
        pattern=r"^[0-9]{12}$", description="The meter's address: the 12 digits printed on it."
    )
    interval: float = Field(
        default=5.0,
        ge=MIN_INTERVAL,
        le=3600,
        allow_inf_nan=False,
        description=f"Seconds between polls (at least {MIN_INTERVAL}).",
    )
    points: list[Dlt645Point] = Field(min_length=1, description="The points read from it.")
