"""The gateway's one config file (TOML), validated on load: the config layer.

One module per section (``identity``, ``uplink``, ``store``, ``control``, ``commands``, ``anomaly``,
``history``, ``points``, ``alarms``, ``buses``, ``outputs``); ``file`` assembles them;
``references`` checks the names and references that span sections, on the raw file, so
that they are reported in the same run as type errors; ``errors`` words pydantic's errors
with key paths; ``command`` is `watchpost config`. Runtime modules take their config types from
``watchpost.settings`` (the plain classes every model here extends), never from here.
Importing this package loads nothing: its names load their module on first use (pydantic and
the driver registry, never numpy, LiteRT, paho, pymodbus or sqlite3; a test holds it to
that), so that the daemon can use ``config.paths`` without pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchpost.config.alarms import AlarmRule as AlarmRule
    from watchpost.config.anomaly import AnomalyConfig as AnomalyConfig
    from watchpost.config.anomaly import AnomalyModelConfig as AnomalyModelConfig
    from watchpost.config.base import EXIT_CONFIG as EXIT_CONFIG
    from watchpost.config.base import NAME_PATTERN as NAME_PATTERN
    from watchpost.config.base import ConfigError as ConfigError
    from watchpost.config.base import Model as Model
    from watchpost.config.base import read_toml as read_toml
    from watchpost.config.buses import BusConfig as BusConfig
    from watchpost.config.commands import CommandsConfig as CommandsConfig
    from watchpost.config.control import ControlConfig as ControlConfig
    from watchpost.config.errors import describe_error as describe_error
    from watchpost.config.errors import print_config_error as print_config_error
    from watchpost.config.file import GatewayConfig as GatewayConfig
    from watchpost.config.file import check_file_modes as check_file_modes
    from watchpost.config.file import load_config as load_config
    from watchpost.config.history import HistoryConfig as HistoryConfig
    from watchpost.config.identity import GatewayIdentity as GatewayIdentity
    from watchpost.config.outputs import OutputConfig as OutputConfig
    from watchpost.config.points import REGISTER_WIDTH as REGISTER_WIDTH
    from watchpost.config.points import TEXT_PAST_END as TEXT_PAST_END
    from watchpost.config.points import TEXT_TYPE_TABLE as TEXT_TYPE_TABLE
    from watchpost.config.points import DataType as DataType
    from watchpost.config.points import DeviceConfig as DeviceConfig
    from watchpost.config.points import PointConfig as PointConfig
    from watchpost.config.references import TEXT_DUPLICATE as TEXT_DUPLICATE
    from watchpost.config.references import TEXT_NO_BUS as TEXT_NO_BUS
    from watchpost.config.references import TEXT_NO_POINT as TEXT_NO_POINT
    from watchpost.config.store import StoreConfig as StoreConfig
    from watchpost.config.uplink import BrokerAddress as BrokerAddress
    from watchpost.config.uplink import UplinkConfig as UplinkConfig

_WHERE = {
    "AlarmRule": "watchpost.config.alarms",
    "AnomalyConfig": "watchpost.config.anomaly",
    "AnomalyModelConfig": "watchpost.config.anomaly",
    "EXIT_CONFIG": "watchpost.config.base",
    "NAME_PATTERN": "watchpost.config.base",
    "ConfigError": "watchpost.config.base",
    "Model": "watchpost.config.base",
    "read_toml": "watchpost.config.base",
    "BusConfig": "watchpost.config.buses",
    "CommandsConfig": "watchpost.config.commands",
    "ControlConfig": "watchpost.config.control",
    "describe_error": "watchpost.config.errors",
    "print_config_error": "watchpost.config.errors",
    "GatewayConfig": "watchpost.config.file",
    "check_file_modes": "watchpost.config.file",
    "load_config": "watchpost.config.file",
    "HistoryConfig": "watchpost.config.history",
    "GatewayIdentity": "watchpost.config.identity",
    "OutputConfig": "watchpost.config.outputs",
    "REGISTER_WIDTH": "watchpost.config.points",
    "TEXT_PAST_END": "watchpost.config.points",
    "TEXT_TYPE_TABLE": "watchpost.config.points",
    "DataType": "watchpost.config.points",
    "DeviceConfig": "watchpost.config.points",
    "PointConfig": "watchpost.config.points",
    "TEXT_DUPLICATE": "watchpost.config.references",
    "TEXT_NO_BUS": "watchpost.config.references",
    "TEXT_NO_POINT": "watchpost.config.references",
    "StoreConfig": "watchpost.config.store",
    "BrokerAddress": "watchpost.config.uplink",
    "UplinkConfig": "watchpost.config.uplink",
}


def __getattr__(name: str) -> object:
    """The package's names, each loaded from its module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
