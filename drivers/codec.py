"""Raw Modbus words and bits to engineering values, with pymodbus's own conversions.

The poll path uses ``reader`` (plain integer and ``struct`` arithmetic); ``decode`` and
``encode`` (a live read, the tests) import pymodbus at their first call, so that a daemon
whose buses are all Modbus TCP (their own client) never loads pymodbus and pyserial.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pymodbus.client.mixin import ModbusClientMixin

WordOrder = Literal["big", "little"]


def _mixin() -> type[ModbusClientMixin[Any]]:
    """pymodbus's conversions, imported at the first ``decode`` or ``encode``."""
    from pymodbus.client.mixin import ModbusClientMixin  # noqa: PLC0415 - not on the poll path

    return ModbusClientMixin


def _datatype(mixin: type[ModbusClientMixin[Any]], data_type: str) -> ModbusClientMixin.DATATYPE:
    return {
        "int16": mixin.DATATYPE.INT16,
        "uint16": mixin.DATATYPE.UINT16,
        "int32": mixin.DATATYPE.INT32,
        "uint32": mixin.DATATYPE.UINT32,
        "float32": mixin.DATATYPE.FLOAT32,
    }[data_type]


def decode(words: list[int], data_type: str, word_order: WordOrder = "big") -> float:
    """Decode the registers of one value; word order big: the first register is the high word."""
    mixin = _mixin()
    value = mixin.convert_from_registers(words, _datatype(mixin, data_type), word_order=word_order)
    return float(value)  # type: ignore[arg-type]


# A register reader: the value of one point whose first register is at ``index``.
Reader = Callable[[Sequence[int], int], float]
_FLOAT32 = struct.Struct(">f")
_WORDS = struct.Struct(">HH")


def _uint16(words: Sequence[int], index: int) -> float:
    return words[index]


def _int16(words: Sequence[int], index: int) -> float:
    word = words[index]
    return word - 0x10000 if word & 0x8000 else word


def _uint32_big(words: Sequence[int], index: int) -> float:
    return words[index] << 16 | words[index + 1]


def _uint32_little(words: Sequence[int], index: int) -> float:
    return words[index + 1] << 16 | words[index]


def _int32_big(words: Sequence[int], index: int) -> float:
    value = words[index] << 16 | words[index + 1]
    return value - 0x1_0000_0000 if value & 0x8000_0000 else value


def _int32_little(words: Sequence[int], index: int) -> float:
    value = words[index + 1] << 16 | words[index]
    return value - 0x1_0000_0000 if value & 0x8000_0000 else value


def _float32_big(words: Sequence[int], index: int) -> float:
    return float(_FLOAT32.unpack(_WORDS.pack(words[index], words[index + 1]))[0])


def _float32_little(words: Sequence[int], index: int) -> float:
    return float(_FLOAT32.unpack(_WORDS.pack(words[index + 1], words[index]))[0])


_READERS: dict[tuple[str, str], Reader] = {
    ("uint16", "big"): _uint16,
    ("uint16", "little"): _uint16,
    ("int16", "big"): _int16,
    ("int16", "little"): _int16,
    ("uint32", "big"): _uint32_big,
    ("uint32", "little"): _uint32_little,
    ("int32", "big"): _int32_big,
    ("int32", "little"): _int32_little,
    ("float32", "big"): _float32_big,
    ("float32", "little"): _float32_little,
}


def reader(data_type: str, word_order: WordOrder = "big") -> Reader:
    """A fast ``decode`` for the poll path: reads one value out of a whole answer at an index.

    Same numbers as ``decode`` (pymodbus's conversion) for registers of 0..65535, without
    building a list and a byte string per value; the caller makes it once per point.
    """
    return _READERS[(data_type, word_order)]


def encode(value: float, data_type: str, word_order: WordOrder = "big") -> list[int]:
    """The registers that hold ``value`` (the inverse of ``decode``)."""
    raw: int | float = value if data_type == "float32" else round(value)
    mixin = _mixin()
    return mixin.convert_to_registers(raw, _datatype(mixin, data_type), word_order=word_order)


def scaled(raw: float, scale: float, offset: float) -> float | None:
    """``raw * scale + offset``, or None when the result is not a finite number."""
    value = raw * scale + offset
    return value if math.isfinite(value) else None
