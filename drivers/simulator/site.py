"""The simulated site's file (``site.toml``), validated on load.

Every error names its key path (``devices[0].points[2].signal.of: no point named 'x'``) and
is raised as the gateway's ``ConfigError``, so the command prints it the same way and exits 78.

Shape of the file::

    [site]        name, seed, tick, repeat
    [[buses]]     type = "modbus_tcp" (host, port) | "modbus_rtu" (link, baudrate)
                  | "dlt645" (link, baudrate) | "serial_line" (link, baudrate, line_end)
    [[devices]]   name, bus, and by the bus's type: unit (Modbus); address (a DL/T 645
                  meter's 12 digits); line, period or request, checksum (a line instrument)
      [[devices.points]]  name, table, address, type, word_order, scale, offset (Modbus),
                  di (a meter's data identifier), marks, signal
    [[script]]    at, name, changes = [{point, to, over}]
    [[faults]]    kind = silent | slow | exception | stuck | drift, with start and end
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from gettext import gettext as _
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from watchpost.config import (
    NAME_PATTERN,
    REGISTER_WIDTH,
    TEXT_DUPLICATE,
    TEXT_NO_BUS,
    TEXT_NO_POINT,
    TEXT_PAST_END,
    TEXT_TYPE_TABLE,
    ConfigError,
    DataType,
    Model,
    describe_error,
    read_toml,
)
from watchpost.config.references import site_references
from watchpost.drivers.base import Table
from watchpost.drivers.dlt645 import TEXT_UNKNOWN_DI, data_format

TEXT_NO_DEVICE = _("no device named {name!r}")
TEXT_SAME_UNIT = _("unit {unit} is used twice on bus {bus!r}")
TEXT_OVERLAP = _("{table} {address} overlaps point {other!r}")
TEXT_SIGNAL_TYPE = _("signal {kind!r} gives {gives} values, but the point's type is {type!r}")
TEXT_CYCLE = _("signals depend on each other in a circle: {points}")
TEXT_DERIVED_CHANGE = _(
    "point {name!r} follows other points ({kind}); script changes act on "
    "wander and constant signals"
)
TEXT_CHANGE_TYPE = _("point {name!r} is {type}; 'to' must be {expected}")
TEXT_END_BEFORE_START = _("end must be after start")
TEXT_REPEAT_SHORT = _("repeat ({repeat} s) must be later than the last phase ({last} s)")
TEXT_PORT_TWICE = _("port {port} is used by two buses")
TEXT_LINK_TWICE = _("link {link} is used by two buses")
TEXT_BIT_SOURCE = _("point {name!r} is a bit, not a number")
TEXT_NO_DRIFT = _("a bit cannot drift")
TEXT_NEEDS_KEY = _("is required on a bus of type {type}")
TEXT_NOT_ON_BUS = _("is not a key of a device on a bus of type {type}")
TEXT_PERIOD_OR_REQUEST = _(
    "give exactly one of period (the instrument streams) or request (it is polled)"
)

NAME = NAME_PATTERN


class SiteInfo(Model):
    """The ``[site]`` section."""

    name: str = Field(default="simulated-site", pattern=NAME, description="Name, for messages.")
    seed: int = Field(default=0, description="Seed of the noise; same seed, same values.")
    tick: float = Field(
        default=0.1, ge=0.01, le=5, description="Seconds between updates of the served values."
    )
    repeat: float | None = Field(
        default=None,
        gt=0,
        description="Run the script again every this many seconds; default: once.",
    )


# -- buses ---------------------------------------------------------------------------------


class TcpBus(Model):
    """A Modbus TCP endpoint served on loopback."""

    type: Literal["modbus_tcp"] = Field(description="Bus type.")
    name: str = Field(pattern=NAME, description="Bus name, unique in the file.")
    host: Literal["127.0.0.1", "::1", "localhost"] = Field(
        default="127.0.0.1", description="Loopback address to listen on."
    )
    port: int = Field(ge=0, le=65535, description="TCP port; 0: any free port.")


class RtuBus(Model):
    """A Modbus RTU line on a pseudo-terminal; its serial end appears at ``link``."""

    type: Literal["modbus_rtu"] = Field(description="Bus type.")
    name: str = Field(pattern=NAME, description="Bus name, unique in the file.")
    link: Path = Field(
        description="Path of the link to the serial end; relative to the working directory."
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed the server's port is set to."
    )


class MeterLine(Model):
    """A DL/T 645 line on a pseudo-terminal; the meters' serial end appears at ``link``."""

    type: Literal["dlt645"] = Field(description="Bus type.")
    name: str = Field(pattern=NAME, description="Bus name, unique in the file.")
    link: Path = Field(
        description="Path of the link to the serial end; relative to the working directory."
    )
    baudrate: Literal[1200, 2400, 4800, 9600] = Field(
        default=2400,
        description="Line speed the gateway is told to use (a pseudo-terminal "
        "carries bytes at any speed).",
    )


