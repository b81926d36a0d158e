"""Line-oriented serial instruments (`[[devices]]` on a bus of type ``serial_line``)."""

from __future__ import annotations

import re
from gettext import gettext as _
from typing import Literal

from pydantic import Field, field_validator, model_validator

from watchpost import settings
from watchpost.config.points import DeviceBase, PointBase
from watchpost.drivers.serial_line import check_escapes

TEXT_NO_VALUE_GROUP = _("pattern needs a named group value, e.g. CH4=(?P<value>[-+0-9.]+)")
TEXT_BAD_PATTERN = _("not a regular expression: {error}")
TEXT_ONE_SOURCE = _("give exactly one of pattern or field")


class LinePoint(PointBase, settings.LinePoint):
    """A number taken from a line: by ``pattern`` or by ``field``."""

    pattern: str | None = Field(
        default=None,
        description="A regular expression with a named group value, searched in each line, "
        "e.g. CH4=(?P<value>[-+0-9.]+).",
    )
    field: int | None = Field(
        default=None,
        ge=0,
        le=255,
        description="Index (from 0) of the field of a delimited line (see the device's delimiter).",
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(TEXT_BAD_PATTERN.format(error=exc)) from exc
        if "value" not in compiled.groupindex:
            raise ValueError(TEXT_NO_VALUE_GROUP)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LinePoint:
        if (self.pattern is None) == (self.field is None):
            raise ValueError(TEXT_ONE_SOURCE)
        return self


class LineDevice(DeviceBase, settings.LineDevice):
    """An instrument on a line: it streams lines on its own, or answers ``request``."""

    request: str | None = Field(
        default=None,
        min_length=1,
        description="Sent every interval to ask for a line, escapes allowed, e.g. READ\\r. "
        "Without it the instrument streams lines on its own.",
    )
    timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds to wait for a line before quality comm."
    )
    retries: int = Field(default=0, ge=0, le=5, description="Requests again without a line.")
    checksum: Literal["none", "nmea"] = Field(
        default="none", description="Line checksum: none, or nmea ($...*hh, XOR)."
    )
    delimiter: str = Field(
        default=",", min_length=1, description="Separates the fields of a line, for field points."
    )
    points: list[LinePoint] = Field(min_length=1, description="The points read from it.")

    @field_validator("request")
    @classmethod
    def _request(cls, value: str | None) -> str | None:
        if value is not None:
            check_escapes(value)
        return value
