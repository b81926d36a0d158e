"""The `[commands]` section: how commands from the platform are authenticated.

The verification itself is ``watchpost.command_auth``; this module does not import it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from watchpost import settings
from watchpost.config.base import Model


class CommandsConfig(Model, settings.CommandsConfig):
    """The `[commands]` section."""

    verify_key: Path | None = Field(
        default=None,
        description="The platform's Ed25519 public key (PEM) that signs every command but ping "
        "(`watchpost ca command-key` makes the pair). Without it commands are accepted "
        "unsigned, with a warning at start and in selftest.",
    )
    max_age: float = Field(
        default=300.0,
        ge=10,
        le=86400,
        allow_inf_nan=False,
        description="Seconds a signed command's ts may be older or newer than the gateway's "
        "clock; its id is remembered for as long, so that a replay is refused.",
    )
