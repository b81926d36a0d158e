"""Field protocols. Each driver is one module with a KEY, a pydantic ``Config`` and ``DRIVER``.

Adding a protocol is one module plus one line in ``DRIVERS``; the config's bus union is
derived from this dict. Importing this package stays light: a driver module imports its
protocol's library (pymodbus, pyserial) only inside its factory, when a bus is opened.
"""

from __future__ import annotations

from watchpost.drivers import dlt645, modbus_rtu, modbus_tcp, serial_line
from watchpost.drivers.base import Driver

DRIVERS: dict[str, Driver] = {
    driver.key: driver
    for driver in (
        modbus_tcp.DRIVER,
        modbus_rtu.DRIVER,
        dlt645.DRIVER,
        serial_line.DRIVER,
    )
}
