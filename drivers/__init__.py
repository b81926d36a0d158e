"""Field protocols. Each driver has a KEY, a plain settings class, a pydantic ``Config`` and
a ``DRIVER`` entry; the registry ``DRIVERS`` is in ``drivers.registry``.

Importing this package is light: no pydantic, no protocol library. ``DRIVERS`` (which loads
every bus type's pydantic config class) is loaded on first use, by the config layer and the
crews' tools; the daemon opens its buses through ``drivers.factories``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.drivers.registry import DRIVERS

__all__ = ["DRIVERS"]


def __getattr__(name: str) -> object:
    if name == "DRIVERS":
        from watchpost.drivers.registry import DRIVERS  # noqa: PLC0415 - pydantic: on first use

        return DRIVERS
    raise AttributeError(name)
