"""DL/T 645-2007 electricity meters on an RS-485 line (bus type ``dlt645``).

A frame (DL/T 645-2007, 7.1), optionally after ``FE`` wake-up bytes::

    68 A0 A1 A2 A3 A4 A5 68 C L DATA... CS 16

- ``A0..A5``: the meter's address, 12 BCD digits, lowest byte first: the address printed
  ``000012345678`` is sent ``78 56 34 12 00 00``; ``AA`` in every byte reaches any meter
  (used to learn the address of the only meter on a line).
- ``C``: bit 7 set on a reply, bit 6 set on an abnormal reply, bits 4..0 the function:
  11H read data (reply 91H, abnormal D1H with one error byte), 13H read address (reply 93H).
- ``L``: bytes of DATA. Every DATA byte travels plus 33H (modulo 256).
- ``CS``: the sum of every byte from the first 68H to the last DATA byte, modulo 256.

A read sends the data identifier (DI) ``DI3 DI2 DI1 DI0`` as written in the standard,
lowest byte first: ``02010100`` (phase A voltage) goes out as ``00 01 01 02`` + 33H each.
The reply's DATA is the DI again, then the value: BCD, lowest byte first, with the decimals
implied by the data format, and where the format has one a sign in the top bit of the
highest byte. ``FORMATS`` below lists the formats this driver decodes (docs/dlt645.md has the
same table for people).

One transaction at a time on the line (the poller holds the bus lock), meters one after
the other; a meter that does not answer within ``timeout`` gives `comm` samples, an
abnormal reply or a frame that fails its checksum `bad` ones.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from gettext import gettext as _
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.drivers.dlt645_bus import Dlt645Bus
    from watchpost.settings import Dlt645BusSettings

KEY = "dlt645"

START = 0x68
END = 0x16
WAKE = 0xFE
OFFSET = 0x33
READ_DATA = 0x11
READ_ADDRESS = 0x13
REPLY = 0x80
ABNORMAL = 0x40
FUNCTION = 0x1F
ANY_ADDRESS = "AAAAAAAAAAAA"  # reaches every meter: for the only meter on a line
MAX_DATA = 200  # DL/T 645-2007 7.1: L <= 200 for a read reply
MAX_FRAME = 12 + 255
KEPT_FRAMES = 16

# DL/T 645-2007 7.3, the error byte of an abnormal reply (bit: meaning)
ERROR_BITS = {
    0: _("other error"),
    1: _("no data requested (the meter does not have this DI)"),
    2: _("wrong password or not authorised"),
    3: _("the baud rate cannot be changed"),
    4: _("too many yearly time zones"),
    5: _("too many daily time periods"),
    6: _("too many tariffs"),
}

TEXT_NO_BIT = _("no bit set")
TEXT_NO_ANSWER = _("meter {address}: no answer to DI {di} within {timeout} s")
TEXT_OTHER_METER = _(" (a reply came from meter {other} instead: two meters share the line?)")
TEXT_ABNORMAL = _("meter {address}: DI {di}: abnormal reply, error byte {code:02X}H ({meaning})")
TEXT_CHECKSUM = _("meter {address}: DI {di}: reply fails its {what}")
TEXT_WRONG_DI = _("meter {address}: asked for DI {di}, the reply carries DI {got}")
TEXT_SHORT = _("meter {address}: DI {di}: reply holds {got} value byte(s), the format needs {need}")
TEXT_NOT_BCD = _("meter {address}: DI {di}: value bytes {raw} are not BCD")
TEXT_UNKNOWN_DI = _(
    "DI {di} is not one this driver decodes (energy 00.., demand 01.., variables 02..; "
    "docs/dlt645.md lists them)"
)


# -- addresses and data identifiers -----------------------------------------------------------


def address_bytes(address: str) -> bytes:
    """``000012345678`` -> ``78 56 34 12 00 00`` (lowest byte first)."""
    if not re.fullmatch(r"[0-9]{12}|[Aa]{12}", address):
        raise ValueError(f"address {address!r} is not 12 digits")
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    """The address as printed on the meter, from the 6 bytes of a frame."""
    return raw[::-1].hex().upper()


def di_bytes(di: str) -> bytes:
    """``02010100`` -> ``00 01 01 02`` (DI0 first), before the 33H offset."""
    return bytes.fromhex(di)[::-1]


# -- data formats (DL/T 645-2007 appendix A) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFormat:
    """How a DI's value is coded: ``size`` BCD bytes with ``decimals`` implied, and with
    ``signed`` a sign in the top bit of the highest byte (set: negative). A record longer
    than its value (a maximum demand and its time) has ``record`` bytes, the value first.
    """

    pattern: str  # as the standard writes it, e.g. XXXXXX.XX
    size: int
    decimals: int
    signed: bool
    unit: str
    what: str
    record: int = 0  # bytes of the whole record when longer than the value (demand + time)

    @property
    def length(self) -> int:
        return max(self.size, self.record)


def _fmt(
    pattern: str, unit: str, what: str, *, signed: bool = False, record: int = 0
) -> DataFormat:
    digits = len(pattern.replace(".", ""))
    decimals = len(pattern.partition(".")[2])
    return DataFormat(pattern, digits // 2, decimals, signed, unit, what, record)


ENERGY_KINDS: dict[int, tuple[str, str, bool]] = {
    # DI2: what, unit, signed (Table A.1: combined energies carry a sign in the top bit)
    0x00: ("combined active energy", "kWh", True),
    0x01: ("forward active energy", "kWh", False),
    0x02: ("reverse active energy", "kWh", False),
    0x03: ("combined reactive energy 1", "kvarh", True),
    0x04: ("combined reactive energy 2", "kvarh", True),
    0x05: ("quadrant I reactive energy", "kvarh", False),
    0x06: ("quadrant II reactive energy", "kvarh", False),
    0x07: ("quadrant III reactive energy", "kvarh", False),
    0x08: ("quadrant IV reactive energy", "kvarh", False),
    0x09: ("forward apparent energy", "kVAh", False),
    0x0A: ("reverse apparent energy", "kVAh", False),
}
DEMAND_KINDS: dict[int, tuple[str, str, bool]] = {
    # DI2 of 01......: maximum demand XX.XXXX and its time YYMMDDhhmm (Table A.2)
    0x01: ("forward active maximum demand", "kW", False),
    0x02: ("reverse active maximum demand", "kW", False),
    0x03: ("combined reactive 1 maximum demand", "kvar", True),
    0x04: ("combined reactive 2 maximum demand", "kvar", True),
    0x05: ("quadrant I reactive maximum demand", "kvar", False),
    0x06: ("quadrant II reactive maximum demand", "kvar", False),
    0x07: ("quadrant III reactive maximum demand", "kvar", False),
    0x08: ("quadrant IV reactive maximum demand", "kvar", False),
    0x09: ("forward apparent maximum demand", "kVA", False),
    0x0A: ("reverse apparent maximum demand", "kVA", False),
}
PHASES = {0x00: "total", 0x01: "phase A", 0x02: "phase B", 0x03: "phase C"}
# DI3 DI2 = 02 xx (Table A.3): the variables, per phase in DI1 (00 total where there is one)
VARIABLES: dict[int, tuple[DataFormat, tuple[int, ...]]] = {
    0x01: (_fmt("XXX.X", "V", "voltage"), (1, 2, 3)),
    0x02: (_fmt("XXX.XXX", "A", "current", signed=True), (1, 2, 3)),
    0x03: (_fmt("XX.XXXX", "kW", "active power", signed=True), (0, 1, 2, 3)),
    0x04: (_fmt("XX.XXXX", "kvar", "reactive power", signed=True), (0, 1, 2, 3)),
    0x05: (_fmt("XX.XXXX", "kVA", "apparent power"), (0, 1, 2, 3)),
    0x06: (_fmt("X.XXX", "", "power factor", signed=True), (0, 1, 2, 3)),
    0x07: (_fmt("XXX.X", "deg", "phase angle"), (1, 2, 3)),
    0x08: (_fmt("XX.XX", "%", "voltage waveform distortion"), (1, 2, 3)),
    0x09: (_fmt("XX.XX", "%", "current waveform distortion"), (1, 2, 3)),
}
HARMONICS: dict[int, DataFormat] = {  # 02 0A/0B phase n: harmonic content, n = 1..21
    0x0A: _fmt("XX.XX", "%", "voltage harmonic content"),
    0x0B: _fmt("XX.XX", "%", "current harmonic content"),
}
OTHER_VARIABLES: dict[str, DataFormat] = {  # 02 80 00 xx
    "02800001": _fmt("XXX.XXX", "A", "neutral current", signed=True),
    "02800002": _fmt("XX.XX", "Hz", "grid frequency"),
    "02800003": _fmt("XX.XXXX", "kW", "one-minute average active power", signed=True),
    "02800004": _fmt("XX.XXXX", "kW", "present active demand", signed=True),
    "02800005": _fmt("XX.XXXX", "kvar", "present reactive demand", signed=True),
    "02800006": _fmt("XX.XXXX", "kVA", "present apparent demand"),
    "02800007": _fmt("XXX.X", "degC", "meter temperature", signed=True),
    "02800008": _fmt("XX.XX", "V", "clock battery voltage"),
    "02800009": _fmt("XX.XX", "V", "meter-reading battery voltage"),
    "0280000A": _fmt("XXXXXXXX", "min", "internal battery working time"),
}


def data_format(di: str) -> DataFormat | None:
    """The format of ``di`` (8 hex digits as in the standard), or None if not supported."""
    di = di.upper()
    if not re.fullmatch(r"[0-9A-F]{8}", di):
        return None
    d3, d2, d1, d0 = bytes.fromhex(di)
    if d3 in (0x00, 0x01):
        return _energy_or_demand(d3, d2, d1, d0)
    if d3 != 0x02:
        return None
    if d2 in VARIABLES and d0 == 0:
        fmt, phases = VARIABLES[d2]
        return _labelled(fmt, PHASES[d1]) if d1 in phases else None
    if d2 in HARMONICS and d1 in (1, 2, 3) and 1 <= d0 <= 21:
        return _labelled(HARMONICS[d2], f"{PHASES[d1]}, harmonic {d0}")
    return OTHER_VARIABLES.get(di)


def _energy_or_demand(d3: int, d2: int, d1: int, d0: int) -> DataFormat | None:
    """DI3 00: energy XXXXXX.XX; 01: maximum demand XX.XXXX then its time (not read).
    DI1 is the tariff (00 total, 01..3F), DI0 the settlement day (00 current, 01..0C)."""
    kinds = ENERGY_KINDS if d3 == 0x00 else DEMAND_KINDS
    if d2 not in kinds or d1 > 0x3F or d0 > 0x0C:
        return None
    what, unit, signed = kinds[d2]
    tariff = "total" if d1 == 0 else f"tariff {d1}"
    when = "current" if d0 == 0 else f"settlement day -{d0}"
    label = f"{what}, {tariff}, {when}"
    if d3 == 0x00:
        return _fmt("XXXXXX.XX", unit, label, signed=signed)
    return _fmt("XX.XXXX", unit, label, signed=signed, record=8)


def _labelled(fmt: DataFormat, where: str) -> DataFormat:
    return DataFormat(
        fmt.pattern, fmt.size, fmt.decimals, fmt.signed, fmt.unit, f"{fmt.what}, {where}"
    )


def decode_value(fmt: DataFormat, raw: bytes) -> float:
    """The value of ``raw`` (value bytes, 33H already taken off, lowest byte first).

    ValueError if a nibble is not a decimal digit.
    """
    value_bytes = bytearray(raw[: fmt.size])
    negative = False
    if fmt.signed:
        negative = bool(value_bytes[-1] & 0x80)
        value_bytes[-1] &= 0x7F
    digits = bytes(reversed(value_bytes)).hex()
    if not digits.isdigit():
        raise ValueError(digits)
    value = int(digits) / float(10**fmt.decimals)
    return -value if negative else value


def encode_value(fmt: DataFormat, value: float) -> bytes:
    """The value bytes of ``value`` (lowest byte first, before the 33H offset): for the
    simulator. ValueError if it does not fit the format."""
    scaled = round(abs(value) * 10**fmt.decimals)
    digits = f"{scaled:0{fmt.size * 2}d}"
    if len(digits) > fmt.size * 2 or (fmt.signed and digits[0] > "7"):
        raise ValueError(f"{value} does not fit {fmt.pattern}")
    if value < 0 and not fmt.signed:
        raise ValueError(f"{value}: {fmt.pattern} has no sign")
    raw = bytearray(bytes.fromhex(digits)[::-1])
    if value < 0 and scaled:
        raw[-1] |= 0x80
    return bytes(raw) + bytes(fmt.length - fmt.size)


# -- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: address as printed, control code, DATA with the 33H offset taken off."""

    address: str
    control: int
    data: bytes

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)


