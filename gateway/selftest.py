"""Self-test: every part a crew can check at the cabinet, each passing or failing with a reason.

The same checks run inside the daemon (`watchpost selftest` through the control socket) and
from the CLI when the daemon is stopped; only the source of each fact differs.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from dataclasses import asdict, dataclass
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost.clock import kernel_synced
from watchpost.config.uplink import BrokerAddress
from watchpost.sqlite_ro import connect_read_only

MIN_FREE_BYTES = 50 * 1024 * 1024

TEXT_DISK_OK = _("{free:.0f} MB free at {path}")
TEXT_DISK_LOW = _("only {free:.0f} MB free at {path} (needs {need:.0f} MB)")
TEXT_CLOCK_OK = _("synchronised")
TEXT_CLOCK_BAD = _("not synchronised: stamps come from the monotonic clock until it is")
TEXT_BROKER_OK = _("{host}:{port} accepts connections")
TEXT_BROKER_BAD = _("{host}:{port} unreachable: {error}")
TEXT_STORE_OK = _("{path}: integrity ok")
TEXT_STORE_NEW = _("{path}: not created yet (the daemon creates it)")
TEXT_STORE_BAD = _("{path}: {error}")


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_disk(path: Path) -> Check:
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    mb = 1024 * 1024
    if free < MIN_FREE_BYTES:
        return Check(
            "disk",
            False,
            TEXT_DISK_LOW.format(free=free / mb, path=folder, need=MIN_FREE_BYTES / mb),
        )
    return Check("disk", True, TEXT_DISK_OK.format(free=free / mb, path=folder))


def check_clock() -> Check:
    synced = kernel_synced()
    return Check("clock", synced, TEXT_CLOCK_OK if synced else TEXT_CLOCK_BAD)


def check_broker(url: str, timeout: float = 3.0) -> Check:
    """A TCP connection to the broker (the daemon reports its MQTT session itself)."""
    address = BrokerAddress.parse(url)
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            pass
    except OSError as exc:
        return Check(
            "broker", False, TEXT_BROKER_BAD.format(host=address.host, port=address.port, error=exc)
        )
    return Check("broker", True, TEXT_BROKER_OK.format(host=address.host, port=address.port))


def check_store_file(path: Path) -> Check:
    """SQLite's quick integrity check, read-only, on the store file."""
    if not path.exists():
        return Check("store", True, TEXT_STORE_NEW.format(path=path))
    try:
        conn = connect_read_only(path, timeout=5)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("store", False, TEXT_STORE_BAD.format(path=path, error=exc))
    if result != "ok":
        return Check("store", False, TEXT_STORE_BAD.format(path=path, error=result))
    return Check("store", True, TEXT_STORE_OK.format(path=path))
