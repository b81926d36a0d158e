"""The `[[devices]]` list: which keys a device and its points take depends on its bus's type.

A device names its bus; the bus's ``type`` decides the device's model: Modbus
(``DeviceConfig``: unit, table, address, ...), DL/T 645 (``Dlt645Device``: address, di) or
a line-oriented instrument (``LineDevice``: request, pattern, field). ``GatewayConfig``
looks the bus up before the devices are validated (``tag_devices``), so every error still
names its key path (``devices[2].points[0].di: ...``). A device whose bus does not exist is
read as Modbus; the cross-section check then names the missing bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag

from watchpost.config.dlt645 import Dlt645Device
from watchpost.config.points import DeviceBase, DeviceConfig
from watchpost.config.serial_line import LineDevice

KIND_KEY = "__bus_type__"  # set by tag_devices, taken off again by DeviceBase
DEVICE_MODELS: dict[str, type[DeviceBase]] = {
    "modbus": DeviceConfig,
    "dlt645": Dlt645Device,
    "serial_line": LineDevice,
}
DEVICE_KINDS = frozenset(DEVICE_MODELS)
"""The union's tags; pydantic puts them into an error's location."""
BUS_DEVICE_KIND = {
    "modbus_tcp": "modbus",
    "modbus_rtu": "modbus",
    "dlt645": "dlt645",
    "serial_line": "serial_line",
}


def device_kind(value: Any) -> str:
    """The tag of a device (a raw table tagged by ``tag_devices``, or a model)."""
    if isinstance(value, dict):
        return BUS_DEVICE_KIND.get(str(value.get(KIND_KEY, "")), "modbus")
    for kind, model in DEVICE_MODELS.items():
        if type(value) is model:
            return kind
    return "modbus"


def tag_devices(raw: Any) -> Any:
    """The raw config with each device table tagged with its bus's type."""
    if not isinstance(raw, dict):
        return raw
    buses, devices = raw.get("buses"), raw.get("devices")
    if not isinstance(buses, list) or not isinstance(devices, list):
        return raw
    types = {
        bus.get("name"): bus.get("type")
        for bus in buses
        if isinstance(bus, dict) and isinstance(bus.get("type"), str)
    }
    tagged = [
        {**device, KIND_KEY: types[device["bus"]]}
        if isinstance(device, dict)
        and isinstance(device.get("bus"), str)
        and device["bus"] in types
        else device
        for device in devices
    ]
    return {**raw, "devices": tagged}


if TYPE_CHECKING:
    # Type checkers see the common base; pydantic (at run time) sees the tagged union.
    AnyDevice = DeviceBase
else:
    AnyDevice = Annotated[
        Union[tuple(Annotated[model, Tag(kind)] for kind, model in DEVICE_MODELS.items())],  # noqa: UP007
        Discriminator(device_kind),
    ]