class InstrumentLine(Model):
    """A line of text instruments on a pseudo-terminal; its serial end appears at ``link``."""

    type: Literal["serial_line"] = Field(description="Bus type.")
    name: str = Field(pattern=NAME, description="Bus name, unique in the file.")
    link: Path = Field(
        description="Path of the link to the serial end; relative to the working directory."
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        default=9600, description="Line speed the gateway is told to use."
    )
    line_end: str = Field(default="\r\n", description="What ends a line, escapes allowed.")


SerialSimBus = RtuBus | MeterLine | InstrumentLine
BusConfig = Annotated[TcpBus | RtuBus | MeterLine | InstrumentLine, Field(discriminator="type")]


# -- signals: how a point's value moves ------------------------------------------------------


class Noisy(Model):
    """Correlated noise (Ornstein-Uhlenbeck) added to a numeric signal."""

    noise: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Standard deviation of the noise, in the point's unit.",
    )
    tau: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Correlation time of the noise in seconds.",
    )
    min: float | None = Field(default=None, description="Lowest value the signal reaches.")
    max: float | None = Field(default=None, description="Highest value the signal reaches.")


class Wander(Noisy):
    """A quantity around a mean: ``mean + amplitude*sin(2πt/period) + noise``."""

    kind: Literal["wander"] = Field(description="Signal kind.")
    base: float = Field(allow_inf_nan=False, description="The mean; script changes move it.")
    amplitude: float = Field(default=0.0, allow_inf_nan=False, description="Of the slow swing.")
    period: float = Field(default=600.0, gt=0, description="Period of the swing in seconds.")


class Constant(Model):
    """A fixed value (a number or, for bits, true/false); script changes and writes move it."""

    kind: Literal["constant"] = Field(description="Signal kind.")
    value: bool | float = Field(description="The value.")


class Linear(Noisy):
    """``gain * of + bias + noise``: a quantity that follows another (tank pressure)."""

    kind: Literal["linear"] = Field(description="Signal kind.")
    of: str = Field(description="The point followed.")
    gain: float = Field(default=1.0, allow_inf_nan=False, description="Factor.")
    bias: float = Field(default=0.0, allow_inf_nan=False, description="Added.")


class Product(Noisy):
    """``gain * product(of) + noise``: electric power from voltage and current."""

    kind: Literal["product"] = Field(description="Signal kind.")
    of: list[str] = Field(min_length=1, description="The points multiplied.")
    gain: float = Field(default=1.0, allow_inf_nan=False, description="Factor.")


class Integral(Model):
    """``start + gain * ∫ of dt``: an energy counter from power."""

    kind: Literal["integral"] = Field(description="Signal kind.")
    of: str = Field(description="The point integrated.")
    gain: float = Field(
        default=1.0,
        allow_inf_nan=False,
        description="Factor per second, e.g. 1/3600 for kW to kWh.",
    )
    start: float = Field(default=0.0, allow_inf_nan=False, description="Value at t=0.")


class Square(Model):
    """A bit that is on for ``duty`` of every ``period`` (a flashing beacon)."""

    kind: Literal["square"] = Field(description="Signal kind.")
    period: float = Field(gt=0, description="Seconds.")
    duty: float = Field(default=0.5, ge=0, le=1, description="Fraction of the period it is on.")


Signal = Annotated[
    Wander | Constant | Linear | Product | Integral | Square, Field(discriminator="kind")
]
BOOL_SIGNALS = ("square",)
NUMERIC_SIGNALS = ("wander", "linear", "product", "integral")


