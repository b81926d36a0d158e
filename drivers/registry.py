"""The bus types: key -> ``Driver`` (its pydantic config class and its factory).

Adding a protocol is one module (its plain settings in ``watchpost.settings``, its pydantic
``Config`` and ``DRIVER``) plus one line here and one in ``drivers.factories``; the config's
bus union is derived from this dict. It loads pydantic: the config layer's, not the daemon's.
"""

from __future__ import annotations

from watchpost.drivers import dlt645_config, modbus_rtu, modbus_tcp, serial_line_config
from watchpost.drivers.entry import Driver

DRIVERS: dict[str, Driver] = {
    driver.key: driver
    for driver in (
        modbus_tcp.DRIVER,
        modbus_rtu.DRIVER,
        dlt645_config.DRIVER,
        serial_line_config.DRIVER,
    )
}
