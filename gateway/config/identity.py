"""The `[gateway]` section: who this gateway is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from watchpost.config.base import Model, TopicLevel


class GatewayIdentity(Model):
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