def _depends_on(signal: Signal) -> list[str]:
    if isinstance(signal, Linear | Integral):
        return [signal.of]
    if isinstance(signal, Product):
        return list(signal.of)
    return []


class SimPoint(Model):
    """One value served by a device, and how it moves."""

    name: str = Field(pattern=NAME, description="Point name, unique in the file.")
    unit: str = Field(default="", description="Engineering unit, for people.")
    table: Table = Field(default=Table.HOLDING, description="holding, input, coil or discrete.")
    address: int = Field(
        default=0, ge=0, le=65535, description="Register or bit address, 0-based (Modbus)."
    )
    di: str | None = Field(
        default=None,
        description="A meter's data identifier, e.g. 02030000 (DL/T 645 devices only).",
    )
    type: DataType = Field(default="uint16", description="Data type of the raw value.")
    word_order: Literal["big", "little"] = Field(
        default="big", description="Order of the two words of 32-bit types."
    )
    scale: float = Field(default=1.0, allow_inf_nan=False, description="value = raw*scale+offset")
    offset: float = Field(default=0.0, allow_inf_nan=False, description="value = raw*scale+offset")
    marks: list[float] = Field(
        default_factory=list,
        description="Values whose crossing by the scripted mean the simulator announces.",
    )
    signal: Signal = Field(
        default=Constant(kind="constant", value=0.0), description="How the value moves."
    )

    @property
    def width(self) -> int:
        """Registers (or bits) the point occupies."""
        return REGISTER_WIDTH[self.type]

    @property
    def is_bool(self) -> bool:
        return self.type == "bool"

    @model_validator(mode="after")
    def _consistent(self) -> SimPoint:
        if self.table.is_bits != self.is_bool:
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
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        kind = self.signal.kind
        gives_bool = kind in BOOL_SIGNALS or (
            isinstance(self.signal, Constant) and isinstance(self.signal.value, bool)
        )
        if gives_bool != self.is_bool:
            raise ValueError(
                TEXT_SIGNAL_TYPE.format(
                    kind=kind, gives="bool" if gives_bool else "numeric", type=self.type
                )
            )
        return self


class SimDeviceConfig(Model):
    """A unit on a bus and the values it serves."""

    name: str = Field(pattern=NAME, description="Device name, unique in the file.")
    bus: str = Field(description="Name of the bus the device is on.")
    unit: int = Field(default=1, ge=1, le=247, description="Modbus unit (slave) id.")
    address: str | None = Field(
        default=None,
        pattern=r"^[0-9]{12}$",
        description="A DL/T 645 meter's address, the 12 digits printed on it.",
    )
    line: str | None = Field(
        default=None,
        description="A line instrument's line, with its points' values in braces, e.g. "
        "CH4={ch4_heading:.2f};CO={co_heading:.0f}.",
    )
    period: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="A streaming instrument sends its line every this many seconds.",
    )
    request: str | None = Field(
        default=None,
        min_length=1,
        description="A polled instrument answers its line to this request (escapes allowed).",
    )
    checksum: Literal["none", "nmea"] = Field(
        default="none", description="nmea: the line goes out as $LINE*hh."
    )
    points: list[SimPoint] = Field(min_length=1, description="The values it serves.")


# -- the script: scripted phases -------------------------------------------------------------


class Change(Model):
    """Move a point's mean (or a bit) to ``to`` over ``over`` seconds."""

    point: str = Field(description="The point changed.")
    to: bool | float = Field(description="The new mean (a number) or state (true/false).")
    over: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds of the linear ramp; a bit switches at the end.",
    )


class Phase(Model):
    """One step of the scripted incident, at a time relative to the simulator's start."""

    at: float = Field(ge=0, allow_inf_nan=False, description="Seconds after start.")
    name: str = Field(min_length=1, description="What happens, for people and tests.")
    changes: list[Change] = Field(default_factory=list, description="What moves.")


# -- faults ----------------------------------------------------------------------------------


