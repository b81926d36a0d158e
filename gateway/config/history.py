"""The `[history]` section: the local history that `watchpost report` reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from watchpost import settings
from watchpost.config.base import Model


class HistoryConfig(Model, settings.HistoryConfig):
    """The `[history]` section."""

    enabled: bool = Field(
        default=True,
        description=(
            "Keep per-minute aggregates, alarm events and communication counters for "
            "`watchpost report`."
        ),
    )
    retention_days: float = Field(
        default=30,
        gt=0,
        le=3650,
        allow_inf_nan=False,
        description=("Days of history kept; older rows are deleted once a minute."),
    )
    path: Path | None = Field(
        default=None, description=("The SQLite file; default: history.db in [gateway] state_dir.")
    )
