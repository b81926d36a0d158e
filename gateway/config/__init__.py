"""The gateway's one config file (TOML), validated on load: the config layer.

One module per section (``identity``, ``uplink``, ``store``, ``control``, ``commands``, ``anomaly``,
``history``, ``points``, ``alarms``, ``buses``, ``outputs``); ``file`` assembles them;
``references`` checks the names and references that span sections, on the raw file, so
that they are reported in the same run as type errors; ``errors`` words pydantic's errors
with key paths; ``command`` is `watchpost config`. Runtime modules import their section
from here, never the other way round: importing this package loads pydantic and the driver
registry, not numpy, LiteRT, paho, pymodbus or sqlite3 (a test holds it to that).
"""

from __future__ import annotations

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
