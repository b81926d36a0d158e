"""`watchpost scan`: find the Modbus RTU units on an RS-485 line and propose config entries.

For each line setting (baud rate, parity), every unit id is asked for one register through
the project's own RTU bus driver. Any answer counts, a Modbus exception too: it proves a
unit with that id listens at that speed. All units on one line share one setting, so the
scan stops after the first setting at which something answered (``--keep-going`` tries
the rest, to find a unit set to the wrong speed).

Progress goes to stderr; the proposed ``[[buses]]`` and ``[[devices]]`` (with ``--manifest``:
``[[gateways.buses]]``, ``[[gateways.devices]]``) go to stdout, so
``watchpost scan --port /dev/ttyUSB0 > found.toml`` keeps only the TOML. Stop the daemon
first: two masters on one line garble each other's frames.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import termios
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import TextIO, TypeVar, get_args

from watchpost.drivers import modbus_rtu
from watchpost.drivers.base import Bus, CommError, DeviceError, ReadRequest, Table
from watchpost.drivers.modbus_answers import EXCEPTION_NAMES
from watchpost.provisioning.scan_meters import (
    METER_BAUDS,
    MeterSetting,
    meter_proposal,
    parse_addresses,
    print_summary,
    scan_meters,
)
from watchpost.provisioning.scan_meters import TEXT_NOTHING as TEXT_NO_METER
from watchpost.provisioning.tomlwrite import value_text

T = TypeVar("T")

COMMON_BAUDS = (9600, 19200, 38400, 4800, 115200)
BAUDRATES: tuple[int, ...] = get_args(modbus_rtu.Config.model_fields["baudrate"].annotation)
PARITIES = ("N", "E", "O")
EXIT_NOTHING = 1
EXIT_NO_PORT = 74  # EX_IOERR

TEXT_HELP = _(
    "find the Modbus RTU units (or, with --dlt645, the DL/T 645 meters) on an RS-485 line "
    "and propose config entries"
)
TEXT_DLT645_HELP = _(
    "look for DL/T 645-2007 meters instead of Modbus units: the broadcast address read "
    "(one meter on the line) and --addresses (default baud rates 2400,1200,4800,9600, "
    "parity E)"
)
TEXT_ADDRESSES_HELP = _(
    "with --dlt645: meter addresses to try, as printed on the meters, e.g. "
    "000012345678,000012345670-000012345679"
)
TEXT_PORT_HELP = _("the serial port of the line, e.g. /dev/ttyUSB0")
TEXT_UNITS_HELP = _("unit ids to try, e.g. 1-247 or 1-10,20 (default: 1-247)")
TEXT_BAUD_HELP = _(
    "baud rates to try, in order (default: 9600,19200,38400,4800,115200); with --dlt645: "
    "2400,1200,4800,9600"
)
TEXT_PARITY_HELP = _(
    "parities to try, in order: N, E, O; each is tried at every baud rate (default: N,E,O); "
    "with --dlt645: E"
)
TEXT_STOPBITS_HELP = _("stop bits (default: 1)")
TEXT_TIMEOUT_HELP = _("seconds to wait for each answer (default: depends on the baud rate)")
TEXT_PROBE_HELP = _("the register asked for, TABLE:ADDRESS (default: holding:0)")
TEXT_KEEP_GOING_HELP = _("try every setting, not only until units answer")
TEXT_BUS_NAME_HELP = _("bus name in the proposed config (default: from the port)")
TEXT_MANIFEST_HELP = _(
    "propose [[gateways.buses]] and [[gateways.devices]], to paste under a "
    "gateway of the site manifest"
)
TEXT_BAD_LIST = _("{value!r} is not a list like {example}")
TEXT_UNIT_OUT_OF_RANGE = _(
    "{value!r}: unit {unit} is outside the Modbus unit ids 1-247 (0 is broadcast, which no "
    "unit answers)"
)
TEXT_UNIT_BACKWARDS = _("{value!r}: the range {first}-{last} runs backwards; write {last}-{first}")
TEXT_PROGRESS = _(
    "{setting} (setting {index} of {settings})  unit {unit:3d} ({position} of {units})  "
    "found {found}  ~{left:.0f} s left"
)
TEXT_BAD_PROBE = _("{value!r} is not TABLE:ADDRESS with TABLE one of {tables}")
TEXT_NO_PORT = _(
    "cannot open {port}: {error}. Is the adapter plugged in, is this user in "
    "group dialout, and is the port free (systemctl stop watchpost)? A retry "
    "helps only once that is fixed"
)
TEXT_SETTING = _("{setting}: {found}")
TEXT_SETTING_REFUSED = _("{setting}: skipped, the port refuses this setting ({error})")
TEXT_NOTHING = _(
    "no unit answered on {port} ({settings} setting(s), units {units}). Check "
    "the wiring (A and B swapped?), termination, the sensors' power, and the "
    "ids and speeds in their manuals"
)
TEXT_SUMMARY = _("found {count} unit(s) on {port} at {setting}")
TEXT_OTHER_SETTING = _(
    "unit {unit} answers at {setting}, not at the line's {line}: set it "
    "to the line's speed and parity"
)
TEXT_HEADER = _(
    "# Proposed by `watchpost scan` on {port}: {count} unit(s) at {setting}.\n"
    "# Rename the devices and add each one's points from its register map."
)
TEXT_ANSWER_VALUE = _("{table} {address} read {value} during the scan")
TEXT_ANSWER_EXCEPTION = _("answered {table} {address} with exception {code} ({name})")
TEXT_UNIT_COMMENT = _("# unit {unit}: {answer}")
TEXT_POINT_TEMPLATE = _(
    "# [[{prefix}devices.points]]\n"
    '# name = "..."          # unique in the gateway, e.g. ch4_face_1\n'
    '# unit = "..."          # engineering unit, e.g. %LEL\n'
    '# table = "{table}"\n'
    "# address = {address}\n"
    '# type = "uint16"       # int16, uint16, int32, uint32, float32\n'
    "# scale = 1.0"
)


@dataclass(frozen=True, slots=True)
class LineSetting:
    """How characters travel on the line."""

    baudrate: int
    parity: str
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class Found:
    """A unit that answered, and what it said."""

    unit: int
    setting: LineSetting
    answer: str


@dataclass(slots=True)
class Progress:
    """A progress bar on a terminal; a line per setting when stderr is a file.

    The bar covers every setting to try; the text says which setting of how many (each
    parity at each baud rate) and which unit of how many, so that a scan of one baud rate
    at three parities does not read as one setting taking three times as long."""

    settings: Sequence[LineSetting]
    units: Sequence[int]
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    total: int = 0
    _tty: bool = False

    def __post_init__(self) -> None:
        self._tty = self.stream.isatty()
        self.total = len(self.settings) * len(self.units)

    def step(self, setting: LineSetting, unit: int, found: int, *, count: int = 1) -> None:
        self.done += count
        if not self._tty:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        text = TEXT_PROGRESS.format(
            setting=setting,
            index=self.settings.index(setting) + 1,
            settings=len(self.settings),
            unit=unit,
            position=self.units.index(unit) + 1 if unit in self.units else len(self.units),
            units=len(self.units),
            found=found,
            left=left,
        )
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text} ")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self._tty:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)


def default_timeout(baudrate: int) -> float:
    """Request and answer of a few bytes at this speed, plus a slow device's turnaround."""
    return 0.15 + 30 * 11 / baudrate


