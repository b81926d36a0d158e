"""The gateway's one config file (TOML), validated on load.

Every error names its key path (``devices[1].points[3].scale: must be a number``).
Each subsystem owns the model of its own section; this module assembles them.
"""

from __future__ import annotations

import argparse
import importlib.resources
import math
import sys
import tomllib
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from gettext import gettext as _
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from watchpost.alarms import RULE_KINDS, AlarmRule, resolve_rules
from watchpost.anomaly import AnomalyConfig
from watchpost.control import ControlConfig
from watchpost.drivers import DRIVERS
from watchpost.drivers.base import Table
from watchpost.history import HistoryConfig
from watchpost.outputs import OutputConfig, check_outputs
from watchpost.store import StoreConfig
from watchpost.uplink import UplinkConfig

EXIT_CONFIG = 78  # EX_CONFIG: systemd does not restart the service on it

TEXT_OK = _("ok")
TEXT_ERRORS = _("{path}: {count} error(s)")
TEXT_CHECK_HELP = _("check a config file and print every error with its key path")
TEXT_CONFIG_HELP = _("work with the gateway's config file")
TEXT_FILE_HELP = _("the config file (TOML)")
TEXT_EXAMPLE_HELP = _("print the demo gateway config, or write it and the demo site to --out")
TEXT_OUT_HELP = _("a folder to write gateway.toml and site.toml into")
TEXT_EXISTS = _("{path} exists already; not overwritten")
TEXT_NO_FILE = _("cannot read the file: {error}")
TEXT_TOML = _("not valid TOML: {error}")
TEXT_NO_BUS = _("no bus named {name!r} (buses: {known})")
TEXT_NO_POINT = _("no point named {name!r}")
TEXT_MISSING = _("{path} does not exist")
TEXT_WORLD_WRITABLE = _("{path}: others can change this file (chmod o-w)")
TEXT_WORLD_READABLE = _(
    "{path}: others can read this file, which points at credentials (chmod 640)"
)
TEXT_SECRET_READABLE = _("{path} can be read by others (mode {mode}); chmod 600")
TEXT_DUPLICATE = _("{what} name {name!r} is used more than once")
TEXT_TYPE_TABLE = _("type {type!r} does not fit table {table!r} ({expected})")
TEXT_PAST_END = _("address {address} + {width} register(s) runs past 65535")

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"

DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
REGISTER_WIDTH: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "bool": 1,
}


class Model(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayIdentity(Model):
    """Who this gateway is; the names appear in every MQTT topic."""

    site: str = Field(pattern=NAME_PATTERN, description="Site id, the second level of topics.")
    id: str = Field(pattern=NAME_PATTERN, description="Gateway id, unique within the site.")
    state_dir: Path | None = Field(
        default=None,
        description="Identity and calibration state; default: the folder of [store] path.",
    )
    clock: Literal["ntp", "rtc"] = Field(
        default="ntp",
        description="ntp: trust the wall clock once the kernel says NTP has set it (a Pi has "
        "no real-time clock); rtc: the box keeps time by itself.",
    )


class PointConfig(Model):
    """One named physical quantity read from a device."""

    name: str = Field(pattern=NAME_PATTERN, description="Point name, unique in the gateway.")
    unit: str = Field(default="", description="Engineering unit, e.g. %CH4, ppm, degC.")
    description: str = Field(default="", description="Free text for people.")
    table: Table = Field(
        default=Table.HOLDING, description="Modbus table: holding, input, coil or discrete."
    )
    address: int = Field(ge=0, le=65535, description="Register or bit address, 0-based.")
    type: DataType = Field(default="uint16", description="Data type of the raw value.")
    word_order: Literal["big", "little"] = Field(
        default="big", description="Order of the two words of 32-bit types."
    )
    scale: float = Field(default=1.0, allow_inf_nan=False, description="value = raw*scale+offset")
    offset: float = Field(default=0.0, allow_inf_nan=False, description="value = raw*scale+offset")
    range: tuple[float, float] | None = Field(
        default=None, description="Plausible range [min, max]; outside it a sample is bad."
    )
    alarms: list[AlarmRule] = Field(
        default_factory=list,
        description=("Alarm rules (docs/alarm-rules.md); after loading, also those of rules_from."),
    )
    rules_from: str | None = Field(
        default=None,
        description=(
            "A shipped rule set (drivers/profiles/NAME.toml); own rules override it by name."
        ),
    )

    @property
    def width(self) -> int:
        """Registers (or bits) the point occupies."""
        return REGISTER_WIDTH[self.type]

    @model_validator(mode="after")
    def _type_fits_table(self) -> PointConfig:
        if self.table.is_bits != (self.type == "bool"):
            expected = (
                "coils and discrete inputs are bool"
                if self.table.is_bits
                else "registers hold numbers, not bool"
            )
            raise ValueError(
                TEXT_TYPE_TABLE.format(type=self.type, table=str(self.table), expected=expected)
            )
        if self.address + self.width > 65536:
            raise ValueError(TEXT_PAST_END.format(address=self.address, width=self.width))
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range: min must be below max")
        rules = resolve_rules(
            self.alarms, rules_from=self.rules_from, unit=self.unit, point_range=self.range
        )
        object.__setattr__(self, "alarms", rules)  # frozen: resolved once, here
        return self


class DeviceConfig(Model):
    """A unit on a bus and the points read from it."""

    name: str = Field(pattern=NAME_PATTERN, description="Device name, unique in the file.")
    bus: str = Field(description="Name of the bus the device is on.")
    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id.")
    interval: float = Field(default=1.0, gt=0, le=3600, description="Seconds between polls.")
    timeout: float = Field(default=1.0, gt=0, le=30, description="Seconds to wait for an answer.")
    retries: int = Field(default=1, ge=0, le=5, description="Retries of a failed transaction.")
    max_gap: int = Field(
        default=8,
        ge=0,
        le=100,
        description="Unused registers a single request may bridge between two points.",
    )
    points: list[PointConfig] = Field(min_length=1, description="The points read from it.")


BusConfig = Annotated[
    Union[tuple(driver.Config for driver in DRIVERS.values())],  # noqa: UP007 - derived
    Field(discriminator="type"),
]


class GatewayConfig(Model):
    """The whole config file."""

    gateway: GatewayIdentity = Field(description="Identity of the gateway.")
    uplink: UplinkConfig = Field(description="MQTT uplink to the platform.")
    store: StoreConfig = Field(description="The on-disk store and forward buffer.")
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="The local control socket for crews."
    )
    anomaly: AnomalyConfig = Field(
        default_factory=AnomalyConfig, description="On-device anomaly models."
    )
    history: HistoryConfig = Field(
        default_factory=HistoryConfig,
        description=(
            "The local history for `watchpost report`: per-minute aggregates, alarm events "
            "and communication per device (history.db)."
        ),
    )
    buses: list[BusConfig] = Field(default_factory=list, description="Field buses.")
    devices: list[DeviceConfig] = Field(default_factory=list, description="Devices polled.")
    outputs: list[OutputConfig] = Field(
        default_factory=list,
        description=("Local outputs driven by alarms: sounders, beacons, power-cut relays."),
    )

    def points(self) -> Iterable[tuple[DeviceConfig, PointConfig]]:
        for device in self.devices:
            for point in device.points:
                yield device, point


