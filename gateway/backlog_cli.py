"""`watchpost backlog`: what the store holds, read straight from its file.

Works with the daemon running or stopped, and without a network: the crew's view of what
has not reached the platform yet.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost.config import EXIT_CONFIG, ConfigError, load_config, print_config_error
from watchpost.store import read_backlog
from watchpost.textout import print_json, table

TEXT_HELP = _("show what the store holds: depth per stream, oldest item, bytes, evictions")
TEXT_CONFIG_HELP = _("the gateway's config file (its [store] path is read)")
TEXT_STORE_HELP = _("the store file itself, instead of --config")
TEXT_JSON_HELP = _("print JSON, as in the `health` message")
TEXT_HEADER = _("store {path}: {size} on disk")
TEXT_COLUMNS = (_("stream"), _("waiting"), _("items"), _("oldest"), _("last seq"))
TEXT_EMPTY = _("nothing waiting")
TEXT_EVICTED = _(
    "evicted {stream}: {messages} message(s), {items} item(s), last seq {first}-{last}"
)
TEXT_KEPT = _("kept for cmd/resend, {stream}: {count} sent message(s), seq {first}-{last}")
TEXT_NO_STORE = _("no store at {path}")
TEXT_UNREADABLE = _("cannot read the store {path}: {error}")
EXIT_NO_STORE = 66  # EX_NOINPUT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("backlog", help=TEXT_HELP)
    parser.add_argument(
        "--config", type=Path, default=Path("/etc/watchpost/gateway.toml"), help=TEXT_CONFIG_HELP
    )
    parser.add_argument("--store", type=Path, help=TEXT_STORE_HELP)
    parser.add_argument("--json", action="store_true", help=TEXT_JSON_HELP)
    parser.set_defaults(handler=_backlog)


def _backlog(args: argparse.Namespace) -> int:
    path = args.store
    if path is None:
        try:
            path = load_config(args.config).store.path
        except ConfigError as exc:
            print_config_error(exc)
            return EXIT_CONFIG
    if not path.exists():
        print(TEXT_NO_STORE.format(path=path), file=sys.stderr)
        return EXIT_NO_STORE
    try:
        backlog = read_backlog(path)
    except sqlite3.Error as exc:
        print(TEXT_UNREADABLE.format(path=path, error=exc), file=sys.stderr)
        return EXIT_NO_STORE
    if args.json:
        print_json(backlog)
    else:
        print(render(path, backlog))
    return 0


def render(path: Path, backlog: dict[str, Any]) -> str:
    """The backlog as a small table for people."""
    lines = [TEXT_HEADER.format(path=path, size=_size(backlog["bytes"]))]
    rows = [
        (name, s["depth"], s["items"] or 0, _when(s["oldest_ts"]), s.get("seq", ""))
        for name, s in sorted(backlog["streams"].items())
        if s["depth"] or name in ("alarms", "anomalies", "telemetry")
    ]
    if not any(row[1] for row in rows):
        lines.append(TEXT_EMPTY)
    lines.append(table(TEXT_COLUMNS, [[str(cell) for cell in row] for row in rows]))
    for stream, evicted in sorted(backlog["evictions"].items()):
        first, last = evicted.get("last_seq_range", ("?", "?"))
        lines.append(
            TEXT_EVICTED.format(
                stream=stream,
                messages=evicted["messages"],
                items=evicted["items"],
                first=first,
                last=last,
            )
        )
    for stream, kept in sorted(backlog.get("kept", {}).items()):
        lines.append(
            TEXT_KEPT.format(
                stream=stream, count=kept["count"], first=kept["first_seq"], last=kept["last_seq"]
            )
        )
    return "\n".join(lines)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