async def probe(bus: Bus, request: ReadRequest, timeout: float) -> str | None:
    """What the unit said, or None if nothing (valid) came back."""
    try:
        values = await bus.read(request, timeout=timeout)
    except DeviceError as exc:
        return TEXT_ANSWER_EXCEPTION.format(
            table=request.table,
            address=request.address,
            code=exc.code,
            name=EXCEPTION_NAMES.get(exc.code, "unknown"),
        )
    except CommError:
        return None
    return TEXT_ANSWER_VALUE.format(table=request.table, address=request.address, value=values[0])


async def scan(
    port: str,
    *,
    units: Sequence[int],
    settings: Sequence[LineSetting],
    table: Table = Table.HOLDING,
    address: int = 0,
    timeout: float | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> list[Found]:
    """Every unit that answers, setting by setting; CommError if the port cannot be opened."""
    progress = progress or Progress(settings, units)
    found: list[Found] = []
    for setting in settings:
        bus = modbus_rtu.create(
            modbus_rtu.Config.model_validate(
                {
                    "type": "modbus_rtu",
                    "name": "scan",
                    "port": port,
                    "baudrate": setting.baudrate,
                    "parity": setting.parity,
                    "stopbits": setting.stopbits,
                }
            )
        )
        try:
            await bus.open()
        except (OSError, termios.error, ValueError) as exc:  # a setting the port cannot do
            await bus.close()
            progress.step(setting, 0, len(found), count=len(units))
            progress.note(TEXT_SETTING_REFUSED.format(setting=setting, error=exc))
            continue
        here: list[Found] = []
        try:
            for unit in units:
                request = ReadRequest(unit, table, address, 1)
                answer = await probe(bus, request, timeout or default_timeout(setting.baudrate))
                if answer is not None:
                    here.append(Found(unit, setting, answer))
                progress.step(setting, unit, len(found) + len(here))
        finally:
            await bus.close()
        progress.note(
            TEXT_SETTING.format(
                setting=setting, found=", ".join(f"unit {f.unit}" for f in here) or "-"
            )
        )
        found += here
        if here and not keep_going:
            progress.total = progress.done
            break
    return found


def proposal(
    found: list[Found],
    *,
    port: str,
    bus_name: str,
    table: Table = Table.HOLDING,
    address: int = 0,
    manifest: bool = False,
) -> tuple[str, list[str]]:
    """The TOML to paste into gateway.toml (or, with ``manifest``, under a gateway of the
    site manifest), and warnings for people."""
    prefix = "gateways." if manifest else ""
    line = found[0].setting
    on_line = [f for f in found if f.setting == line]
    warnings = [
        TEXT_OTHER_SETTING.format(unit=f.unit, setting=f.setting, line=line)
        for f in found
        if f.setting != line
    ]
    parts = [
        TEXT_HEADER.format(port=port, count=len(on_line), setting=line),
        "",
        f"[[{prefix}buses]]",
        'type = "modbus_rtu"',
        f"name = {value_text(bus_name)}",
        f"port = {value_text(port)}",
        f"baudrate = {line.baudrate}",
        f"parity = {value_text(line.parity)}",
        f"stopbits = {line.stopbits}",
    ]
    for f in on_line:
        parts += [
            "",
            TEXT_UNIT_COMMENT.format(unit=f.unit, answer=f.answer),
            f"[[{prefix}devices]]",
            f"name = {value_text(f'{bus_name}_unit_{f.unit}')}",
            f"bus = {value_text(bus_name)}",
            f"unit = {f.unit}",
            TEXT_POINT_TEMPLATE.format(prefix=prefix, table=table, address=address),
        ]
    return "\n".join(parts) + "\n", warnings


# -- arguments -------------------------------------------------------------------------------


def parse_units(text: str) -> list[int]:
    """``1-10,20`` -> [1, ..., 10, 20]; unit ids 1 to 247."""
    units: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise argparse.ArgumentTypeError(TEXT_BAD_LIST.format(value=text, example="1-247"))
        first, last = int(match[1]), int(match[2] or match[1])
        for unit in (first, last):
            if not 1 <= unit <= 247:
                raise argparse.ArgumentTypeError(
                    TEXT_UNIT_OUT_OF_RANGE.format(value=text, unit=unit)
                )
        if first > last:
            raise argparse.ArgumentTypeError(
                TEXT_UNIT_BACKWARDS.format(value=text, first=first, last=last)
            )
        units += range(first, last + 1)
    return list(dict.fromkeys(units))


def _choices(
    allowed: Iterable[T], example: str, convert: Callable[[str], T]
) -> Callable[[str], list[T]]:
    """A parser of comma-separated values, each one of ``allowed``."""
    permitted = set(allowed)

    def parse(text: str) -> list[T]:
        try:
            values = [convert(v.strip()) for v in text.split(",")]
        except ValueError:
            values = []
        if not values or any(v not in permitted for v in values):
            raise argparse.ArgumentTypeError(TEXT_BAD_LIST.format(value=text, example=example))
        return list(dict.fromkeys(values))

    return parse


def parse_probe(text: str) -> tuple[Table, int]:
    table, _sep, address = text.partition(":")
    try:
        return Table(table.strip().lower()), int(address)
    except ValueError:
        raise argparse.ArgumentTypeError(
            TEXT_BAD_PROBE.format(value=text, tables=", ".join(t.value for t in Table))
        ) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser("scan", help=TEXT_HELP)
    command.add_argument("--port", required=True, help=TEXT_PORT_HELP)
    command.add_argument(
        "--units", type=parse_units, default=list(range(1, 248)), help=TEXT_UNITS_HELP
    )
    command.add_argument(
        "--baud",
        type=_choices(BAUDRATES, "9600,19200", int),
        default=list(COMMON_BAUDS),
        help=TEXT_BAUD_HELP,
    )
    command.add_argument(
        "--parity",
        type=_choices(PARITIES, "N,E", str.upper),
        default=list(PARITIES),
        help=TEXT_PARITY_HELP,
    )
    command.add_argument("--dlt645", action="store_true", help=TEXT_DLT645_HELP)
    command.add_argument("--addresses", type=parse_addresses, default=[], help=TEXT_ADDRESSES_HELP)
    command.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help=TEXT_STOPBITS_HELP)
    command.add_argument("--timeout", type=float, help=TEXT_TIMEOUT_HELP)
    command.add_argument(
        "--probe", type=parse_probe, default=(Table.HOLDING, 0), help=TEXT_PROBE_HELP
    )
    command.add_argument("--keep-going", action="store_true", help=TEXT_KEEP_GOING_HELP)
    command.add_argument("--bus-name", help=TEXT_BUS_NAME_HELP)
    command.add_argument("--manifest", action="store_true", help=TEXT_MANIFEST_HELP)
    command.set_defaults(handler=_scan)