class Window(Model):
    """A time window ``[start, end)`` in seconds after start; no end: until stopped."""

    start: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="Seconds.")
    end: float | None = Field(default=None, allow_inf_nan=False, description="Seconds.")

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end is not None and self.end <= self.start:
            raise ValueError(TEXT_END_BEFORE_START)
        return self

    def active(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


class Silent(Window):
    """The device does not answer at all (a cut cable, a dead unit)."""

    kind: Literal["silent"] = Field(description="Fault kind.")
    device: str = Field(description="The device.")


class Slow(Window):
    """The device answers late, after ``delay`` seconds."""

    kind: Literal["slow"] = Field(description="Fault kind.")
    device: str = Field(description="The device.")
    delay: float = Field(gt=0, le=30, description="Seconds added to every answer.")


class Refuse(Window):
    """Reads or writes touching the range get a Modbus exception."""

    kind: Literal["exception"] = Field(description="Fault kind.")
    device: str = Field(description="The device.")
    table: Table = Field(default=Table.HOLDING, description="The table of the range.")
    address: int = Field(default=0, ge=0, le=65535, description="First address of the range.")
    count: int = Field(default=65536, ge=1, le=65536, description="Length of the range.")
    code: int = Field(
        default=2,
        ge=1,
        le=11,
        description="Exception code; 2 illegal data address, 4 device failure.",
    )


class Stuck(Window):
    """The sensor's reading freezes (at ``value``, or where it was when the fault began)."""

    kind: Literal["stuck"] = Field(description="Fault kind.")
    point: str = Field(description="The point.")
    value: bool | float | None = Field(default=None, description="The frozen value.")


class Drift(Window):
    """The sensor's reading drifts away from the truth by ``rate`` units per second."""

    kind: Literal["drift"] = Field(description="Fault kind.")
    point: str = Field(description="The point.")
    rate: float = Field(allow_inf_nan=False, description="Units per second.")


Fault = Annotated[Silent | Slow | Refuse | Stuck | Drift, Field(discriminator="kind")]
DEVICE_FAULTS = (Silent, Slow, Refuse)


class SiteConfig(Model):
    """The whole site file."""

    site: SiteInfo = Field(default_factory=SiteInfo, description="Name, seed, tick, repeat.")
    buses: list[BusConfig] = Field(min_length=1, description="Buses served.")
    devices: list[SimDeviceConfig] = Field(min_length=1, description="Devices served.")
    script: list[Phase] = Field(default_factory=list, description="Scripted phases.")
    faults: list[Fault] = Field(default_factory=list, description="Injected faults.")

    def points(self) -> Iterable[tuple[SimDeviceConfig, SimPoint]]:
        for device in self.devices:
            for point in device.points:
                yield device, point

    def modbus_devices(self) -> list[SimDeviceConfig]:
        """The devices served by Modbus (their points have registers)."""
        modbus = {bus.name for bus in self.buses if isinstance(bus, TcpBus | RtuBus)}
        return [device for device in self.devices if device.bus in modbus]

    def point(self, name: str) -> SimPoint:
        for _device, point in self.points():
            if point.name == name:
                return point
        raise KeyError(name)


def load_site(path: Path) -> SiteConfig:
    """Read and validate ``path``; raise ConfigError naming every wrong key."""
    return parse_site(read_toml(path), path)


def parse_site(raw: dict[str, Any], path: Path) -> SiteConfig:
    """Validate an already parsed site file."""
    try:
        site = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        # the names and references too, in the same run (config.references)
        problems = [describe_error(error, _TAGS) for error in exc.errors()]
        raise ConfigError(path, problems + site_references(raw)) from exc
    problems = list(_cross_check(site))
    if problems:
        raise ConfigError(path, problems)
    return site


def _cross_check(site: SiteConfig) -> Iterable[str]:
    """Rules that span sections: references, unique names, overlapping registers."""
    yield from _check_buses(site)
    yield from _check_devices(site)
    yield from _check_script(site)
    yield from _check_faults(site)


def _check_buses(site: SiteConfig) -> Iterable[str]:
    bus_names = [bus.name for bus in site.buses]
    device_names = [device.name for device in site.devices]
    for what, key, names in (("bus", "buses", bus_names), ("device", "devices", device_names)):
        for index, name in _duplicates(names):
            yield f"{key}[{index}].name: " + TEXT_DUPLICATE.format(what=what, name=name)
    ports = [
        (b, bus.port) for b, bus in enumerate(site.buses) if isinstance(bus, TcpBus) and bus.port
    ]
    for index, port in _duplicates([port for _b, port in ports]):
        yield f"buses[{ports[index][0]}].port: " + TEXT_PORT_TWICE.format(port=port)
    links = [
        (b, str(bus.link))
        for b, bus in enumerate(site.buses)
        if isinstance(bus, RtuBus | MeterLine | InstrumentLine)
    ]
    for index, link in _duplicates([link for _b, link in links]):
        yield f"buses[{links[index][0]}].link: " + TEXT_LINK_TWICE.format(link=link)


def _check_devices(site: SiteConfig) -> Iterable[str]:
    bus_types = {bus.name: bus.type for bus in site.buses}
    for d, device in enumerate(site.devices):
        yield from _check_device_kind(d, device, bus_types.get(device.bus, "modbus_tcp"))
    bus_names = [bus.name for bus in site.buses]
    point_names = [point.name for _device, point in site.points()]
    duplicated = {name for name, count in Counter(point_names).items() if count > 1}
    units: set[tuple[str, int]] = set()
    points = {point.name: point for _device, point in site.points()}
    for d, device in enumerate(site.devices):
        if device.bus not in bus_names:
            known = ", ".join(bus_names)
            yield f"devices[{d}].bus: " + TEXT_NO_BUS.format(name=device.bus, known=known)
        modbus = bus_types.get(device.bus, "modbus_tcp").startswith("modbus")
        if modbus and (device.bus, device.unit) in units:
            yield f"devices[{d}].unit: " + TEXT_SAME_UNIT.format(unit=device.unit, bus=device.bus)
        units.add((device.bus, device.unit))
        taken: dict[tuple[Table, int], str] = {}
        for p, point in enumerate(device.points):
            where = f"devices[{d}].points[{p}]"
            if point.name in duplicated:
                yield f"{where}.name: " + TEXT_DUPLICATE.format(what="point", name=point.name)
            for address in range(point.address, point.address + point.width if modbus else 0):
                other = taken.get((point.table, address))
                if other is not None:
                    yield f"{where}.address: " + TEXT_OVERLAP.format(
                        table=point.table, address=address, other=other
                    )
                    break
                taken[(point.table, address)] = point.name
            sources = _depends_on(point.signal)
            for s, source in enumerate(sources):
                key = "of" if isinstance(point.signal, Linear | Integral) else f"of[{s}]"
                if source not in points:
                    yield f"{where}.signal.{key}: " + TEXT_NO_POINT.format(name=source)
                elif points[source].is_bool:
                    yield f"{where}.signal.{key}: " + TEXT_BIT_SOURCE.format(name=source)
    cycle = _find_cycle({name: _depends_on(point.signal) for name, point in points.items()})
    if cycle:
        yield "devices: " + TEXT_CYCLE.format(points=" -> ".join(cycle))


def _check_device_kind(d: int, device: SimDeviceConfig, bus_type: str) -> Iterable[str]:
    """The keys a device and its points must (and must not) have on its bus's type."""
    where = f"devices[{d}]"
    given = device.model_fields_set
    keys = {
        "dlt645": ({"address"}, {"unit", "line", "period", "request", "checksum"}),
        "serial_line": ({"line"}, {"unit", "address"}),
    }.get(bus_type, (set(), {"address", "line", "period", "request", "checksum"}))
    required, refused = keys
    for key in sorted(required - given):
        yield f"{where}.{key}: " + TEXT_NEEDS_KEY.format(type=bus_type)
    for key in sorted(refused & given):
        yield f"{where}.{key}: " + TEXT_NOT_ON_BUS.format(type=bus_type)
    if bus_type == "serial_line" and (device.period is None) == (device.request is None):
        yield f"{where}: " + TEXT_PERIOD_OR_REQUEST
    if bus_type == "serial_line" and device.line is not None:
        names = {point.name for point in device.points}
        for field_name in _template_fields(device.line):
            if field_name not in names:
                yield f"{where}.line: " + TEXT_NO_POINT.format(name=field_name)
    for p, point in enumerate(device.points):
        at = f"{where}.points[{p}]"
        if bus_type == "dlt645":
            if point.di is None:
                yield f"{at}.di: " + TEXT_NEEDS_KEY.format(type=bus_type)
            elif data_format(point.di) is None:
                yield f"{at}.di: " + TEXT_UNKNOWN_DI.format(di=point.di)
        elif point.di is not None:
            yield f"{at}.di: " + TEXT_NOT_ON_BUS.format(type=bus_type)
        if bus_type.startswith("modbus") and "address" not in point.model_fields_set:
            yield f"{at}.address: " + TEXT_NEEDS_KEY.format(type=bus_type)


def _template_fields(line: str) -> list[str]:
    """The point names a line template refers to; unbalanced braces name themselves."""
    try:
        return [name for _text, name, _spec, _conv in Formatter().parse(line) if name]
    except ValueError:
        return [line]


def _check_script(site: SiteConfig) -> Iterable[str]:
    points = {point.name: point for _device, point in site.points()}
    for s, phase in enumerate(site.script):
        for c, change in enumerate(phase.changes):
            where = f"script[{s}].changes[{c}]"
            point = points.get(change.point)
            if point is None:
                yield f"{where}.point: " + TEXT_NO_POINT.format(name=change.point)
                continue
            if not isinstance(point.signal, Wander | Constant):
                yield f"{where}.point: " + TEXT_DERIVED_CHANGE.format(
                    name=point.name, kind=point.signal.kind
                )
            if isinstance(change.to, bool) != point.is_bool:
                yield f"{where}.to: " + TEXT_CHANGE_TYPE.format(
                    name=point.name,
                    type="a bit" if point.is_bool else "a number",
                    expected="true or false" if point.is_bool else "a number",
                )
    if site.site.repeat is not None and site.script:
        last = max(phase.at for phase in site.script)
        if site.site.repeat <= last:
            yield "site.repeat: " + TEXT_REPEAT_SHORT.format(repeat=site.site.repeat, last=last)


def _check_faults(site: SiteConfig) -> Iterable[str]:
    device_names = [device.name for device in site.devices]
    points = {point.name: point for _device, point in site.points()}
    for f, fault in enumerate(site.faults):
        if isinstance(fault, DEVICE_FAULTS):
            if fault.device not in device_names:
                yield f"faults[{f}].device: " + TEXT_NO_DEVICE.format(name=fault.device)
        elif fault.point not in points:
            yield f"faults[{f}].point: " + TEXT_NO_POINT.format(name=fault.point)
        elif (
            isinstance(fault, Stuck)
            and fault.value is not None
            and isinstance(fault.value, bool) != points[fault.point].is_bool
        ):
            yield f"faults[{f}].value: " + TEXT_CHANGE_TYPE.format(
                name=fault.point,
                type="a bit" if points[fault.point].is_bool else "a number",
                expected="true or false" if points[fault.point].is_bool else "a number",
            )
        elif isinstance(fault, Drift) and points[fault.point].is_bool:
            yield f"faults[{f}].point: " + TEXT_NO_DRIFT


def _duplicates(names: Sequence[Any]) -> Iterable[tuple[int, Any]]:
    seen: set[Any] = set()
    for index, name in enumerate(names):
        if name in seen:
            yield index, name
        seen.add(name)


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of the dependency graph, as a list of names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for nxt in graph.get(name, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt in graph and nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in graph:
        if name not in state and (found := visit(name)):
            return found
    return None


def evaluation_order(site: SiteConfig) -> list[str]:
    """Point names, each after the points its signal depends on."""
    graph = {point.name: _depends_on(point.signal) for _device, point in site.points()}
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for source in graph[name]:
            visit(source)
        order.append(name)

    for name in graph:
        visit(name)
    return order


# pydantic's error types, said the way an installer reads them
# discriminator values of the file's tagged unions: not keys, left out of error paths
_TAGS = frozenset(
    {
        "modbus_tcp",
        "modbus_rtu",
        "dlt645",
        "serial_line",
        "wander",
        "constant",
        "linear",
        "product",
        "integral",
        "square",
        "silent",
        "slow",
        "exception",
        "stuck",
        "drift",
        "bool",
        "float",
    }
)
