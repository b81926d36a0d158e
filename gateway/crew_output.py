"""How the crews' commands print their results: tables for people (``--json`` prints the
same facts as strict JSON, see ``textout``).

Values are written at each point's resolution (``display``), the same way in `status`,
`watch`, `alarms` and the commissioning report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost import backlog_cli
from watchpost.display import Resolution, format_for, unit, word
from watchpost.textout import print_table

TEXT_GATEWAY_LINE = _("gateway {site}/{gateway}  daemon: {daemon}  clock: {clock}")
TEXT_UPLINK_CONNECTED = _("uplink: connected {broker}")
TEXT_UPLINK_DOWN = _("uplink: not connected {broker}")
TEXT_UPLINK_BACKUP = _(
    "uplink: on the backup MQTT server {backup} since {since}; the primary {primary}: "
    "{reason}; tried again at {retry}"
)
TEXT_NO_ALARMS = _("no active alarms")
TEXT_NO_EVENTS = _("nothing changed")
TEXT_STORE = _("store: {detail}")
COLUMNS_DEVICES = (_("device"), _("state"), _("bus"), _("last error"))
COLUMNS_POINTS = (_("point"), _("value"), _("unit"), _("quality"), _("time (UTC)"))
COLUMNS_ALARMS = (_("alarm"), _("level"), _("state"), _("value"), _("raised (UTC)"))
COLUMNS_EVENTS = (
    _("event"),
    _("alarm"),
    _("level"),
    _("value"),
    _("by"),
    _("note"),
    _("until (UTC)"),
    _("time (UTC)"),
    _("seq"),
)
COLUMNS_MODELS = (
    _("anomaly model"),
    _("state"),
    _("since (UTC)"),
    _("points holding it"),
    _("score"),
    _("threshold"),
)
TEXT_CALIBRATING = _("calibrating {rows}/{needed} rows")
COLUMNS_READ = (_("address"), _("raw"), _("value"))
COLUMNS_ORDERS = (
    _("shutdown order"),
    _("state"),
    _("start (UTC)"),
    _("end (UTC)"),
    _("reason"),
)

Formats = Mapping[str, Resolution]


def when(ts: object) -> str:
    """A UTC epoch-ms stamp to the second, or ``-``."""
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not ts:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_status(result: Mapping[str, Any], formats: Formats) -> None:
    """`watchpost status`: identity, uplink, backlog, devices, readings, active alarms."""
    print(
        TEXT_GATEWAY_LINE.format(
            site=result.get("site"),
            gateway=result.get("gateway"),
            daemon=word(result.get("daemon", "running")),
            clock=word(result.get("clock", "-")),
        )
    )
    uplink = result.get("uplink", {})
    text = TEXT_UPLINK_CONNECTED if uplink.get("connected") else TEXT_UPLINK_DOWN
    print(text.format(broker=uplink.get("broker", "")).rstrip())
    failover = uplink.get("failover")
    if uplink.get("connected") and isinstance(failover, dict):
        print(
            TEXT_UPLINK_BACKUP.format(
                backup=uplink.get("current_broker", "-"),
                since=when(failover.get("since")),
                primary=failover.get("primary", "-"),
                reason=failover.get("reason") or "-",
                retry=when(failover.get("primary_retry_ts")),
            )
        )
    print()
    print_backlog(result.get("backlog", {}), result.get("store_path", ""))
    print()
    rows = [
        (name, word(d.get("state")), str(d.get("bus", "")), d.get("last_error", "") or "")
        for name, d in result.get("devices", {}).items()
    ]
    print_table(COLUMNS_DEVICES, rows)
    print()
    if result.get("points"):
        print_points(result["points"], formats)
        print()
    print_alarms(result.get("alarms", []), formats)
    models = result.get("anomaly", {}).get("models", {})
    if models:
        print()
        print_models(models)
    if result.get("shutdown_orders"):
        print()
        print_orders(result["shutdown_orders"])


def print_models(models: Mapping[str, Mapping[str, Any]]) -> None:
    """The anomaly models: calibrating, normal or raised (since when, which points hold it)."""
    rows = []
    for name, m in models.items():
        if not m.get("calibrated"):
            rows_seen, needed = m.get("calibration_rows") or (0, 0)
            state = TEXT_CALIBRATING.format(rows=rows_seen, needed=needed)
        else:
            state = word("raised" if m.get("raised") else "normal")
        score, threshold = m.get("score"), m.get("threshold")
        rows.append(
            (
                name,
                state,
                when(m.get("raised_since")) if m.get("raised") else "-",
                ", ".join(m.get("holding", [])) or "-",
                "-" if score is None else f"{score:.3g}",
                "-" if threshold is None else f"{threshold:.3g}",
            )
        )
    print_table(COLUMNS_MODELS, rows)


def print_orders(orders: Sequence[Mapping[str, Any]]) -> None:
    """The shutdown orders the platform sent (the power watch is armed while one is in force)."""
    rows = [
        (
            str(o.get("id", "")),
            word(o.get("state", "")),
            when(o.get("start")),
            when(o.get("cancelled_ts") if o.get("state") == "cancelled" else o.get("end")),
            str(o.get("reason", "")),
        )
        for o in orders
    ]
    print_table(COLUMNS_ORDERS, rows)


def print_backlog(backlog: Mapping[str, Any], path: str | Path) -> None:
    """The store's backlog as `watchpost backlog` shows it, or why it cannot be read."""
    if "streams" in backlog and "bytes" in backlog and "evictions" in backlog:
        print(backlog_cli.render(Path(str(path or backlog.get("path", "store"))), dict(backlog)))
    else:
        print(TEXT_STORE.format(detail=backlog.get("store", "-")))