def line_settings(
    bauds: Sequence[int], parities: Sequence[str], stopbits: int = 1
) -> list[LineSetting]:
    """The settings to try, parity by parity and, within each, baud rate by baud rate."""
    return [LineSetting(baud, parity, stopbits) for parity in parities for baud in bauds]


def _scan(args: argparse.Namespace) -> int:
    if args.dlt645:
        return _scan_meters(args)
    settings = line_settings(args.baud, args.parity, args.stopbits)
    table, address = args.probe
    try:
        found = asyncio.run(
            scan(
                args.port,
                units=args.units,
                settings=settings,
                table=table,
                address=address,
                timeout=args.timeout,
                keep_going=args.keep_going,
            )
        )
    except CommError as exc:
        print(TEXT_NO_PORT.format(port=args.port, error=exc), file=sys.stderr)
        return EXIT_NO_PORT
    if not found:
        units = f"{args.units[0]}-{args.units[-1]}" if len(args.units) > 1 else args.units[0]
        print(
            TEXT_NOTHING.format(port=args.port, settings=len(settings), units=units),
            file=sys.stderr,
        )
        return EXIT_NOTHING
    bus_name = args.bus_name or "rs485_" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(args.port).name)
    text, warnings = proposal(
        found,
        port=args.port,
        bus_name=bus_name,
        table=table,
        address=address,
        manifest=args.manifest,
    )
    on_line = sum(1 for f in found if f.setting == found[0].setting)
    print(
        TEXT_SUMMARY.format(count=on_line, port=args.port, setting=found[0].setting),
        file=sys.stderr,
    )
    for warning in warnings:
        print(warning, file=sys.stderr)
    sys.stdout.write(text)
    return 0


def _scan_meters(args: argparse.Namespace) -> int:
    # the Modbus defaults stand for "not given": meters have their own
    bauds = list(METER_BAUDS) if args.baud == list(COMMON_BAUDS) else args.baud
    parities = ["E"] if args.parity == list(PARITIES) else args.parity
    settings = [MeterSetting(baud, parity) for parity in parities for baud in bauds]
    try:
        found = asyncio.run(
            scan_meters(
                args.port,
                addresses=args.addresses,
                settings=settings,
                timeout=args.timeout,
                keep_going=args.keep_going,
                progress=lambda text: print(text, file=sys.stderr, flush=True),
            )
        )
    except CommError as exc:
        print(TEXT_NO_PORT.format(port=args.port, error=exc), file=sys.stderr)
        return EXIT_NO_PORT
    if not found:
        print(TEXT_NO_METER.format(port=args.port, settings=len(settings)), file=sys.stderr)
        return EXIT_NOTHING
    bus_name = args.bus_name or "meters_" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(args.port).name)
    print_summary(found, args.port)
    sys.stdout.write(
        meter_proposal(found, port=args.port, bus_name=bus_name, manifest=args.manifest)
    )
    return 0
