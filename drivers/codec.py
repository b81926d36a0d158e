"""Raw Modbus words and bits to engineering values, with pymodbus's own conversions."""

from __future__ import annotations

import math
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

_DATATYPES = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
}

WordOrder = Literal["big", "little"]


def decode(words: list[int], data_type: str, word_order: WordOrder = "big") -> float:
    """Decode the registers of one value; word order big: the first register is the high word."""
    value = ModbusClientMixin.convert_from_registers(words, _DATATYPES[data_type],
                                                     word_order=word_order)
    return float(value)  # type: ignore[arg-type]


def encode(value: float, data_type: str, word_order: WordOrder = "big") -> list[int]:
    """The registers that hold ``value`` (the inverse of ``decode``)."""
    raw: int | float = value if data_type == "float32" else round(value)
    return ModbusClientMixin.convert_to_registers(raw, _DATATYPES[data_type],
                                                  word_order=word_order)


def scaled(raw: float, scale: float, offset: float) -> float | None:
    """``raw * scale + offset``, or None when the result is not a finite number."""
    value = raw * scale + offset
    return value if math.isfinite(value) else None