def encode_frame(address: str, control: int, data: bytes = b"", *, wake: int = 4) -> bytes:
    """The bytes of a frame, with ``wake`` FE bytes in front."""
    body = bytearray([START, *address_bytes(address), START, control, len(data)])
    body += bytes((b + OFFSET) & 0xFF for b in data)
    body.append(sum(body) & 0xFF)
    body.append(END)
    return bytes([WAKE] * wake) + bytes(body)


def read_request(address: str, di: str, *, wake: int = 4) -> bytes:
    """A read-data request (C=11H) for ``di``."""
    return encode_frame(address, READ_DATA, di_bytes(di), wake=wake)


class FrameDecoder:
    """A framer for SerialPort: finds frames in the byte stream, checks them, keeps the last
    few. Wake-up bytes and garbage between frames are skipped; a frame that fails its
    checksum or end byte is kept as a fault. Holds at most one frame's bytes plus a chunk."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._buffer = bytearray()
        self.frames: deque[Frame | str] = deque(maxlen=KEPT_FRAMES)
        self.on_change = on_change
        self.skipped = 0  # bytes that were not part of a frame

    def reset(self) -> None:
        self._buffer.clear()
        self.frames.clear()

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        found = False
        while buffer:
            start = buffer.find(START)
            if start < 0:
                self.skipped += len(buffer)
                buffer.clear()
                break
            if start:
                self.skipped += start
                del buffer[:start]
            if len(buffer) < 10:
                break
            if buffer[7] != START:
                self.skipped += 1
                del buffer[:1]
                continue
            total = 12 + buffer[9]
            if len(buffer) < total:
                # garbage can look like the start of a long frame; a whole good frame
                # behind it is the real one
                later = _later_frame(buffer)
                if later is None:
                    break
                self.skipped += later
                del buffer[:later]
                continue
            frame = bytes(buffer[:total])
            if (sum(frame[:-2]) & 0xFF) != frame[-2]:
                self.frames.append("checksum")
            elif frame[-1] != END:
                self.frames.append("end byte")
            else:
                data_field = bytes((b - OFFSET) & 0xFF for b in frame[10:-2])
                self.frames.append(Frame(address_text(frame[1:7]), frame[8], data_field))
                del buffer[:total]
                found = True
                continue
            found = True  # a fault: resynchronise one byte on
            self.skipped += 1
            del buffer[:1]
        if len(buffer) > MAX_FRAME:  # cannot happen with L <= 255, kept as the bound
            del buffer[: len(buffer) - MAX_FRAME]
        if found and self.on_change is not None:
            self.on_change()


def _later_frame(buffer: bytearray) -> int | None:
    """Where a complete frame with a good checksum and end byte starts after offset 0."""
    index = buffer.find(START, 1)
    while index >= 0:
        if index + 10 <= len(buffer) and buffer[index + 7] == START:
            end = index + 12 + buffer[index + 9]
            if (
                end <= len(buffer)
                and buffer[end - 1] == END
                and sum(buffer[index : end - 2]) & 0xFF == buffer[end - 2]
            ):
                return index
        index = buffer.find(START, index + 1)
    return None


def error_meaning(code: int) -> str:
    """The set bits of an abnormal reply's error byte, in words."""
    meanings = [text for bit, text in ERROR_BITS.items() if code & (1 << bit)]
    return "; ".join(meanings) or TEXT_NO_BIT


def create(config: Dlt645BusSettings) -> Dlt645Bus:
    """A closed bus; pyserial is imported here, not when the config is loaded."""
    from watchpost.drivers.dlt645_bus import Dlt645Bus  # noqa: PLC0415 - keeps the config light

    return Dlt645Bus(config)


def __getattr__(name: str) -> object:
    """``Config`` and ``DRIVER``, the pydantic side, from ``dlt645_config`` on first use (the
    daemon never loads them)."""
    if name in ("Config", "DRIVER"):
        from watchpost.drivers import dlt645_config  # noqa: PLC0415 - pydantic, not for the daemon

        return getattr(dlt645_config, name)
    raise AttributeError(name)
