"""One live read of any registers of a device, decoded: `watchpost read`.

Shared by the daemon (the control socket's ``read``, through the bus scheduler) and the CLI's
direct mode. A module of its own so that the daemon does not import the crew's CLI tooling
(tables, backlog and self-test output) for it.
"""

from __future__ import annotations

from gettext import gettext as _
from typing import Any

from watchpost.control import ControlError
from watchpost.drivers.base import ReadRequest, Table
from watchpost.drivers.codec import WordOrder, decode

TEXT_WORD_ORDER = _("word order {order!r} is neither 'big' nor 'little'")
WORD_ORDERS: dict[str, WordOrder] = {"big": "big", "little": "little"}


async def read_values(
    bus: Any,
    unit: int,
    timeout: float,
    *,
    address: int,
    count: int,
    table: str,
    type: str,
    word_order: str,
) -> dict[str, Any]:
    """Read ``count`` values of ``type`` and decode them; shared by the daemon and direct mode."""
    kind = Table(table)
    width = 1 if kind.is_bits or type in ("int16", "uint16") else 2
    raw = await bus.read(ReadRequest(unit, kind, address, count * width), timeout=timeout)
    addresses = [address + i * width for i in range(count)]
    if kind.is_bits:
        return {
            "addresses": addresses,
            "raw": [int(b) for b in raw],
            "values": [bool(b) for b in raw],
        }
    order = WORD_ORDERS.get(word_order)
    if order is None:
        raise ControlError(TEXT_WORD_ORDER.format(order=word_order))
    groups = [[int(w) for w in raw[i * width : (i + 1) * width]] for i in range(count)]
    return {
        "addresses": addresses,
        "raw": groups,
        "values": [decode(g, type, order) for g in groups],
    }
