"""Names and references across a file's sections, checked on the file's raw tables.

A bus named by a device must exist, names must be unique, an anomaly model or an output may
only name points, devices and buses that exist. These rules are checked on the parsed TOML
itself, not on the validated models, so that one run reports them together with every type
error (a device whose ``interval`` is text and whose ``bus`` does not exist: both lines at
once). An entry whose name or reference is not a text is skipped here: its type error is
reported by the models.

``gateway_references`` is the only owner of these rules for a gateway's config (and for each
gateway of a site manifest); ``site_references`` covers the simulator's site file when its
models refuse it (once they accept it, its own checks run with the types known).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from gettext import gettext as _
from typing import Any

TEXT_NO_BUS = _("no bus named {name!r} (buses: {known})")
TEXT_NO_DEVICE = _("no device named {name!r} (devices: {known})")
TEXT_NO_POINT = _("no point named {name!r}")
TEXT_DUPLICATE = _("{what} name {name!r} is used more than once")
TEXT_OUTPUT_DUPLICATE = _("output name {name!r} is used more than once")
TEXT_OUTPUT_CLASH = _("output name {name!r} is also a point name")
TEXT_NONE = _("none")
TEXT_RTU_UNIT = _(
    "{unit} is not a unit an RTU line can poll: 0 is the broadcast address (no unit answers "
    "it) and 248-255 are reserved; use 1-247"
)
RTU_UNITS = range(1, 248)

Table = Mapping[str, Any]


def tables(raw: Any, key: str) -> list[tuple[int, Table]]:
    """The tables of the array ``key`` of ``raw`` with their index; others are skipped."""
    items = raw.get(key) if isinstance(raw, Mapping) else None
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, Mapping)]


def text(table: Any, key: str) -> str | None:
    """``table[key]`` when it is a text, else None."""
    value = table.get(key) if isinstance(table, Mapping) else None
    return value if isinstance(value, str) else None


def duplicates(key: str, what: str, names: Iterable[tuple[int, str | None]]) -> Iterator[str]:
    """``{key}[i].name: ... used more than once`` for every repeat after the first."""
    seen: set[str] = set()
    for index, name in names:
        if name is None:
            continue
        if name in seen:
            yield f"{key}[{index}].name: " + TEXT_DUPLICATE.format(what=what, name=name)
        seen.add(name)


def points_of(raw: Any) -> list[tuple[str, str | None]]:
    """(key path, name) of every point of every device."""
    return [
        (f"devices[{d}].points[{p}]", text(point, "name"))
        for d, device in tables(raw, "devices")
        for p, point in tables(device, "points")
    ]


def device_references(raw: Any) -> Iterator[str]:
    """Unique bus, device and point names; every device's bus exists."""
    buses = [(b, text(bus, "name")) for b, bus in tables(raw, "buses")]
    devices = tables(raw, "devices")
    yield from duplicates("buses", "bus", buses)
    yield from duplicates("devices", "device", [(d, text(dev, "name")) for d, dev in devices])
    points = points_of(raw)
    counts = Counter(name for _where, name in points if name is not None)
    for where, name in points:
        if name is not None and counts[name] > 1:
            yield f"{where}.name: " + TEXT_DUPLICATE.format(what="point", name=name)
    known = [name for _b, name in buses if name is not None]
    for d, device in devices:
        bus = text(device, "bus")
        if bus is not None and bus not in known:
            yield f"devices[{d}].bus: " + TEXT_NO_BUS.format(
                name=bus, known=", ".join(known) or TEXT_NONE
            )


def gateway_references(raw: Any) -> list[str]:
    """Every name and reference rule of a gateway's config (or a manifest's gateway)."""
    problems = list(device_references(raw))
    points = {name for _where, name in points_of(raw) if name is not None}
    anomaly = raw.get("anomaly") if isinstance(raw, Mapping) else None
    for m, model in tables(anomaly, "models"):
        names = model.get("points")
        for p, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str) and name not in points:
                problems.append(
                    f"anomaly.models[{m}].points[{p}]: " + TEXT_NO_POINT.format(name=name)
                )
    problems += _output_references(raw, points)
    problems += _rtu_units(raw)
    return problems


def _rtu_units(raw: Any) -> Iterator[str]:
    """A device on a Modbus RTU line has a unit id that can answer (1-247)."""
    rtu_buses = {
        name
        for _b, bus in tables(raw, "buses")
        if text(bus, "type") == "modbus_rtu" and (name := text(bus, "name")) is not None
    }
    for d, device in tables(raw, "devices"):
        unit = device.get("unit", RTU_UNITS.start)
        if text(device, "bus") not in rtu_buses or isinstance(unit, bool):
            continue
        if isinstance(unit, int) and unit not in RTU_UNITS:
            yield f"devices[{d}].unit: " + TEXT_RTU_UNIT.format(unit=unit)


def _output_references(raw: Any, points: set[str]) -> Iterator[str]:
    """Outputs write Modbus registers: their device or bus must be a Modbus one."""
    types = {text(bus, "name"): text(bus, "type") or "" for _b, bus in tables(raw, "buses")}
    modbus_buses = [name for name, kind in types.items() if name and kind.startswith("modbus")]
    modbus_devices = [
        name
        for _d, device in tables(raw, "devices")
        if (name := text(device, "name")) is not None
        and types.get(text(device, "bus"), "modbus").startswith("modbus")
    ]
    seen: set[str] = set()
    for i, output in tables(raw, "outputs"):
        where = f"outputs[{i}]"
        name = text(output, "name")
        if name is not None:
            if name in seen:
                yield f"{where}.name: " + TEXT_OUTPUT_DUPLICATE.format(name=name)
            if name in points:
                yield f"{where}.name: " + TEXT_OUTPUT_CLASH.format(name=name)
            seen.add(name)
        device, bus = text(output, "device"), text(output, "bus")
        if device is not None and device not in modbus_devices:
            known = ", ".join(modbus_devices) or TEXT_NONE
            yield f"{where}.device: " + TEXT_NO_DEVICE.format(name=device, known=known)
        if bus is not None and bus not in modbus_buses:
            known = ", ".join(modbus_buses) or TEXT_NONE
            yield f"{where}.bus: " + TEXT_NO_BUS.format(name=bus, known=known)
        names = output.get("points")
        for p, point in enumerate(names if isinstance(names, list) else []):
            if isinstance(point, str) and point not in points:
                yield f"{where}.points[{p}]: " + TEXT_NO_POINT.format(name=point)


def site_references(raw: Any) -> list[str]:
    """The simulator site's names and references: buses, devices, points, the script's
    changes and the faults."""
    problems = list(device_references(raw))
    points = {name for _where, name in points_of(raw) if name is not None}
    devices = [text(device, "name") for _d, device in tables(raw, "devices")]
    for s, phase in tables(raw, "script"):
        for c, change in tables(phase, "changes"):
            point = text(change, "point")
            if point is not None and point not in points:
                problems.append(
                    f"script[{s}].changes[{c}].point: " + TEXT_NO_POINT.format(name=point)
                )
    for f, fault in tables(raw, "faults"):
        device, point = text(fault, "device"), text(fault, "point")
        if device is not None and device not in devices:
            known = ", ".join(d for d in devices if d) or TEXT_NONE
            problems.append(
                f"faults[{f}].device: " + TEXT_NO_DEVICE.format(name=device, known=known)
            )
        if point is not None and point not in points:
            problems.append(f"faults[{f}].point: " + TEXT_NO_POINT.format(name=point))
    return problems
