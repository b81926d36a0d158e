"""The driver registry's types: a bus type's pydantic config class and its factory.

A driver registers a ``DriverEntry``: its key (the `type` of `[[buses]]`), its config class
(a ``BusSettings``, a subclass of the bus type's plain class in ``watchpost.settings``) and a
factory that opens a bus. Config classes must not import the protocol's library (pymodbus,
pyserial): the config check loads them all, the factory loads the library only when a bus of
that type is opened. The daemon opens its buses through ``drivers.factories`` instead, which
takes the plain classes and imports no pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from watchpost import settings
from watchpost.drivers.base import BUS_NAME_PATTERN, Bus


class BusSettings(BaseModel, settings.BusSettings):
    """Base of every bus type's config (one `[[buses]]` entry); subclasses narrow ``type``.

    It repeats ``watchpost.config.Model``'s settings rather than importing it: the config
    package imports the driver registry, so the drivers must not import the config package.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: str = Field(description="Bus type.")
    name: str = Field(pattern=BUS_NAME_PATTERN, description="Bus name, unique in the file.")


C = TypeVar("C", bound=BusSettings)


class Driver(Protocol):
    """What the registry knows of a field protocol."""

    @property
    def key(self) -> str:
        """The bus type, as written in `[[buses]] type`."""
        ...

    @property
    def config(self) -> type[BusSettings]:
        """The pydantic class of one `[[buses]]` entry of this type."""
        ...

    def create(self, config: BusSettings) -> Bus:
        """A closed bus for ``config``; imports the protocol's library on first use."""
        ...


@dataclass(frozen=True, slots=True)
class DriverEntry(Generic[C]):
    """A ``Driver`` made of a config class and a factory."""

    key: str
    config: type[C]
    factory: Callable[[C], Bus]

    def create(self, config: BusSettings) -> Bus:
        if not isinstance(config, self.config):
            raise TypeError(f"bus {config.name}: a {self.key} bus needs {self.config.__name__}")
        return self.factory(config)
