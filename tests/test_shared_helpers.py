"""The shared helpers: one atomic write, one open-or-move-aside, one log-once."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from watchpost.files import atomic_write
from watchpost.log_once import LogOnce
from watchpost.sqlite_files import open_or_move_aside


def test_atomic_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state" / "alarms.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["alarms.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_write_sets_the_mode_before_the_name(tmp_path: Path) -> None:
    target = tmp_path / "events.json"
    atomic_write(target, b"{}", mode=0o644, durable=False)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_write_that_cannot_take_the_name_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "orders.json"
    target.mkdir()  # something that a file cannot replace
    (target / "kept").write_bytes(b"old")
    with pytest.raises(IsADirectoryError):
        atomic_write(target, b"new")
    assert (target / "kept").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["orders.json"]


def _open_checked(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA quick_check").fetchone()
        conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def test_a_damaged_file_is_moved_aside_and_a_fresh_one_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "buffer.db"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        conn, moved = open_or_move_aside(
            path, _open_checked, is_damage=lambda e: isinstance(e, sqlite3.DatabaseError), what="x"
        )
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
    assert moved is not None
    assert moved.moved_to.name.startswith("buffer.db.damaged-")
    assert moved.moved_to.read_bytes().startswith(b"this is not a database")
    assert "not a database" in moved.reason
    assert [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]


def test_an_error_that_is_not_damage_moves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"junk" * 1000)
    with pytest.raises(sqlite3.DatabaseError):
        open_or_move_aside(path, _open_checked, is_damage=lambda _e: False, what="history")
    assert [p.name for p in tmp_path.iterdir()] == ["history.db"]


def test_log_once_says_the_cost_once_and_the_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.log_once")
    quota = LogOnce(log, "store quota check", "the store may grow past its quota")
    with caplog.at_level(logging.DEBUG, logger="test.log_once"):
        for _ in range(5):
            quota.failed(sqlite3.OperationalError("disk I/O error"))
        assert quota.failing
        quota.succeeded()
        quota.succeeded()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "ERROR",
            "store quota check failed: disk I/O error; the store may grow past its quota",
        ),
        ("WARNING", "store quota check works again (5 failure(s) in between)"),
    ]
    assert not quota.failing
