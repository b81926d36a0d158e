"""The `[gateway]` section: who this gateway is."""

from __future__ import annotations

import zoneinfo
from gettext import gettext as _
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from watchpost import settings
from watchpost.config.base import Model, TopicLevel

TEXT_NO_ZONE = _("{zone!r} is not a known time zone (e.g. Asia/Shanghai)")


class GatewayIdentity(Model, settings.GatewayIdentity):
    """Who this gateway is; the names appear in every MQTT topic."""

    site: TopicLevel = Field(description="Site id, the second level of topics.")
    id: TopicLevel = Field(description="Gateway id, unique within the site.")
    state_dir: Path | None = Field(
        default=None,
        description="Identity and calibration state; default: the folder of [store] path.",
    )
    clock: Literal["ntp", "rtc"] = Field(
        default="ntp",
        description="ntp: trust the wall clock once the kernel says NTP has set it (a Pi has "
        "no real-time clock); rtc: the box keeps time by itself.",
    )
    language: Literal["en", "zh_CN"] | None = Field(
        default=None,
        description="Language of what the gateway writes for people (log sentences, status "
        "texts, the report) when the environment (LANGUAGE, LC_ALL, LC_MESSAGES, LANG) names "
        "none, as under systemd; the environment wins otherwise. Read at start.",
    )
    timezone: str | None = Field(
        default=None,
        description="The site's IANA time zone, e.g. Asia/Shanghai, for the times people read "
        "(the report); default UTC. The store and MQTT keep UTC milliseconds.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(TEXT_NO_ZONE.format(zone=value)) from exc
        return value
