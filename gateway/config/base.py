"""What every config model shares: the base class, the name pattern, the error and its exit code.

Nothing here imports a runtime module: the simulator, the provisioning tools and the CLI
build on these types without loading the daemon.
"""

from __future__ import annotations

import re
import tomllib
from gettext import gettext as _
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from watchpost.settings import EXIT_CONFIG, ConfigError

__all__ = ["EXIT_CONFIG", "ConfigError", "Model", "read_toml"]  # the first two: settings'

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
TOPIC_LEVEL_PATTERN = r"[A-Za-z0-9_-]+"

TEXT_NO_FILE = _("cannot read the file: {error}")
TEXT_BOM = _(
    "the file starts with a byte order mark (BOM, bytes EF BB BF), which TOML does not allow: "
    "save it as UTF-8 without BOM"
)
TEXT_TOO_DEEP = _("arrays or tables are nested too deeply to be a config file")
TEXT_TOML = _("not valid TOML: {error}")
TEXT_DOT_IN_ID = _(
    "may not hold '.': some brokers (RabbitMQ's MQTT plugin) read it as a topic separator, "
    "so the platform would see the messages under another topic; use '-' or '_'"
)
TEXT_BAD_ID = _("may hold only letters, digits, '_' and '-' (it is a level of every MQTT topic)")


def _topic_level(value: str) -> str:
    if "." in value:
        raise ValueError(TEXT_DOT_IN_ID)
    if not re.fullmatch(TOPIC_LEVEL_PATTERN, value):
        raise ValueError(TEXT_BAD_ID)
    return value


TopicLevel = Annotated[str, AfterValidator(_topic_level)]
"""A site or gateway id: one level of every MQTT topic, the same on every broker."""


class Model(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path``; ConfigError if it cannot be read or is not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [TEXT_NO_FILE.format(error=exc)]) from exc
    if text.startswith("\ufeff"):
        raise ConfigError(path, [TEXT_BOM])
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [TEXT_TOML.format(error=exc)]) from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(path, [TEXT_TOO_DEEP]) from exc
