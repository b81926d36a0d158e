"""The `[control]` section: the local control socket of the crews' CLI."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from watchpost import settings
from watchpost.config.base import Model


class ControlConfig(Model, settings.ControlConfig):
    """The `[control]` section."""

    socket: Path = Field(
        default=Path("/run/watchpost/control.sock"), description="Unix socket of the crews' CLI."
    )
