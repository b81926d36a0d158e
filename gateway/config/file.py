"""The whole config file: its sections assembled, loaded, and the rules that span sections.

Every error names its key path (``devices[1].points[3].scale: must be a number``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from gettext import gettext as _
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from watchpost.config.anomaly import AnomalyConfig
from watchpost.config.base import ConfigError, Model, read_toml
from watchpost.config.buses import BusConfig
from watchpost.config.control import ControlConfig
from watchpost.config.devices import AnyDevice, tag_devices
from watchpost.config.errors import describe_error
from watchpost.config.history import HistoryConfig
from watchpost.config.identity import GatewayIdentity
from watchpost.config.outputs import OutputConfig, check_outputs
from watchpost.config.points import DeviceBase, DeviceConfig, PointBase
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig

TEXT_NO_BUS = _("no bus named {name!r} (buses: {known})")
TEXT_NO_POINT = _("no point named {name!r}")
TEXT_MISSING = _("{path} does not exist")
TEXT_WORLD_WRITABLE = _("{path}: others can change this file (chmod o-w)")
TEXT_WORLD_READABLE = _(
    "{path}: others can read this file, which points at credentials (chmod 640)"
)
TEXT_SECRET_READABLE = _("{path} can be read by others (mode {mode}); chmod 600")
TEXT_DUPLICATE = _("{what} name {name!r} is used more than once")


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
    devices: list[AnyDevice] = Field(
        default_factory=list,
        description="Devices polled; their keys depend on their bus's type (config/devices.py).",
    )
    outputs: list[OutputConfig] = Field(
        default_factory=list,
        description=("Local outputs driven by alarms: sounders, beacons, power-cut relays."),
    )

    @model_validator(mode="before")
    @classmethod
    def _tag_devices(cls, data: Any) -> Any:
        return tag_devices(data)

    def points(self) -> Iterable[tuple[DeviceBase, PointBase]]:
        for device in self.devices:
            for point in device.point_list:
                yield device, point

    def modbus_devices(self) -> list[DeviceConfig]:
        """The devices read by Modbus registers (the only ones outputs and `read` can use)."""
        return [device for device in self.devices if isinstance(device, DeviceConfig)]


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
            devices={d.name: d.bus for d in config.modbus_devices()},
            buses=[b.name for b in config.buses if b.type.startswith("modbus")],
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
        for p, point in enumerate(device.point_list):
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
