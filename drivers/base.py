"""The small contract between a field bus and the poller, and the registry's types.

The registry's types (``DriverEntry``, the pydantic ``BusSettings``) are in
``drivers.entry``; this module imports no pydantic, so the daemon may use it.

Exceptions::

    BusError                 base: a transaction on a bus failed
    +-- CommError            no valid answer (timeout, no connection, bad frame); a retry can help
    +-- DeviceError          the device answered with an exception (a Modbus exception code,
    |                        a DL/T 645 abnormal reply); a retry will not help
    +-- AnswerError          the device answered, but the answer is unusable (a failed checksum,
                             a line that does not parse, an answer that does not fit its
                             request); its values are not trusted; a retry can help
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from watchpost.samples import Sample

BUS_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class Table(enum.StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: ``count`` registers or bits of ``table`` from ``address`` on ``unit``."""

    unit: int
    table: Table
    address: int
    count: int


class BusError(Exception):
    """A transaction on a bus failed."""

    retry_can_help = False


class CommError(BusError):
    """No valid answer (timeout, connection refused or lost, bad frame). A retry can help."""

    retry_can_help = True


class DeviceError(BusError):
    """The device answered with an exception code. A retry will not help."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class AnswerError(BusError):
    """The device answered, but the answer is unusable: a failed checksum, a line that does
    not parse, a value that is not a number, an answer whose shape does not fit the request
    (more or fewer registers than asked for). Its samples are `bad`. The next poll tries
    again; a device that keeps answering so is misconfigured or not the device meant."""

    retry_can_help = True


@dataclass(slots=True)
class PollOutcome:
    """What one poll of a device gave: every point's sample, and why some are not good.

    ``comm_error`` says the device did not answer (its samples are `comm`); ``errors`` hold
    what was wrong with answers that came (their samples are `bad`).
    """

    samples: list[Sample]
    comm_error: str | None = None
    errors: list[str] = field(default_factory=list)
    requests: int = 0


class Bus(Protocol):
    """One medium that carries one transaction at a time (an RS-485 line, a TCP endpoint).

    Callers serialise transactions themselves (the poller holds one lock per bus).
    """

    name: str

    async def open(self) -> None:
        """Connect; raise CommError if the medium is not there. May be called again after close."""

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        """Perform one read; raise CommError or DeviceError."""

    async def write(
        self,
        unit: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
        *,
        timeout: float,
    ) -> None:
        """Write coils or holding registers; raise CommError or DeviceError."""

    async def close(self) -> None:
        """Release the medium. Never raises."""


class PointSource(Protocol):
    """One device of a protocol that reads all its points itself (DL/T 645, serial lines)."""

    def longest_poll(self) -> float:
        """Seconds one poll may take when every read times out on every retry."""
        ...

    async def poll(self, *, down: bool) -> PollOutcome:
        """Every point once; ``down``: the device is known not to answer, one try only."""
        ...


@runtime_checkable
class SourceBus(Protocol):
    """A bus whose devices are read as whole devices (``PointSource``), not by registers."""

    name: str

    def source(self, device: Any, now_ms: Callable[[], int]) -> PointSource:
        """The reader of ``device`` (a config of this bus type's devices) on this bus."""
        ...


@dataclass(frozen=True, slots=True)
class PortSettings:
    """A serial port and how characters travel on it (the serial drivers' common part)."""

    port: str
    baudrate: int
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
