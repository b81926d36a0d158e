"""The alarm engine: rules evaluated on every sample, before anything is stored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlarmRule(BaseModel):
    """A threshold rule on one point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["high", "low"] = Field(description="high: raise above; low: raise below.")
    level: Literal["prealarm", "alarm", "critical"] = Field(
        default="alarm", description="Severity of the alarm.")
    threshold: float = Field(allow_inf_nan=False, description="Value at which the alarm raises.")
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                            description="How far back past the threshold the value must go to clear.")
