"""The whole config file: its sections assembled, loaded, and the rules that span sections.

Every error names its key path (``devices[1].points[3].scale: must be a number``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from watchpost import settings
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
from watchpost.config.paths import check_file_modes
from watchpost.config.references import gateway_references
from watchpost.config.store import StoreConfig
from watchpost.config.uplink import UplinkConfig

__all__ = ["GatewayConfig", "check_file_modes", "load_config"]


class GatewayConfig(Model, settings.GatewayConfig):
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
