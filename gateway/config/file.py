"""The whole config file: its sections assembled, loaded, and the rules that span sections.

Every error names its key path (``devices[1].points[3].scale: must be a number``).
"""

from __future__ import annotations

from collections.abc import Iterable
from gettext import gettext as _
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from watchpost.config.anomaly import AnomalyConfig
from watchpost.config.base import ConfigError, Model, read_toml
from watchpost.config.buses import BusConfig
from watchpost.config.commands import CommandsConfig
from watchpost.config.control import ControlConfig
from watchpost.config.devices import AnyDevice, tag_devices
from watchpost.config.errors import describe_error
from watchpost.config.history import HistoryConfig
from watchpost.config.identity import GatewayIdentity
from watchpost.config.outputs import OutputConfig
from watchpost.config.points import DeviceBase, DeviceConfig, PointBase
from watchpost.config.references import gateway_references
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig

TEXT_MISSING = _("{path} does not exist")
TEXT_WORLD_WRITABLE = _("{path}: others can change this file (chmod o-w)")
TEXT_WORLD_READABLE = _(
    "{path}: others can read this file, which points at credentials (chmod 640)"
)
TEXT_SECRET_READABLE = _("{path} can be read by others (mode {mode}); chmod 600")
TEXT_KEY_WRITABLE = _(
    "{path}: others can replace the key that decides which commands run (chmod 644)"
)


class GatewayConfig(Model):
    """The whole config file."""

    gateway: GatewayIdentity = Field(description="Identity of the gateway.")
    uplink: UplinkConfig = Field(description="MQTT uplink to the platform.")
    store: StoreConfig = Field(description="The on-disk store and forward buffer.")
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="The local control socket for crews."
    )
    commands: CommandsConfig = Field(
        default_factory=CommandsConfig,
        description="How commands from the platform are authenticated (signatures).",
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
    """Read and validate ``path``; raise ConfigError naming every wrong key, type errors
    and wrong references (``config.references``) in one go."""
    raw = read_toml(path)
    problems: list[str] = []
    config = None
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [describe_error(error) for error in exc.errors()]
    problems += gateway_references(raw)
    if problems or config is None:
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
    verify_key = config.commands.verify_key
    if verify_key is not None:
        if require_files and not verify_key.is_file():
            problems.append("commands.verify_key: " + TEXT_MISSING.format(path=verify_key))
        elif verify_key.exists() and verify_key.stat().st_mode & 0o022:
            problems.append("commands.verify_key: " + TEXT_KEY_WRITABLE.format(path=verify_key))
    for key, file in secrets:
        if file is None or not file.exists():
            continue
        file_mode = file.stat().st_mode
        if file_mode & 0o077:
            problems.append(
                f"{key}: " + TEXT_SECRET_READABLE.format(path=file, mode=oct(file_mode & 0o777))
            )
    return problems
