"""A local history for commissioning: per-minute aggregates of every point, the alarm events
and per-device communication counters, in ``history.db`` (SQLite, WAL) in the state folder.

The outbox (``store.py``) forgets what the broker has acknowledged; this file keeps what
an installer hands over with ``watchpost report``. The daemon feeds it from the poll path
(``observe``: O(1) per sample, no I/O) and from the alarm engine (``record_alarm``); once a
minute ``run`` hands what gathered to a thread that commits it in one transaction and
deletes rows older than ``retention_days``. Rows of one minute written in two pieces (a
flush in mid-minute, a restart) are merged, so counts and sums stay exact.

History is for people, not for safety: it never holds up the poll loop. Disk errors are
logged once and the batch is retried at the next minute (at most ``MAX_PENDING`` batches
are kept; older ones are dropped and counted). A damaged file is moved aside with a time
stamp and a fresh one started; it never stops the daemon.

Exceptions (raised by the reading side only)::

    HistoryError              base class
     +-- NoHistoryError       no history file, or nothing in the period; a retry helps
     |                        once the daemon has run with [history] enabled
     +-- HistoryUnreadable    the file is not a Watchpost history or is damaged; no retry
                              helps (the daemon moves it aside and starts afresh)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from watchpost.clock import wall_ms
from watchpost.samples import Quality
from watchpost.settings import HistoryConfig
from watchpost.sqlite_files import PAGE_CACHE_KIB, open_or_move_aside
from watchpost.sqlite_ro import connect_read_only

if TYPE_CHECKING:
    from watchpost.alarms import AlarmEvent
    from watchpost.samples import Sample

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x57504849  # "WPHI": marks the file as a Watchpost history
MINUTE_MS = 60_000
FLUSH_OFFSET_MS = 500  # flush just after each minute boundary, when the minute is complete
MAX_PENDING = 60  # batches kept in memory while the disk refuses writes (an hour)
DEFAULT_FILE = "history.db"

TEXT_CLOSE_FLUSH_FAILED = (
    "history %s: the last minute could not be written at close (%s); it is lost"
)
TEXT_CLOSE_FAILED = _("history %s: closing the file failed (%s); nothing was lost")
TEXT_WRITE_FAILED = _("cannot write the history %s (%s); retrying each minute")
TEXT_WRITE_RECOVERED = _("history writes work again")
TEXT_DROPPED = _("history: dropped %d minute batch(es) that could not be written")
TEXT_NOT_OURS = _("not a Watchpost history (application_id {found:#x})")
TEXT_VERSION = _("history schema version {found}, this gateway reads {expected}")
TEXT_CHECK = _("integrity check: {result}")
TEXT_NO_FILE = _("no history at {path}")
TEXT_EMPTY = _("nothing recorded in {path} in the period asked for")
TEXT_UNREADABLE = _("cannot read the history {path}: {error}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples(
    minute INTEGER NOT NULL,            -- UTC epoch minutes (sample time)
    point TEXT NOT NULL,
    good INTEGER NOT NULL, bad INTEGER NOT NULL, comm INTEGER NOT NULL,
    stale INTEGER NOT NULL,
    lo REAL, total REAL, hi REAL,       -- min, sum, max of good values; NULL if none
    PRIMARY KEY(minute, point)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms(
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,                -- decided_ts, UTC epoch ms
    alarm TEXT NOT NULL, point TEXT NOT NULL, event TEXT NOT NULL, level TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_ts ON alarms(ts);
CREATE TABLE IF NOT EXISTS comm(
    minute INTEGER NOT NULL,
    device TEXT NOT NULL,
    polls INTEGER NOT NULL, failures INTEGER NOT NULL,
    PRIMARY KEY(minute, device)) WITHOUT ROWID;
"""

_UPSERT_SAMPLES = """
INSERT INTO samples(minute, point, good, bad, comm, stale, lo, total, hi)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(minute, point) DO UPDATE SET
    good = good + excluded.good, bad = bad + excluded.bad, comm = comm + excluded.comm,
    stale = stale + excluded.stale,
    lo = min(coalesce(lo, excluded.lo), coalesce(excluded.lo, lo)),
    total = CASE WHEN total IS NULL THEN excluded.total
                 WHEN excluded.total IS NULL THEN total ELSE total + excluded.total END,
    hi = max(coalesce(hi, excluded.hi), coalesce(excluded.hi, hi))
"""
_UPSERT_COMM = """
INSERT INTO comm(minute, device, polls, failures) VALUES (?, ?, ?, ?)
ON CONFLICT(minute, device) DO UPDATE SET
    polls = polls + excluded.polls, failures = failures + excluded.failures
"""


class HistoryError(Exception):
    """Base of the history's errors."""


class NoHistoryError(HistoryError):
    """No history file, or nothing recorded in the period; a retry helps once the daemon
    has run with [history] enabled."""


