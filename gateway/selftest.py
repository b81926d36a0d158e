"""Self-test: every part a crew can check at the cabinet, each with a result and a reason.

Results: ``pass``; ``warn``, something to look at that the gateway handles by itself (an
unsynchronised clock on a box that corrects its stamps once the clock is set); ``fail``,
something that stops a part working. `watchpost selftest` exits 1 when any check failed and
0 otherwise, warnings included.

The same checks run inside the daemon (`watchpost selftest` through the control socket) and
from the CLI when the daemon is stopped; only the source of each fact differs. With the
daemon stopped the broker check is a real MQTT CONNECT with the config's TLS, certificates
and credentials (``broker_probe``).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchpost.clock import kernel_synced
from watchpost.sqlite_ro import connect_read_only

if TYPE_CHECKING:
    from watchpost.settings import CommandsConfig, UplinkConfig

MIN_FREE_BYTES = 50 * 1024 * 1024

TEXT_DISK_OK = _("{free:.0f} MB free at {path}")
TEXT_DISK_LOW = _("only {free:.0f} MB free at {path} (needs {need:.0f} MB)")
TEXT_CLOCK_OK = _("synchronised")
TEXT_CLOCK_UNSYNCED = _(
    "not synchronised yet: stamps follow the monotonic clock and are corrected once the "
    "clock is set; check that the gateway reaches its time server"
)
TEXT_CLOCK_RTC = _("not NTP-synchronised; the box's real-time clock keeps time ([gateway] clock)")
TEXT_COMMANDS_UNSIGNED = _(
    "commands are accepted unsigned: anyone who may publish on the broker's cmd/ topics can "
    "acknowledge or shelve alarms; set [commands] verify_key"
)
TEXT_COMMANDS_SIGNED = _("only commands signed by the platform's key run ({path})")
TEXT_STORE_OK = _("{path}: integrity ok")
TEXT_STORE_NEW = _("{path}: not created yet (the daemon creates it)")
TEXT_STORE_BAD = _("{path}: {error}")


PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: failed unless ``ok``; a passed check with ``warn`` is a
    warning."""

    name: str
    ok: bool
    detail: str
    warn: bool = False

    @property
    def result(self) -> str:
        """``pass``, ``warn`` or ``fail``."""
        return FAIL if not self.ok else WARN if self.warn else PASS

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        """A check as ``as_dict`` wrote it (e.g. sent by the daemon)."""
        result = data.get("result", PASS if data.get("ok") else FAIL)
        return cls(str(data["name"]), result != FAIL, str(data.get("detail", "")), result == WARN)


def exit_status(checks: list[Check]) -> int:
    """0 unless a check failed (warnings do not fail the self-test), else 1."""
    return 0 if all(c.ok for c in checks) else 1


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


def check_clock(mode: str = "ntp", *, synced: bool | None = None) -> Check:
    """The kernel's NTP state. Unsynchronised is a warning: with ``mode`` ntp the gateway
    corrects its stamps once the clock is set; with rtc the box's own clock keeps time."""
    synced = kernel_synced() if synced is None else synced
    if synced:
        return Check("clock", True, TEXT_CLOCK_OK)
    if mode == "rtc":
        return Check("clock", True, TEXT_CLOCK_RTC)
    return Check("clock", True, TEXT_CLOCK_UNSYNCED, warn=True)


def check_commands(config: CommandsConfig) -> Check:
    """Whether the platform's commands must be signed. No key is a warning: commands are
    then accepted from anyone who may publish on the broker's cmd/ topics."""
    if config.verify_key is None:
        return Check("commands", True, TEXT_COMMANDS_UNSIGNED, warn=True)
    from watchpost.command_auth import load_verify_key  # noqa: PLC0415 - cryptography, on demand

    try:
        load_verify_key(config.verify_key)
    except ValueError as exc:
        return Check("commands", False, str(exc))
    return Check("commands", True, TEXT_COMMANDS_SIGNED.format(path=config.verify_key))


def check_broker(config: UplinkConfig, client_id: str) -> Check:
    """A real MQTT CONNECT to the primary broker, as the daemon would connect."""
    from watchpost.broker_probe import probe  # noqa: PLC0415 - paho only when needed

    result = probe(config, client_id=client_id)
    return Check("broker", result.ok, result.detail)


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
