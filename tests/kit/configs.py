"""Gateway configs built in code: a test says what differs, the builder writes valid TOML.

    config = gateway(broker.url, buses=[tcp_bus("plant", port)],
                     devices=[device("tank", "plant", point("level", 10, scale=0.01))])
    path = write_config(tmp_path / "gateway.toml", config)

    bus = {"type": "modbus_tcp", "name": "tcp", "port": 0}
    site = toml(simulated_site("demo", bus, constant("gas_a", 0, 150)))  # for the simulator

Every builder returns a plain dict of the config's own keys, so a test can change any key
before writing (``config["store"]["quota_mb"] = 1``) and a key the gateway does not know is
refused by the gateway, not hidden by the kit.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from watchpost.provisioning.tomlwrite import dumps

Table = dict[str, Any]


def gateway(
    broker: str = "mqtt://127.0.0.1:1883",
    *,
    site: str = "mine-7",
    gateway_id: str = "gw-01",
    store: str = "var/buffer.db",
    control: str = "var/control.sock",
    buses: Iterable[Table] = (),
    devices: Iterable[Table] = (),
    **sections: Table | list[Table],
) -> Table:
    """A whole config; ``sections`` adds or replaces sections (``uplink={...}``).

    A table given for an existing section is merged into it; anything else replaces it.
    """
    document: Table = {
        "gateway": {"site": site, "id": gateway_id},
        "uplink": {"broker": broker},
        "store": {"path": store},
        "control": {"socket": control},
        "buses": list(buses),
        "devices": list(devices),
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(name), dict):
            document[name] = {**document[name], **value}
        else:
            document[name] = value
    return {key: value for key, value in document.items() if value != []}


def tcp_bus(name: str, port: int, host: str = "127.0.0.1", **keys: Any) -> Table:
    return {"name": name, "type": "modbus_tcp", "host": host, "port": port, **keys}


def rtu_bus(name: str, port: str, baudrate: int = 19200, **keys: Any) -> Table:
    return {"name": name, "type": "modbus_rtu", "port": port, "baudrate": baudrate, **keys}


def device(name: str, bus: str, *points: Table, unit: int = 1, **keys: Any) -> Table:
    return {"name": name, "bus": bus, "unit": unit, **keys, "points": list(points)}


def point(name: str, address: int, *alarms: Table, **keys: Any) -> Table:
    table: Table = {"name": name, "address": address, **keys}
    if alarms:
        table["alarms"] = list(alarms)
    return table


def alarm(kind: str, **keys: Any) -> Table:
    return {"kind": kind, **keys}


def gas_gateway(
    broker: str,
    port: int,
    *points: Table,
    site: str,
    gateway_id: str,
    interval: float = 0.5,
    **sections: Table | list[Table],
) -> Table:
    """The gateway of most daemon tests: one Modbus TCP bus ``tcp`` on 127.0.0.1:``port``
    and one device ``gas`` (unit 1) read every ``interval`` s; ``sections`` as ``gateway``."""
    return gateway(
        broker,
        site=site,
        gateway_id=gateway_id,
        buses=[tcp_bus("tcp", port)],
        devices=[device("gas", "tcp", *points, interval=interval)],
        **sections,
    )


def gas(name: str, address: int, *alarms: Table, scale: float = 0.01, **keys: Any) -> Table:
    """A gas reading in %LEL: the holding register at ``address`` times ``scale``."""
    return point(name, address, *alarms, unit="%LEL", scale=scale, **keys)


def toml(document: Table) -> str:
    """The config as TOML text."""
    return dumps(document)


def write_config(path: Path, document: Table, mode: int = 0o640) -> Path:
    """Write ``document`` as TOML to ``path`` with ``mode`` (the daemon refuses 0o666)."""
    path.write_text(dumps(document), encoding="utf-8")
    path.chmod(mode)
    return path


def simulated_site(name: str, bus: Table, *points: Table, device: str = "gas") -> Table:
    """A site for `watchpost simulate`: ``bus`` and one device (unit 1) with ``points``."""
    return {
        "site": {"name": name},
        "buses": [bus],
        "devices": [{"name": device, "bus": bus["name"], "unit": 1, "points": list(points)}],
    }


def constant(name: str, address: int, value: float) -> Table:
    """A point of a simulated site: the holding register at ``address`` always reads ``value``."""
    return {
        "name": name,
        "table": "holding",
        "address": address,
        "type": "uint16",
        "signal": {"kind": "constant", "value": value},
    }


def gas_site(name: str, *values: float) -> Table:
    """A simulated site with Modbus TCP bus ``tcp`` (a free port) and device ``gas`` whose
    points gas_a, gas_b, ... always read ``values`` (holding registers 0, 1, ...)."""
    points = [constant(f"gas_{chr(ord('a') + i)}", i, value) for i, value in enumerate(values)]
    return simulated_site(name, {"type": "modbus_tcp", "name": "tcp", "port": 0}, *points)
