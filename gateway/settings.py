"""The validated config as the daemon holds it: plain frozen dataclasses, no pydantic.

The config layer (``watchpost.config``) validates `gateway.toml` with pydantic models; each of
those models is a subclass of its plain class here (``config.points.PointConfig`` is a
``settings.PointConfig``), adding the field descriptions, bounds and validators, so every
validated config *is* a config of these types, and the methods and properties the runtime
uses are written once, here. The daemon's config is validated in a child process
(``config_child``), which hands back a copy made of these plain classes only
(``config.isolated.plain``), so that the daemon never imports pydantic. Runtime modules
(``gateway/``, ``drivers/``) take their config types from this module.

Fields are read-only sequences and mappings here (``Sequence``, ``Mapping``): the models narrow
them to their own lists of their own classes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from watchpost.drivers.base import PortSettings, Table

_T = TypeVar("_T")

EXIT_CONFIG = 78  # EX_CONFIG: systemd does not restart the service on it
MAX_GAP = 8  # a device's default [[devices]] max_gap: unused registers one request may bridge

TEXT_ERRORS = _("{path}: {count} error(s)")
TEXT_BAD_URL = _("must be an mqtt:// or mqtts:// URL with a host, e.g. mqtt://10.0.0.5:1883")
TEXT_URL_CREDENTIALS = _(
    "may not hold a user name or password (status and logs show the URL): "
    "put them in [uplink] username and password_file"
)
TEXT_URL_PORT = _("port {port} is not a port a broker listens on; use 1-65535, e.g. 1883")
TEXT_URL_EXTRA = _("may hold only scheme, host and port (no path, query or fragment)")

Level = Literal["prealarm", "alarm", "critical", "fault"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
REGISTER_WIDTH: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "bool": 1,
}


def _fields_only(cls: type[_T]) -> type[_T]:
    """Take a dataclass's defaults off the class (they stay in ``__init__`` and the fields).

    A pydantic model that extends a plain class looks its fields' defaults up as class
    attributes; found there, a default would replace the field its pydantic parent declared
    (with its bounds and validators) for every subclass that does not declare it again.
    """
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]  # a dataclass, see above
        if item.name in vars(cls):
            delattr(cls, item.name)
    return cls


class ConfigError(Exception):
    """The config file is unusable; ``errors`` holds one line per problem. No retry helps."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(errors))
        self.path = path
        self.errors = errors


def print_config_error(error: ConfigError) -> None:
    """Print a config error the way every command does."""
    print(TEXT_ERRORS.format(path=error.path, count=len(error.errors)), file=sys.stderr)
    for line in error.errors:
        print(f"  {line}", file=sys.stderr)


# -- alarm rules ------------------------------------------------------------------------------


@_fields_only
@dataclass(frozen=True, kw_only=True)
class Rule:
    """What every alarm rule has: its name, level, delays, latching and shelving."""

    name: str = ""
    level: Level = "alarm"
    on_delay: float = 0.0
    off_delay: float = 0.0
    latch: bool = False
    shelvable: bool = True
    max_shelve: float = 8 * 3600
    description: str = ""

    def default_name(self) -> str:
        return f"{getattr(self, 'kind', '')}_{self.level}"

    def __post_init__(self) -> None:
        """A rule the engine makes (not from the config) is named after its kind."""
        if not self.name:
            object.__setattr__(self, "name", self.default_name())


@_fields_only
@dataclass(frozen=True, kw_only=True)
class ThresholdRule(Rule):
    """high: raise at value >= threshold, clear below threshold - deadband; low: mirrored."""

    kind: Literal["high", "low"]
    threshold: float
    deadband: float = 0.0


@_fields_only
@dataclass(frozen=True, kw_only=True)
class RateOfRiseRule(Rule):
    """Raise when the value rose by ``rate`` per minute over the last ``window`` seconds."""

    kind: Literal["rate_of_rise"]
    rate: float
    window: float = 60.0
    deadband: float = 0.0


@_fields_only
@dataclass(frozen=True, kw_only=True)
class ProductionRule(Rule):
    """Power watch: the site produces while an ordered shutdown is in force."""

    kind: Literal["production_during_shutdown"]
    threshold: float
    deadband: float = 0.0

    def default_name(self) -> str:
        return "production_during_shutdown"


@_fields_only
@dataclass(frozen=True, kw_only=True)
class FaultRule(Rule):
    """A sensor's or the gateway's fault."""

    level: Level = "fault"

    def default_name(self) -> str:
        return str(getattr(self, "kind", ""))


@_fields_only
@dataclass(frozen=True, kw_only=True)
class OutOfRangeRule(FaultRule):
    """Sensor fault: the value lies outside the plausible range."""

    kind: Literal["out_of_range"]
    range: tuple[float, float] | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class StuckRule(FaultRule):
    """Sensor fault: good values stayed within ``tolerance`` of each other for ``duration``."""

    kind: Literal["stuck"]
    duration: float
    tolerance: float = 0.0


@_fields_only
@dataclass(frozen=True, kw_only=True)
class CommLossRule(FaultRule):
    """Sensor fault: the device does not answer (`comm` samples)."""

    kind: Literal["comm_loss"]
    stale: bool = True


