"""Config errors said the way an installer reads them: key path, message, the value given.

The wording is ``watchpost.error_text`` (shared with the daemon's checks of what it
receives); here the config's tagged unions (bus types, rule kinds, device kinds) are left out
of key paths.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from watchpost import error_text
from watchpost.config.alarms import RULE_KINDS
from watchpost.config.buses import BUS_TYPES
from watchpost.config.devices import DEVICE_KINDS
from watchpost.settings import print_config_error

__all__ = ["describe_error", "print_config_error"]

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

CONFIG_UNION_TAGS = BUS_TYPES | RULE_KINDS | DEVICE_KINDS


def describe_error(
    error: ErrorDetails | Mapping[str, Any], union_tags: Collection[str] = CONFIG_UNION_TAGS
) -> str:
    """``devices[1].points[3].scale: must be a number (got 'abc')``.

    ``union_tags`` are the discriminator values pydantic puts into an error's location for
    a member of a tagged union; they are not keys in the file and are left out of the path.
    """
    return error_text.describe_error(error, union_tags)
