"""SQLite files the daemon writes (the store, the history): opened checked, or moved aside.

A file that fails its check at start (not ours, another schema version, a failed quick
check, not a database at all) is renamed with its ``-wal`` and ``-shm`` to
``NAME.damaged-YYYYMMDDTHHMMSSZ`` next to it, and a fresh file is opened in its place: the
gateway keeps running and the damaged file stays for a person to look at. Never a crash loop.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from gettext import gettext as _
from pathlib import Path

log = logging.getLogger(__name__)

TEXT_DAMAGED = _("%s %s is damaged (%s); moved aside to %s, starting a fresh one")

# Page cache of each connection the daemon keeps open, KiB (SQLite's default is 2,000). The
# store and the history only ever append at the end and drop from the start, so every page
# written is a new one and a connection's cache fills to its limit within minutes at 1,000
# points; 512 KiB holds the pages in use and costs no CPU measurably (docs/performance.md).
PAGE_CACHE_KIB = 512

Opener = Callable[[Path], sqlite3.Connection]


@dataclass(frozen=True, slots=True)
class MovedAside:
    """What was found wrong with a file, and where it went."""

    reason: str
    moved_to: Path


def move_aside(path: Path, *, now: datetime | None = None) -> Path:
    """Rename ``path`` and its ``-wal`` and ``-shm`` to ``path.damaged-STAMP``; the new path."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    moved = path.absolute().with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            shutil.move(source, Path(f"{moved}{suffix}"))
    return moved


def _regular_file(path: Path) -> bool:
    """A regular file (not a directory, device or socket), and not a link to anything else."""
    return path.is_file()


def open_or_move_aside(
    path: Path,
    open_checked: Opener,
    *,
    is_damage: Callable[[Exception], bool],
    what: str,
) -> tuple[sqlite3.Connection, MovedAside | None]:
    """Open ``path`` with ``open_checked``; if that fails with damage, move it aside and
    open a fresh file. Errors that are not damage (``is_damage`` false: permissions, a full
    disk) are raised, since moving the file would not help; so is a failure of the fresh file.
    Only a regular file is ever moved aside: a directory or a device in its place is raised
    (``config check`` names it before a start).
    """
    try:
        return open_checked(path), None
    except Exception as exc:
        if not is_damage(exc) or not _regular_file(path):
            raise
        reason = str(exc) or type(exc).__name__
    moved = move_aside(path)
    log.error(TEXT_DAMAGED, what, path, reason, moved)
    return open_checked(path), MovedAside(reason, moved)
