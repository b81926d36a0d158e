"""The on-disk outbox (SQLite, WAL): every message that leaves the gateway passes through it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class StoreConfig(BaseModel):
    """The `[store]` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="The SQLite file, e.g. /var/lib/watchpost/buffer.db.")
    commit_interval: float = Field(
        default=1.0, gt=0, le=60,
        description="Seconds between telemetry commits: what a power cut can cost at most.")
