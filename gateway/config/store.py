"""The `[store]` section: the on-disk outbox (store and forward)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from watchpost import settings
from watchpost.config.base import Model


class StoreConfig(Model, settings.StoreConfig):
    """The `[store]` section."""

    path: Path = Field(description="The SQLite file, e.g. /var/lib/watchpost/buffer.db.")
    commit_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between telemetry commits: what a power cut can cost at most.",
    )
    quota_mb: float = Field(
        default=512,
        gt=0,
        le=1_000_000,
        description="Disk quota of the store in MiB; past it the oldest telemetry is evicted.",
    )
    min_free_mb: float = Field(
        default=64,
        ge=0,
        le=1_000_000,
        description="Free space (MiB) to leave on the filesystem: below it the store stops "
        "growing and evicts the oldest telemetry as if the quota were reached.",
    )
    keep_sent: float = Field(
        default=86400.0,
        ge=0,
        le=30 * 86400,
        allow_inf_nan=False,
        description="Seconds a message is kept after the broker acknowledged it, so that the "
        "platform can ask for it again (cmd/resend) when the broker lost it; 0 keeps nothing. "
        "Within quota_mb: kept messages go first when the store is full, before unsent telemetry.",
    )
    alarm_reserve_mb: float = Field(
        default=4,
        ge=0,
        le=1024,
        description="Room kept for alarms (MiB): a file beside the store, given back when the "
        "disk is full so that alarms and acknowledgements can still be stored; made again once "
        "the filesystem has twice that free. 0: no reserve.",
    )
    alarm_spill: Path | None = Field(
        default=None,
        description="A second file, best on another filesystem (e.g. /run/watchpost/spill.jsonl "
        "or a USB stick): alarm events that the full disk cannot take are written there at "
        "once, read back into the store at the next start and sent with their seqs. Unset: "
        "they wait in memory (lost if the daemon stops before the disk has room).",
    )