class ConfigError(Exception):
    """The config file is unusable; ``errors`` holds one line per problem. No retry helps."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(errors))
        self.path = path
        self.errors = errors


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path``; ConfigError if it cannot be read or is not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [TEXT_NO_FILE.format(error=exc)]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [TEXT_TOML.format(error=exc)]) from exc


def load_config(path: Path) -> GatewayConfig:
    """Read and validate ``path``; raise ConfigError naming every wrong key."""
    raw = read_toml(path)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, [describe_error(error) for error in exc.errors()]) from exc
    problems = [
        *cross_check(config),
        *_anomaly_points(config),
        *check_outputs(
            config.outputs,
            devices={d.name: d.bus for d in config.devices},
            buses=[b.name for b in config.buses],
            points=[p.name for _d, p in config.points()],
        ),
    ]
    if problems:
        raise ConfigError(path, problems)
    return config


def check_file_modes(
    config: GatewayConfig, path: Path, *, require_files: bool = False
) -> list[str]:
    """Files that others may read or change although they hold secrets or steer the gateway.

    A key or password file must be readable by its owner only; the config file must not
    be writable by others, nor readable by them once it points at credentials. With
    ``require_files`` (the daemon's start) every file the uplink needs must exist; a config
    checked elsewhere, e.g. in a bundle before it is installed, may point at files not there yet.
    """
    problems = []
    mode = path.stat().st_mode
    if mode & 0o002:
        problems.append(TEXT_WORLD_WRITABLE.format(path=path))
    secrets = (
        ("uplink.key_file", config.uplink.key_file),
        ("uplink.password_file", config.uplink.password_file),
    )
    if mode & 0o004 and any(file is not None for _key, file in secrets):
        problems.append(TEXT_WORLD_READABLE.format(path=path))
    if require_files:
        for key, file in (
            ("uplink.ca_file", config.uplink.ca_file),
            ("uplink.cert_file", config.uplink.cert_file),
            *secrets,
        ):
            if file is not None and not file.is_file():
                problems.append(f"{key}: " + TEXT_MISSING.format(path=file))
    for key, file in secrets:
        if file is None or not file.exists():
            continue
        file_mode = file.stat().st_mode
        if file_mode & 0o077:
            problems.append(
                f"{key}: " + TEXT_SECRET_READABLE.format(path=file, mode=oct(file_mode & 0o777))
            )
    return problems


def cross_check(config: GatewayConfig) -> Iterable[str]:
    """Rules that span sections: references and unique names."""
    bus_names = [bus.name for bus in config.buses]
    for what, key, names in (
        ("bus", "buses", bus_names),
        ("device", "devices", [device.name for device in config.devices]),
    ):
        for index, name in _duplicates(names):
            yield f"{key}[{index}].name: " + TEXT_DUPLICATE.format(what=what, name=name)
    point_names = [point.name for _device, point in config.points()]
    duplicated = {name for name, count in Counter(point_names).items() if count > 1}
    for d, device in enumerate(config.devices):
        if device.bus not in bus_names:
            known = ", ".join(bus_names) or "none"
            yield f"devices[{d}].bus: " + TEXT_NO_BUS.format(name=device.bus, known=known)
        for p, point in enumerate(device.points):
            if point.name in duplicated:
                yield f"devices[{d}].points[{p}].name: " + TEXT_DUPLICATE.format(
                    what="point", name=point.name
                )


def _anomaly_points(config: GatewayConfig) -> Iterable[str]:
    known = {point.name for _device, point in config.points()}
    for m, model in enumerate(config.anomaly.models):
        for p, name in enumerate(model.points):
            if name not in known:
                yield f"anomaly.models[{m}].points[{p}]: " + TEXT_NO_POINT.format(name=name)


def _duplicates(names: Sequence[str]) -> Iterable[tuple[int, str]]:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            yield index, name
        seen.add(name)


# pydantic's error types, said the way an installer reads them
_PLAIN_MESSAGES = {
    "missing": _("is required"),
    "extra_forbidden": _("is not a known key"),
    "float_parsing": _("must be a number"),
    "float_type": _("must be a number"),
    "finite_number": _("must be a finite number"),
    "int_parsing": _("must be a whole number"),
    "int_type": _("must be a whole number"),
    "int_from_float": _("must be a whole number"),
    "string_type": _("must be a text string"),
    "bool_type": _("must be true or false"),
    "bool_parsing": _("must be true or false"),
    "list_type": _("must be a list"),
    "model_type": _("must be a table"),
    "model_attributes_type": _("must be a table"),
    "less_than_equal": _("must be at most {le}"),
    "less_than": _("must be below {lt}"),
    "greater_than_equal": _("must be at least {ge}"),
    "greater_than": _("must be above {gt}"),
    "literal_error": _("must be one of {expected}"),
    "enum": _("must be one of {expected}"),
    "string_pattern_mismatch": _("may hold only letters, digits, '_', '.' and '-'"),
    "too_short": _("must have at least {min_length} item(s)"),
}


def describe_error(
    error: ErrorDetails, union_tags: Collection[str] = frozenset(DRIVERS) | RULE_KINDS
) -> str:
    """``devices[1].points[3].scale: must be a number (got 'abc')``.

    ``union_tags`` are the discriminator values pydantic puts into an error's location for
    a member of a tagged union; they are not keys in the file and are left out of the path.
    """
    path = _key_path(error["loc"], union_tags)
    kind = error["type"]
    template = _PLAIN_MESSAGES.get(kind)
    try:
        message = template.format(**error.get("ctx", {})) if template else None
    except (KeyError, IndexError):
        message = None
    message = message or _strip_prefix(error["msg"])
    # a rule on a whole table names the table's path; its input is the whole table
    if (
        kind not in ("missing", "extra_forbidden", "model_type")
        and "input" in error
        and not isinstance(error["input"], dict)
    ):
        message += f" (got {_show(error['input'])})"
    return f"{path}: {message}" if path else message


def _key_path(loc: tuple[int | str, ...], union_tags: Collection[str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in union_tags or item.startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _strip_prefix(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[:1].lower() + message[1:]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the `watchpost config` command ----------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help=TEXT_CONFIG_HELP)
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help=TEXT_CHECK_HELP)
    check.add_argument("file", type=Path, help=TEXT_FILE_HELP)
    check.set_defaults(handler=_check)
    example = actions.add_parser("example", help=TEXT_EXAMPLE_HELP)
    example.add_argument("--out", type=Path, help=TEXT_OUT_HELP)
    example.set_defaults(handler=_example)


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
        problems = check_file_modes(config, args.file)
        if problems:
            raise ConfigError(args.file, problems)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    print(TEXT_OK)
    return 0


def _example(args: argparse.Namespace) -> int:
    demo = importlib.resources.files("watchpost") / "examples" / "demo"
    if args.out is None:
        print((demo / "gateway.toml").read_text(encoding="utf-8"), end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("gateway.toml", "site.toml"):
        target = args.out / name
        if target.exists():
            print(TEXT_EXISTS.format(path=target), file=sys.stderr)
            return 1
        target.write_text((demo / name).read_text(encoding="utf-8"), encoding="utf-8")
        print(target)
    return 0


def print_config_error(error: ConfigError) -> None:
    """Print a config error the way every command does."""
    print(TEXT_ERRORS.format(path=error.path, count=len(error.errors)), file=sys.stderr)
    for line in error.errors:
        print(f"  {line}", file=sys.stderr)
