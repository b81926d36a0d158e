"""The small contract between a field bus and the poller.

Exceptions::

    BusError                 base: a transaction on a bus failed
    +-- CommError            no valid answer (timeout, no connection, bad frame); a retry can help
    +-- DeviceError          the device answered with a Modbus exception; a retry will not help
    +-- AnswerError          an answer that does not fit its request (length, byte count);
                             its values are not trusted; a retry may help, the next poll retries
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


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
    """The device answered with a Modbus exception code. A retry will not help."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class AnswerError(BusError):
    """An answer whose shape does not fit the request (more or fewer registers than asked
    for, a byte count that does not match): the values are not trusted. The next poll tries
    again; a device that keeps answering so is misconfigured or not the device meant."""

    retry_can_help = True


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
