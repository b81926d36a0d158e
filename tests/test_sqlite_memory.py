"""The SQLite files the daemon keeps open hold a bounded page cache each.

Every page the store and the history write is a new one (they append at the end and drop from
the start), so a connection's cache fills to its limit within minutes at 1,000 points; the
limit, not SQLite's default of 2,000 KiB, decides what each costs in resident memory.
"""

from __future__ import annotations

from pathlib import Path

from watchpost import history
from watchpost.config.store import StoreConfig
from watchpost.sqlite_files import PAGE_CACHE_KIB
from watchpost.store import Store


def test_the_store_connections_cache_at_most_512_kib(tmp_path: Path) -> None:
    store = Store(StoreConfig(path=tmp_path / "buffer.db"))
    try:
        for conn in (store._wconn, store._rconn):
            assert conn.execute("PRAGMA cache_size").fetchone()[0] == -512
    finally:
        store.close()
    assert PAGE_CACHE_KIB == 512


def test_the_history_connection_caches_at_most_512_kib(tmp_path: Path) -> None:
    conn = history._open_checked(tmp_path / "history.db")
    try:
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -512
    finally:
        conn.close()
