"""A DL/T 645-2007 meter emulator on a real pseudo-terminal, for the tests.

Written from the standard's frame layout (DL/T 645-2007 section 7), not from the gateway's
driver or the simulator:

    [FE FE FE FE] 68 A0 A1 A2 A3 A4 A5 68 C L DATA CS 16

A0 is the lowest byte of the 12-digit address; every DATA byte travels plus 33H; CS is the
byte sum from the first 68H up to the last DATA byte. A read is C=11H with DATA = DI0..DI3;
the normal reply is C=91H with DATA = DI0..DI3 and the value's bytes (BCD, lowest byte
first), the abnormal reply C=D1H with one error byte. C=13H to address AA..AA asks the only
meter on the line for its address; the reply is C=93H with the address as DATA.

The driver opens the slave side by its path with pyserial; the emulator reads and writes
the master side in a thread of its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.kit.lines import FarEnd


def bcd(digits: str, *, negative: bool = False) -> bytes:
    """Value bytes as the meter sends them: ``"2202"`` (220.2 V) -> ``02 22``.

    ``digits`` are written most significant first, as the value reads; the sign, where the
    format has one, is the top bit of the most significant byte (the last one sent).
    """
    raw = bytearray(bytes.fromhex(digits)[::-1])
    if negative:
        raw[-1] |= 0x80
    return bytes(raw)


def address_field(address: str) -> bytes:
    return bytes.fromhex(address)[::-1]


def frame(address: str, control: int, data: bytes, *, wake: int = 0) -> bytes:
    body = bytes([0x68]) + address_field(address) + bytes([0x68, control, len(data)])
    body += bytes((b + 0x33) & 0xFF for b in data)
    return b"\xfe" * wake + body + bytes([sum(body) & 0xFF, 0x16])


@dataclass
class Meter:
    """One emulated meter: its values by DI (value bytes) and how it misbehaves.

    ``mode``: normal, silent, abnormal (reply D1H with ``error``), checksum (a wrong CS),
    impostor (the reply carries ``impostor`` as its address), garbage (junk before the
    reply), half (only the first half of the reply, then nothing).
    """

    address: str
    values: dict[str, bytes] = field(default_factory=dict)
    mode: str = "normal"
    error: int = 0x02
    impostor: str = "999999999998"
    delay: float = 0.0

    def reply(self, control: int, data: bytes) -> bytes | None:
        if self.mode == "silent":
            return None
        if control == 0x13:
            return frame(self.address, 0x93, address_field(self.address), wake=4)
        di = data[:4]
        name = di[::-1].hex().upper()
        if self.mode == "abnormal" or name not in self.values:
            code = self.error if self.mode == "abnormal" else 0x02  # bit 1: no such data
            return frame(self.address, 0xD1, bytes([code]), wake=4)
        answer = frame(
            self.impostor if self.mode == "impostor" else self.address,
            0x91,
            di + self.values[name],
            wake=4,
        )
        if self.mode == "checksum":
            answer = answer[:-2] + bytes([(answer[-2] + 1) & 0xFF, 0x16])
        elif self.mode == "garbage":
            answer = b"\x00\x13\x37garbage\x68\x01\x02" + answer
        elif self.mode == "half":
            answer = answer[: len(answer) // 2]
        return answer


class MeterLine(FarEnd):
    """A pseudo-terminal with meters on its far end. ``path`` is the gateway's port."""

    def __init__(self, *meters: Meter) -> None:
        super().__init__("meter-line")
        self.meters = {meter.address: meter for meter in meters}
        self.requests: list[bytes] = []
        self._buffer = bytearray()

    def __enter__(self) -> MeterLine:
        super().__enter__()
        return self

    def on_bytes(self, chunk: bytes) -> None:
        self._buffer += chunk
        for request in self._requests():
            self._answer(request)

    def _requests(self) -> Iterator[bytes]:
        """Complete request frames in the buffer (wake-up bytes dropped)."""
        buffer = self._buffer
        while True:
            start = buffer.find(0x68)
            if start < 0:
                buffer.clear()
                return
            del buffer[:start]
            if len(buffer) < 10 or len(buffer) < 12 + buffer[9]:
                return
            total = 12 + buffer[9]
            yield bytes(buffer[:total])
            del buffer[:total]

    def _answer(self, request: bytes) -> None:
        self.requests.append(request)
        if sum(request[:-2]) & 0xFF != request[-2] or request[-1] != 0x16:
            return  # a meter ignores a broken request
        address = request[1:7][::-1].hex().upper()
        control = request[8]
        data = bytes((b - 0x33) & 0xFF for b in request[10:-2])
        if address == "AAAAAAAAAAAA":
            meters = list(self.meters.values())
        else:
            meters = [self.meters[address]] if address in self.meters else []
        answers = [a for a in (meter.reply(control, data) for meter in meters) if a is not None]
        if len(answers) > 1:
            # several meters talking at once on RS-485: the line carries a mix of them
            # (the dominant level wins bit by bit), which no receiver can take apart
            mixed = bytearray(answers[0])
            for other in answers[1:]:
                for i in range(min(len(mixed), len(other))):
                    mixed[i] &= other[i]
            answers = [bytes(mixed)]
        for meter, answer in zip(meters, answers, strict=False):
            if meter.delay:
                time.sleep(meter.delay)
            os.write(self.master, answer)