def print_points(points: Mapping[str, Any], formats: Formats) -> None:
    rows = [
        (
            name,
            format_for(formats, name, p.get("value")),
            unit(p.get("unit", "")),
            word(p.get("quality", "")),
            when(p.get("ts")),
        )
        for name, p in sorted(points.items())
    ]
    print_table(COLUMNS_POINTS, rows)


def print_alarms(alarms: Sequence[Mapping[str, Any]], formats: Formats) -> None:
    if not alarms:
        print(TEXT_NO_ALARMS)
        return
    rows = [
        (
            str(a.get("alarm")),
            word(a.get("level")),
            word(a.get("state", "")),
            format_for(formats, _point_of(a), a.get("value")),
            when(a.get("raised_ts") or a.get("sample_ts")),
        )
        for a in alarms
    ]
    print_table(COLUMNS_ALARMS, rows)


def print_events(events: Sequence[Mapping[str, Any]], formats: Formats) -> None:
    """What `alarms ack|shelve|unshelve` changed: one row per alarm event, stored."""
    if not events:
        print(TEXT_NO_EVENTS)
        return
    rows = [
        (
            word(e.get("event", "")),
            str(e.get("alarm", "")),
            word(e.get("level", "")),
            format_for(formats, _point_of(e), e.get("value")),
            str(e.get("by") or ""),
            str(e.get("note") or ""),
            when(e.get("until")),
            when(e.get("decided_ts")),
            str(e.get("seq", "")),
        )
        for e in events
    ]
    print_table(COLUMNS_EVENTS, rows)


def print_read(result: Mapping[str, Any]) -> None:
    """`watchpost read`: raw registers and their decoded values."""
    plain = Resolution()
    rows = [
        (str(address), str(raw), plain.format(value))
        for address, raw, value in zip(
            result["addresses"], result["raw"], result["values"], strict=True
        )
    ]
    print_table(COLUMNS_READ, rows)


def _point_of(alarm: Mapping[str, Any]) -> str:
    return str(alarm.get("point") or str(alarm.get("alarm", "")).split("/", 1)[0])
