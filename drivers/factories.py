"""The daemon's way to open a bus: from its plain settings, without the registry.

The registry (``drivers.registry``) holds each bus type's pydantic config class, which the
daemon never loads; here each plain settings class of ``watchpost.settings`` leads to its
bus, whose module (and protocol library: pymodbus, pyserial) is imported when the first bus
of its type is opened.
"""

from __future__ import annotations

from gettext import gettext as _

from watchpost import settings
from watchpost.drivers.base import Bus

TEXT_UNKNOWN_BUS = _("bus {name}: no driver for bus type {type!r}")


def open_bus(config: settings.BusSettings) -> Bus:
    """A closed bus for ``config``; ValueError for a type no driver knows."""
    # the bus modules directly: the driver modules hold the pydantic config classes too
    match config:
        case settings.ModbusTcpSettings():
            from watchpost.drivers.modbus_tcp_bus import ModbusTcpBus  # noqa: PLC0415 - pymodbus

            return ModbusTcpBus(config)
        case settings.ModbusRtuSettings():
            from watchpost.drivers.modbus import ModbusRtuBus  # noqa: PLC0415 - pymodbus

            return ModbusRtuBus(config)
        case settings.Dlt645BusSettings():
            from watchpost.drivers.dlt645_bus import Dlt645Bus  # noqa: PLC0415 - pyserial

            return Dlt645Bus(config)
        case settings.SerialLineSettings():
            from watchpost.drivers.serial_line_bus import SerialLineBus  # noqa: PLC0415

            return SerialLineBus(config)
    raise ValueError(TEXT_UNKNOWN_BUS.format(name=config.name, type=config.type))
