"""`watchpost scan --dlt645`: find the DL/T 645-2007 meters on an RS-485 line.

Per line setting (2400 8E1 first, the standard's default), two ways to find a meter:

- the broadcast address read (C=13H to ``AAAAAAAAAAAA``): the meter answers with its own
  address. Every meter on the line answers it, so it works only where one meter hangs on
  the line; several answers at once garble each other, and the scan says so;
- a list of addresses to try (``--addresses``, the numbers printed on the meters, or a range
  of them): each is asked for its forward active energy (DI 00010000); a normal or an
  abnormal reply proves a meter with that address listens at that setting.

The proposed ``[[buses]]`` and ``[[devices]]`` go to stdout, progress to stderr, as for the
Modbus scan. Stop the daemon first: two masters on one line garble each other's frames.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from gettext import gettext as _
from typing import TYPE_CHECKING

from watchpost.drivers import dlt645
from watchpost.drivers.base import AnswerError, CommError, DeviceError
from watchpost.drivers.dlt645_config import Config as Dlt645Config
from watchpost.provisioning.tomlwrite import value_text

if TYPE_CHECKING:
    from watchpost.drivers.dlt645_bus import Dlt645Bus

ENERGY_DI = "00010000"
POWER_DI = "02030000"
METER_BAUDS = (2400, 1200, 4800, 9600)
MAX_ADDRESSES = 1000

TEXT_BAD_ADDRESSES = _(
    "{value!r} is not a list of 12-digit meter addresses, e.g. "
    "000012345678,000012345679 or 000012345670-000012345679 (at most {limit})"
)
TEXT_SETTING = _("{setting}: {found}")
TEXT_BROADCAST_GARBLED = _(
    "{setting}: the broadcast address read came back garbled ({error}): several meters "
    "answered at once; give their addresses with --addresses"
)
TEXT_NOTHING = _(
    "no meter answered on {port} ({settings} setting(s)). Check the wiring (A and B "
    "swapped?), the meters' power and their communication settings; with more than one "
    "meter on the line give --addresses"
)
TEXT_SUMMARY = _("found {count} meter(s) on {port} at {setting}")
TEXT_HEADER = _(
    "# Proposed by `watchpost scan --dlt645` on {port}: {count} meter(s) at {setting}.\n"
    "# Rename the devices; docs/dlt645.md lists the DIs the gateway reads."
)
TEXT_ANSWER_ENERGY = _("forward active energy {value} kWh during the scan")
TEXT_ANSWER_ABNORMAL = _("answered DI {di} with an abnormal reply ({error})")
TEXT_ANSWER_BROADCAST = _("answered the broadcast address read")
TEXT_ANSWER_GARBLED = _("answered, garbled ({error})")


@dataclass(frozen=True, slots=True)
class MeterSetting:
    """How characters travel on a meter line."""

    baudrate: int
    parity: str

    def __str__(self) -> str:
        return f"{self.baudrate} 8{self.parity}1"


@dataclass(frozen=True, slots=True)
class FoundMeter:
    """A meter that answered, and what it said."""

    address: str
    setting: MeterSetting
    answer: str


def default_timeout(baudrate: int) -> float:
    """A read and its reply at this speed (about 40 characters of 11 bits), plus the
    meter's turnaround (DL/T 645-2007 allows up to 500 ms)."""
    return 0.5 + 40 * 11 / baudrate


async def scan_meters(
    port: str,
    *,
    addresses: Sequence[str],
    settings: Sequence[MeterSetting],
    broadcast: bool = True,
    timeout: float | None = None,
    keep_going: bool = False,
    progress: Callable[[str], None] = print,
) -> list[FoundMeter]:
    """Every meter that answers, setting by setting; CommError if the port cannot be opened."""
    from watchpost.drivers.dlt645_bus import Dlt645Bus  # noqa: PLC0415 - pyserial only here

    found: list[FoundMeter] = []
    for setting in settings:
        config = Dlt645Config(
            type="dlt645", name="scan", port=port, baudrate=setting.baudrate, parity=setting.parity
        )
        bus = Dlt645Bus(config)
        wait = timeout or default_timeout(setting.baudrate)
        here: list[FoundMeter] = []
        try:
            await bus.open()
            if broadcast:
                try:
                    address = await bus.read_address(timeout=wait)
                except AnswerError as exc:
                    progress(TEXT_BROADCAST_GARBLED.format(setting=setting, error=exc))
                else:
                    if address is not None:
                        here.append(FoundMeter(address, setting, TEXT_ANSWER_BROADCAST))
            for address in addresses:
                if any(f.address == address for f in here):
                    continue
                answer = await _probe(bus, address, wait)
                if answer is not None:
                    here.append(FoundMeter(address, setting, answer))
        finally:
            await bus.close()
        progress(
            TEXT_SETTING.format(
                setting=setting, found=", ".join(f"meter {f.address}" for f in here) or "-"
            )
        )
        found += here
        if here and not keep_going:
            break
    return found


