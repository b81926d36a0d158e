"""The `[[buses]]` list: one entry per field bus, its keys decided by its `type`.

The union of bus configs is derived from the driver registry (``watchpost.drivers.DRIVERS``),
so a new protocol adds its bus type here by registering. The registry holds config classes
and lazy factories: loading it does not load pymodbus or pyserial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from watchpost.drivers import DRIVERS
from watchpost.drivers.entry import BusSettings

if TYPE_CHECKING:
    # Type checkers see the common base; pydantic (at run time) sees the tagged union.
    BusConfig = BusSettings
else:
    BusConfig = Annotated[
        Union[tuple(driver.config for driver in DRIVERS.values())],  # noqa: UP007 - derived
        Field(discriminator="type"),
    ]

BUS_TYPES = frozenset(DRIVERS)
"""The `type` values of `[[buses]]`; pydantic puts them into an error's location."""
