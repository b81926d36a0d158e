"""What the Modbus buses say about a transaction, shared by the TCP client and pymodbus's RTU
bus: the exception codes' names, the errors' texts and the shape check of a read answer.

Imports no protocol library, so the lean TCP bus (``modbus_tcp_bus``) needs no pymodbus.
"""

from __future__ import annotations

from gettext import gettext as _

from watchpost.drivers.base import ReadRequest

# Modbus exception codes (Modbus Application Protocol V1.1b3, section 7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

TEXT_CANNOT_CONNECT = _("bus {name}: cannot connect to {where}")
TEXT_AT = _("bus {name}: {what}: {problem}")
TEXT_NO_ANSWER = _("bus {name}: {what}: no answer ({error})")
TEXT_EXCEPTION = _("bus {bus}: {what}: exception {code} ({name})")
TEXT_READ_ONLY = _("bus {name}: {what}: {table} is read-only")
TEXT_READ_WHAT = _("unit {unit} {table} {address}+{count}")
TEXT_WRITE_WHAT = _("unit {unit} {table} {address} write {values}")
TEXT_REGISTERS_MISMATCH = _(
    "answer has byte count {byte_count} and {length} data bytes; {count} registers need {expected}"
)
TEXT_BITS_MISMATCH = _(
    "answer has byte count {byte_count} and {length} data bytes; {count} bits need {expected}"
)


def shape_mismatch(request: ReadRequest, byte_count: int, length: int) -> str | None:
    """Why an answer of ``byte_count`` and ``length`` data bytes does not answer ``request``
    (more or fewer registers or bits than asked for, a byte count that is not the data's),
    or None if it does."""
    expected = (request.count + 7) // 8 if request.table.is_bits else 2 * request.count
    if byte_count == expected and length == expected:
        return None
    text = TEXT_BITS_MISMATCH if request.table.is_bits else TEXT_REGISTERS_MISMATCH
    return text.format(byte_count=byte_count, length=length, count=request.count, expected=expected)


def name_of(what: str | ReadRequest) -> str:
    """A transaction's name for an error: a read is only formatted when it failed."""
    if isinstance(what, ReadRequest):
        return TEXT_READ_WHAT.format(
            unit=what.unit, table=what.table, address=what.address, count=what.count
        )
    return what