async def _probe(bus: Dlt645Bus, address: str, timeout: float) -> str | None:
    """What the meter at ``address`` said, or None if nothing (valid) came back."""
    fmt = dlt645.data_format(ENERGY_DI)
    assert fmt is not None
    try:
        raw = await bus.read_di(address, ENERGY_DI, timeout=timeout)
    except CommError:
        return None
    except DeviceError as exc:
        return TEXT_ANSWER_ABNORMAL.format(di=ENERGY_DI, error=exc)
    except AnswerError as exc:
        return TEXT_ANSWER_GARBLED.format(error=exc)
    try:
        value = dlt645.decode_value(fmt, raw)
    except ValueError:
        return TEXT_ANSWER_GARBLED.format(error=raw.hex(" "))
    return TEXT_ANSWER_ENERGY.format(value=value)


def meter_proposal(
    found: list[FoundMeter], *, port: str, bus_name: str, manifest: bool = False
) -> str:
    """The TOML to paste into gateway.toml (or, with ``manifest``, under a gateway)."""
    prefix = "gateways." if manifest else ""
    line = found[0].setting
    on_line = [f for f in found if f.setting == line]
    parts = [
        TEXT_HEADER.format(port=port, count=len(on_line), setting=line),
        "",
        f"[[{prefix}buses]]",
        'type = "dlt645"',
        f"name = {value_text(bus_name)}",
        f"port = {value_text(port)}",
        f"baudrate = {line.baudrate}",
        f"parity = {value_text(line.parity)}",
    ]
    for f in on_line:
        name = f"meter_{f.address}"
        parts += [
            "",
            f"# meter {f.address}: {f.answer}",
            f"[[{prefix}devices]]",
            f"name = {value_text(name)}",
            f"bus = {value_text(bus_name)}",
            f"address = {value_text(f.address)}",
            "",
            f"[[{prefix}devices.points]]",
            f"name = {value_text(name + '_energy')}",
            f"di = {value_text(ENERGY_DI)}  # forward active energy, kWh",
            "",
            f"[[{prefix}devices.points]]",
            f"name = {value_text(name + '_power')}",
            f"di = {value_text(POWER_DI)}  # total active power, kW",
        ]
    return "\n".join(parts) + "\n"


def parse_addresses(text: str) -> list[str]:
    """``000012345678,000012345670-000012345679`` -> the addresses, in order, once each."""
    addresses: list[str] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{12})\s*(?:-\s*(\d{12})\s*)?", part)
        if not match:
            raise argparse.ArgumentTypeError(
                TEXT_BAD_ADDRESSES.format(value=text, limit=MAX_ADDRESSES)
            )
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first or last - first >= MAX_ADDRESSES:
            raise argparse.ArgumentTypeError(
                TEXT_BAD_ADDRESSES.format(value=text, limit=MAX_ADDRESSES)
            )
        addresses += [f"{n:012d}" for n in range(first, last + 1)]
    unique = list(dict.fromkeys(addresses))
    if len(unique) > MAX_ADDRESSES:
        raise argparse.ArgumentTypeError(TEXT_BAD_ADDRESSES.format(value=text, limit=MAX_ADDRESSES))
    return unique


def print_summary(found: list[FoundMeter], port: str) -> None:
    on_line = sum(1 for f in found if f.setting == found[0].setting)
    print(TEXT_SUMMARY.format(count=on_line, port=port, setting=found[0].setting), file=sys.stderr)