@_fields_only
@dataclass(frozen=True, kw_only=True)
class InvalidRule(FaultRule):
    """Sensor fault: the device answered with an exception or a value flagged invalid."""

    kind: Literal["invalid"]


@_fields_only
@dataclass(frozen=True, kw_only=True)
class OutputFaultRule(FaultRule):
    """A local output that could not be written or verified (made by the engine)."""

    kind: Literal["output_fault"] = "output_fault"


@_fields_only
@dataclass(frozen=True, kw_only=True)
class StateDamagedRule(FaultRule):
    """The alarm state file could not be used and was moved aside (made by the engine)."""

    kind: Literal["state_damaged"] = "state_damaged"
    latch: bool = True
    shelvable: bool = False


@_fields_only
@dataclass(frozen=True, kw_only=True)
class GatewayFaultRule(FaultRule):
    """One of the gateway's own faults that comes and goes (made by the engine)."""

    shelvable: bool = False


@_fields_only
@dataclass(frozen=True, kw_only=True)
class DiskFullRule(GatewayFaultRule):
    """The store's disk is full: telemetry is not stored, alarms use the reserved room."""

    kind: Literal["disk_full"] = "disk_full"


@_fields_only
@dataclass(frozen=True, kw_only=True)
class StateUnsavedRule(GatewayFaultRule):
    """The alarm state file cannot be written (a full disk, an I/O error); retried."""

    kind: Literal["state_unsaved"] = "state_unsaved"


AlarmRule = (
    ThresholdRule
    | RateOfRiseRule
    | OutOfRangeRule
    | StuckRule
    | CommLossRule
    | InvalidRule
    | ProductionRule
)


# -- devices and points -----------------------------------------------------------------------


@_fields_only
@dataclass(frozen=True, kw_only=True)
class PointBase:
    """One named physical quantity read from a device: what every bus type shares."""

    name: str
    unit: str = ""
    description: str = ""
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None
    alarms: Sequence[AlarmRule] = ()
    rules_from: str | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class PointConfig(PointBase):
    """A point read from Modbus registers or bits."""

    table: Table = Table.HOLDING
    address: int
    type: DataType = "uint16"
    word_order: Literal["big", "little"] = "big"

    @property
    def width(self) -> int:
        """Registers (or bits) the point occupies."""
        return REGISTER_WIDTH[self.type]


@_fields_only
@dataclass(frozen=True, kw_only=True)
class DeviceBase:
    """A device on a bus: what every bus type shares."""

    name: str
    bus: str
    interval: float = 1.0
    timeout: float = 1.0
    retries: int = 1

    @property
    def point_list(self) -> Sequence[PointBase]:
        """The device's points, whatever their bus type."""
        points: Sequence[PointBase] = getattr(self, "points", ())
        return points


@_fields_only
@dataclass(frozen=True, kw_only=True)
class DeviceConfig(DeviceBase):
    """A Modbus unit on a bus and the points read from it."""

    unit: int = 1
    max_gap: int = MAX_GAP
    points: Sequence[PointConfig]


@_fields_only
@dataclass(frozen=True, kw_only=True)
class Dlt645Point(PointBase):
    """One data identifier (DI) of a DL/T 645 meter."""

    di: str


@_fields_only
@dataclass(frozen=True, kw_only=True)
class Dlt645Device(DeviceBase):
    """A DL/T 645-2007 meter on a `dlt645` bus."""

    interval: float = 5.0
    address: str
    points: Sequence[Dlt645Point]


@_fields_only
@dataclass(frozen=True, kw_only=True)
class LinePoint(PointBase):
    """One value read from an instrument's lines of text."""

    pattern: str | None = None
    field: int | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class LineDevice(DeviceBase):
    """An instrument that talks in lines of text on a `serial_line` bus."""

    timeout: float = 3.0
    retries: int = 0
    request: str | None = None
    checksum: Literal["none", "nmea"] = "none"
    delimiter: str = ","
    points: Sequence[LinePoint]


# -- buses -------------------------------------------------------------------------------------


@_fields_only
@dataclass(frozen=True, kw_only=True)
class BusSettings:
    """One `[[buses]]` entry; each bus type adds its own keys."""

    type: str
    name: str


@_fields_only
@dataclass(frozen=True, kw_only=True)
class ModbusTcpSettings(BusSettings):
    """A Modbus TCP endpoint."""

    type: Literal["modbus_tcp"]
    host: str
    port: int = 502


@_fields_only
@dataclass(frozen=True, kw_only=True)
class ModbusRtuSettings(BusSettings):
    """An RS-485 line carrying Modbus RTU."""

    type: Literal["modbus_rtu"]
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


@_fields_only
@dataclass(frozen=True, kw_only=True)
class Dlt645BusSettings(BusSettings):
    """An RS-485 line carrying DL/T 645-2007 meters."""

    type: Literal["dlt645"]
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200] = 2400
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    wake: int = 4

    def settings(self) -> PortSettings:
        return PortSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


