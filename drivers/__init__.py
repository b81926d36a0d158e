"""Field protocols. Each driver is one module with a KEY, a pydantic ``Config`` and ``create``.

Adding a protocol is one module plus one line in ``DRIVERS``; the config's bus union is
derived from this dict.
"""

from __future__ import annotations

from types import ModuleType

from watchpost.drivers import modbus_rtu, modbus_tcp

DRIVERS: dict[str, ModuleType] = {
    modbus_tcp.KEY: modbus_tcp,
    modbus_rtu.KEY: modbus_rtu,
}
