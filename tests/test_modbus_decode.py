"""The bus's own decoding of register answers gives what pymodbus's does, byte for byte.

`drivers/modbus.py` decodes a register answer in one ``struct`` call instead of pymodbus's
loop over the registers (a cost paid on every read); these are the same registers, the same
error for a byte count past the end of the answer, and the byte count and payload length that
the answer check reads, for random answers of every length and byte count.
"""

from __future__ import annotations

import random

import pytest
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from watchpost.drivers.modbus import _HoldingAnswer, _InputAnswer


def _outcome(answer: ModbusPDU, data: bytes) -> tuple[str, str, list[int]]:
    try:
        answer.decode(data)
    except Exception as exc:  # the kind of error is what is compared
        return type(exc).__name__, str(exc), list(answer.registers)
    return "ok", "", list(answer.registers)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (_HoldingAnswer, ReadHoldingRegistersResponse),
        (_InputAnswer, ReadInputRegistersResponse),
    ],
)
def test_register_answers_decode_as_pymodbus_does(
    ours: type[ModbusPDU], theirs: type[ModbusPDU]
) -> None:
    rng = random.Random(10)
    for _ in range(3000):
        payload = rng.randbytes(rng.randint(0, 252))
        byte_count = rng.choice([len(payload), len(payload) - 1, len(payload) + 1, 0, 255])
        data = bytes([byte_count % 256]) + payload if rng.random() < 0.97 else b""
        mine, reference = ours(), theirs()
        assert _outcome(mine, data) == _outcome(reference, data), data.hex()
        if data:
            assert mine.byte_count == data[0]  # type: ignore[attr-defined]
            assert mine.payload_length == len(data) - 1  # type: ignore[attr-defined]