@_fields_only
@dataclass(frozen=True, kw_only=True)
class SerialLineSettings(BusSettings):
    """A serial line carrying instruments that talk in lines of text."""

    type: Literal["serial_line"]
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    line_end: str = "\\r\\n"
    max_line: int = 256
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"

    def terminator(self) -> bytes:
        from watchpost.drivers.serial_line import unescape  # noqa: PLC0415 - no cycle

        return unescape(self.line_end).encode("latin-1")

    def settings(self) -> PortSettings:
        return PortSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


# -- outputs, uplink, store and the small sections ----------------------------------------------


@_fields_only
@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """A local output driven by alarms: a sounder, a beacon, a power-cut relay."""

    name: str
    description: str = ""
    device: str | None = None
    bus: str | None = None
    unit: int | None = None
    table: Literal["coil", "holding"] = "coil"
    address: int
    on: int = 1
    off: int = 0
    points: Sequence[str] = ()
    levels: Sequence[Level] = ("alarm", "critical")
    kinds: Sequence[str] = ()
    until: Literal["clear", "ack"] = "clear"
    timeout: float = 1.0
    refresh: float = 60.0
    fault_level: Level = "fault"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker's place, parsed from its URL."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(TEXT_BAD_URL)
        if "@" in parts.netloc:
            raise ValueError(TEXT_URL_CREDENTIALS)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(TEXT_URL_EXTRA)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(TEXT_BAD_URL) from exc
        if port == 0:
            raise ValueError(TEXT_URL_PORT.format(port=port))
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)


@_fields_only
@dataclass(frozen=True, kw_only=True)
class UplinkConfig:
    """The `[uplink]` section."""

    broker: str
    backup_brokers: Sequence[str] = ()
    keepalive: int = 30
    connect_timeout: float = 10.0
    reconnect_min: float = 0.5
    reconnect_max: float = 15.0
    reconnect_spread: float = 2.0
    protocol: Literal["mqtt311", "mqtt5"] = "mqtt311"
    session_expiry: int = 0
    renew_before_days: int = 30
    max_inflight: int = 64
    ack_timeout: float = 20.0
    failback_after: float = 300.0
    health_interval: float = 30.0
    client_id: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    def addresses(self) -> list[BrokerAddress]:
        """The primary broker first, then the backups."""
        return [BrokerAddress.parse(url) for url in (self.broker, *self.backup_brokers)]


@_fields_only
@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """The `[store]` section."""

    path: Path
    commit_interval: float = 1.0
    quota_mb: float = 512
    min_free_mb: float = 64
    keep_sent: float = 86400.0
    alarm_reserve_mb: float = 4
    alarm_spill: Path | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class GatewayIdentity:
    """The `[gateway]` section."""

    site: str
    id: str
    state_dir: Path | None = None
    clock: Literal["ntp", "rtc"] = "ntp"
    language: Literal["en", "zh_CN"] | None = None
    timezone: str | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    """The `[control]` section."""

    socket: Path = Path("/run/watchpost/control.sock")


@_fields_only
@dataclass(frozen=True, kw_only=True)
class CommandsConfig:
    """The `[commands]` section."""

    verify_key: Path | None = None
    max_age: float = 300.0


@_fields_only
@dataclass(frozen=True, kw_only=True)
class HistoryConfig:
    """The `[history]` section."""

    enabled: bool = True
    retention_days: float = 30
    path: Path | None = None


@_fields_only
@dataclass(frozen=True, kw_only=True)
class AnomalyModelConfig:
    """One `[[anomaly.models]]` entry."""

    name: str
    points: Sequence[str]
    model: Path | None = None
    period_s: float = 1.0
    max_age_s: float | None = None
    calibration_s: float = 7200.0
    threshold: float | None = None
    threshold_factor: float | None = None
    relation_factor: float | None = None
    top_k: int | None = None
    roughness_weight: float | None = None
    calibration_factor: float | None = None
    drift_lag_s: float | None = None
    hold_s: float | None = None
    clear_s: float | None = None
    propose_rebaseline_s: float = 0.0
    test_latency_s: float = 0.0

    def rows(self, seconds: float) -> int:
        """A duration in rows of this entry's grid (at least 1 for a non-zero duration)."""
        return max(1, round(seconds / self.period_s)) if seconds > 0 else 0


@_fields_only
@dataclass(frozen=True, kw_only=True)
class AnomalyConfig:
    """The `[anomaly]` section."""

    enabled: bool = True
    queue_size: int = 100_000
    models: Sequence[AnomalyModelConfig] = ()


@_fields_only
@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """The whole config file."""

    gateway: GatewayIdentity
    uplink: UplinkConfig
    store: StoreConfig
    control: ControlConfig = field(default_factory=ControlConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    buses: Sequence[BusSettings] = ()
    devices: Sequence[DeviceBase] = ()
    outputs: Sequence[OutputConfig] = ()

    def points(self) -> Iterator[tuple[DeviceBase, PointBase]]:
        for device in self.devices:
            for point in device.point_list:
                yield device, point

    def modbus_devices(self) -> list[DeviceConfig]:
        """The devices read by Modbus registers (the only ones outputs and `read` can use)."""
        return [device for device in self.devices if isinstance(device, DeviceConfig)]
