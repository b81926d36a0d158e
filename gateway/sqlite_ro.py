"""Opening an SQLite file for reading only, leaving nothing behind next to it.

SQLite's ``mode=ro`` still creates the ``-wal`` and ``-shm`` files of a WAL database when
they are missing: an installer's copy of ``history.db`` would gain two files. A file no
process writes (a copy, or the file of a stopped daemon, which removed its ``-wal`` when it
closed) is therefore opened ``immutable``: SQLite then takes no locks and creates nothing.
A file whose ``-wal`` exists is being written by the daemon; it is opened ``mode=ro`` so
that the reader sees the daemon's latest commits through its ``-shm``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` read-only (see the module's docstring)."""
    live = path.with_name(path.name + "-wal").exists()
    return path.resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")


def connect_read_only(path: Path, *, timeout: float = 10.0) -> sqlite3.Connection:
    """A read-only connection to ``path`` that writes no file; sqlite3.Error if it cannot."""
    return sqlite3.connect(read_only_uri(path), uri=True, timeout=timeout)