class HistoryUnreadable(HistoryError):
    """The file is not a Watchpost history or is damaged; no retry helps."""


class _Health(Protocol):
    polls: int
    failures: int


DeviceCounters = Callable[[], Mapping[str, _Health]]


def history_path(config: HistoryConfig, state_dir: Path) -> Path:
    """Where the history lives: ``path`` if set, else ``history.db`` in the state folder."""
    return config.path if config.path is not None else state_dir / DEFAULT_FILE


# -- recording ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Minute:
    """The aggregate of one point over one minute."""

    minute: int
    good: int = 0
    bad: int = 0
    comm: int = 0
    stale: int = 0
    low: float = math.inf
    total: float = 0.0
    high: float = -math.inf

    def row(self, point: str) -> tuple[Any, ...]:
        has = self.good > 0
        return (
            self.minute,
            point,
            self.good,
            self.bad,
            self.comm,
            self.stale,
            self.low if has else None,
            self.total if has else None,
            self.high if has else None,
        )


@dataclass(slots=True)
class _Batch:
    samples: list[tuple[Any, ...]] = field(default_factory=list)
    alarms: list[tuple[Any, ...]] = field(default_factory=list)
    comm: list[tuple[Any, ...]] = field(default_factory=list)


class HistoryRecorder:
    """Gathers the history in memory on the loop and commits it once a minute in a thread.

    ``devices`` returns the poller's cumulative counters per device (``polls``,
    ``failures``); the recorder stores their increase per minute. ``now_ms`` is the
    gateway's clock (UTC epoch ms), used for flush times and retention.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 30.0,
        devices: DeviceCounters | None = None,
        now_ms: Callable[[], int] | None = None,
        enabled: bool = True,
    ) -> None:
        self.path = path
        self.enabled = enabled
        self.retention_ms = int(retention_days * 86_400_000)
        self._devices = devices
        self._now_ms = now_ms or wall_ms
        self._open: dict[str, _Minute] = {}
        self._closed: list[tuple[str, _Minute]] = []
        self._alarms: list[tuple[Any, ...]] = []
        self._pending: list[_Batch] = []
        self._dropped = 0
        self._last_counts: dict[str, tuple[int, int]] = {}
        self._last_flush_ms = self._now_ms()
        self._lock = threading.Lock()  # one writer at a time: run()'s thread or close()
        self._conn: sqlite3.Connection | None = None
        self._failing = False
        self.moved_to: Path | None = None  # where a damaged file went, if one was found
        if enabled:
            self._last_counts = self._counts()

    @classmethod
    def from_config(
        cls,
        config: HistoryConfig,
        *,
        state_dir: Path,
        devices: DeviceCounters | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> HistoryRecorder:
        return cls(
            history_path(config, state_dir),
            retention_days=config.retention_days,
            devices=devices,
            now_ms=now_ms,
            enabled=config.enabled,
        )

    # -- the poll path: O(1) per sample, no I/O ----------------------------------------------

    def observe(self, samples: Iterable[Sample]) -> None:
        """Add samples to their point's aggregate of the minute they were taken in."""
        if not self.enabled:
            return
        aggregates = self._open
        good = Quality.GOOD
        # comparisons, not min()/max(), and the sample unpacked once: this runs for every
        # sample the gateway polls
        for point, ts, value, quality, _mono in samples:
            minute = ts // MINUTE_MS
            agg = aggregates.get(point)
            if agg is None or agg.minute != minute:
                if agg is not None:
                    self._closed.append((point, agg))
                agg = aggregates[point] = _Minute(minute)
            if quality is good and value is not None:
                agg.good += 1
                agg.total += value
                if value < agg.low:  # noqa: PLR1730 - min() is a call: twice as slow here
                    agg.low = value
                if value > agg.high:  # noqa: PLR1730
                    agg.high = value
            elif quality is Quality.COMM:
                agg.comm += 1
            elif quality is Quality.STALE:
                agg.stale += 1
            else:
                agg.bad += 1

    def record_alarm(self, event: AlarmEvent) -> None:
        """Alarm-engine listener: keep the event for the next commit."""
        if self.enabled:
            self._alarms.append(
                (
                    event.decided_ts,
                    event.alarm,
                    event.point,
                    event.event,
                    event.level,
                    json.dumps(event.body(), allow_nan=False),
                )
            )

    # -- committing ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit once a minute, just after each minute boundary, until cancelled."""
        if not self.enabled:
            return
        try:
            await asyncio.to_thread(self.write, _Batch())  # open (or move a damaged file aside)
            while True:
                now = self._now_ms()
                wait_ms = MINUTE_MS - (now % MINUTE_MS) + FLUSH_OFFSET_MS
                await asyncio.sleep(min(wait_ms, MINUTE_MS + FLUSH_OFFSET_MS) / 1000)
                batch = self.take()
                await asyncio.to_thread(self.write, batch)
        finally:
            self.close()

    def take(self) -> _Batch:
        """Everything gathered since the last call, as rows (on the loop: no I/O)."""
        now = self._now_ms()
        batch = _Batch()
        closed, self._closed = self._closed, []
        batch.samples = [agg.row(point) for point, agg in closed]
        aggregates, self._open = self._open, {}
        batch.samples.extend(agg.row(point) for point, agg in aggregates.items())
        batch.alarms, self._alarms = self._alarms, []
        counts = self._counts()
        minute = self._last_flush_ms // MINUTE_MS  # what ran since the last flush
        for device, (polls, failures) in counts.items():
            last_polls, last_failures = self._last_counts.get(device, (0, 0))
            if polls < last_polls or failures < last_failures:  # counters started anew
                last_polls = last_failures = 0
            if polls - last_polls or failures - last_failures:
                batch.comm.append((minute, device, polls - last_polls, failures - last_failures))
        self._last_counts = counts
        self._last_flush_ms = now
        return batch

    def write(self, batch: _Batch) -> None:
        """Commit ``batch`` (and any that failed before) and apply retention; in a thread."""
        with self._lock:
            self._pending.append(batch)
            if len(self._pending) > MAX_PENDING:
                self._dropped += len(self._pending) - MAX_PENDING
                del self._pending[:-MAX_PENDING]
                log.error(TEXT_DROPPED, self._dropped)
            try:
                conn = self._ensure_open()
                with conn:
                    for pending in self._pending:
                        conn.executemany(_UPSERT_SAMPLES, pending.samples)
                        conn.executemany(
                            "INSERT INTO alarms(ts, alarm, point, event, level, body) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            pending.alarms,
                        )
                        conn.executemany(_UPSERT_COMM, pending.comm)
                    self._expire(conn)
            except (sqlite3.Error, HistoryError, OSError) as exc:
                self._write_failed(exc)
                return
            self._pending.clear()
            if self._failing:
                self._failing = False
                log.warning(TEXT_WRITE_RECOVERED)

    def flush(self) -> None:
        """Take and commit now, synchronously (shutdown, tests)."""
        if self.enabled:
            self.write(self.take())

    def close(self) -> None:
        """Commit what gathered and close the file."""
        if not self.enabled:
            return
        try:
            self.flush()
        except (sqlite3.Error, HistoryError, OSError) as exc:
            log.error(TEXT_CLOSE_FLUSH_FAILED, self.path, exc)
        with self._lock:
            if self._conn is not None:
                _close_quietly(self._conn, self.path)
                self._conn = None

    def _expire(self, conn: sqlite3.Connection) -> None:
        cutoff_ms = self._now_ms() - self.retention_ms
        if cutoff_ms <= 0:
            return
        conn.execute("DELETE FROM samples WHERE minute < ?", (cutoff_ms // MINUTE_MS,))
        conn.execute("DELETE FROM comm WHERE minute < ?", (cutoff_ms // MINUTE_MS,))
        conn.execute("DELETE FROM alarms WHERE ts < ?", (cutoff_ms,))

    def _write_failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.error(TEXT_WRITE_FAILED, self.path, exc)
        if _is_damage(exc) and self._conn is not None:  # reopening moves the file aside
            _close_quietly(self._conn, self.path)
            self._conn = None

    def _ensure_open(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open_or_recover()
        return self._conn

    def _open_or_recover(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # an error that is not damage (permissions, disk) is raised: retried at the next minute
        conn, moved = open_or_move_aside(
            self.path, _open_checked, is_damage=_is_damage, what="history"
        )
        if moved is not None:
            self.moved_to = moved.moved_to
        return conn

    def _counts(self) -> dict[str, tuple[int, int]]:
        if self._devices is None:
            return {}
        return {name: (h.polls, h.failures) for name, h in self._devices().items()}


def _open_checked(path: Path) -> sqlite3.Connection:
    """Open (or create) the history; raise if it is not ours or fails a quick check."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    try:
        found = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and found != APPLICATION_ID:
            raise HistoryUnreadable(TEXT_NOT_OURS.format(found=found))
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if tables and version != SCHEMA_VERSION:
            raise HistoryUnreadable(TEXT_VERSION.format(found=version, expected=SCHEMA_VERSION))
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise HistoryUnreadable(TEXT_CHECK.format(result=result))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # a power cut may cost the last minute
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    conn.isolation_level = "DEFERRED"  # `with conn:` is one transaction
    return conn


def _close_quietly(conn: sqlite3.Connection, path: Path) -> None:
    """Close; a failure costs nothing more than the connection (logged, not raised)."""
    try:
        conn.close()
    except sqlite3.Error as exc:
        log.warning(TEXT_CLOSE_FAILED, path, exc)


def _is_damage(exc: Exception) -> bool:
    """True for a file that is not a (good) history; false for a disk that refuses work."""
    if isinstance(exc, HistoryUnreadable):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


# -- reading (the report) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinuteRow:
    """One point over one minute; ``low``, ``mean`` and ``high`` of its good samples."""

    minute: int
    good: int
    bad: int
    comm: int
    stale: int
    low: float | None
    mean: float | None
    high: float | None

    @property
    def ts(self) -> int:
        """Start of the minute, UTC epoch ms."""
        return self.minute * MINUTE_MS


@dataclass(frozen=True, slots=True)
class CommRow:
    """One device's polls and failed polls in one minute."""

    minute: int
    polls: int
    failures: int


@dataclass
class History:
    """What the history holds for a period ``[since_ms, until_ms)``."""

    since_ms: int
    until_ms: int
    points: dict[str, list[MinuteRow]]
    alarms: list[dict[str, Any]]
    comm: dict[str, list[CommRow]]

    @property
    def first_ms(self) -> int | None:
        """Start of the first minute with any record, or None."""
        stamps = [rows[0].ts for rows in self.points.values() if rows]
        stamps += [rows[0].minute * MINUTE_MS for rows in self.comm.values() if rows]
        stamps += [int(a["decided_ts"]) for a in self.alarms[:1]]
        return min(stamps) if stamps else None

    @property
    def last_ms(self) -> int | None:
        """End of the last minute with any record, or None."""
        stamps = [rows[-1].ts + MINUTE_MS for rows in self.points.values() if rows]
        stamps += [(rows[-1].minute + 1) * MINUTE_MS for rows in self.comm.values() if rows]
        stamps += [int(a["decided_ts"]) for a in self.alarms[-1:]]
        return max(stamps) if stamps else None


def read_history(
    path: Path, *, since_ms: int | None = None, until_ms: int | None = None
) -> History:
    """The history of ``path`` in ``[since_ms, until_ms)``, read-only; works whether the
    daemon runs or not. Raises NoHistoryError when there is none."""
    if not path.exists():
        raise NoHistoryError(TEXT_NO_FILE.format(path=path))
    since = 0 if since_ms is None else since_ms
    until = 2**62 if until_ms is None else until_ms
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise HistoryUnreadable(TEXT_UNREADABLE.format(path=path, error=exc)) from exc
    try:
        found = conn.execute("PRAGMA application_id").fetchone()[0]
        if found != APPLICATION_ID:
            raise HistoryUnreadable(TEXT_NOT_OURS.format(found=found))
        first, last = since // MINUTE_MS, -(-until // MINUTE_MS)
        points: dict[str, list[MinuteRow]] = {}
        for minute, point, good, bad, comm, stale, low, total, high in conn.execute(
            "SELECT minute, point, good, bad, comm, stale, lo, total, hi FROM samples "
            "WHERE minute >= ? AND minute < ? ORDER BY point, minute",
            (first, last),
        ):
            points.setdefault(point, []).append(
                MinuteRow(
                    minute,
                    good,
                    bad,
                    comm,
                    stale,
                    low,
                    total / good if good and total is not None else None,
                    high,
                )
            )
        alarms = [
            json.loads(body)
            for (body,) in conn.execute(
                "SELECT body FROM alarms WHERE ts >= ? AND ts < ? ORDER BY ts, id", (since, until)
            )
        ]
        devices: dict[str, list[CommRow]] = {}
        for minute, device, polls, failures in conn.execute(
            "SELECT minute, device, polls, failures FROM comm "
            "WHERE minute >= ? AND minute < ? ORDER BY device, minute",
            (first, last),
        ):
            devices.setdefault(device, []).append(CommRow(minute, polls, failures))
    except sqlite3.Error as exc:
        raise HistoryUnreadable(TEXT_UNREADABLE.format(path=path, error=exc)) from exc
    finally:
        conn.close()
    history = History(since, until, points, alarms, devices)
    if history.first_ms is None:
        raise NoHistoryError(TEXT_EMPTY.format(path=path))
    return history


def summarize_rows(rows: Sequence[MinuteRow]) -> dict[str, Any]:
    """Totals over a point's minutes: counts and the lowest, mean and highest good value."""
    good = sum(r.good for r in rows)
    lows = [r.low for r in rows if r.low is not None]
    highs = [r.high for r in rows if r.high is not None]
    total = sum((r.mean or 0.0) * r.good for r in rows)
    return {
        "good": good,
        "bad": sum(r.bad + r.stale for r in rows),
        "comm": sum(r.comm for r in rows),
        "min": min(lows) if lows else None,
        "mean": total / good if good else None,
        "max": max(highs) if highs else None,
    }
