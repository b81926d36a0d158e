"""The on-disk outbox (SQLite, WAL): every message that leaves the gateway passes through it.

The store keeps bytes: a message's body as ``messages.encode_body`` made it, beside the
columns the uplink needs to frame it (stream, seq, ts, the boot of an unsynchronised stamp).
It knows no payload schema and makes no envelope (``outbox.py`` does both, through
``messages.py``). ``put`` gives a message its per-stream ``seq`` and hands it to one writer
thread. Durable
puts (alarms, anomalies) return once their row is committed and fsync'd (by the event loop
itself when the writer holds none: ``submit``); the others (telemetry) are committed
together every ``commit_interval`` seconds, so a ``kill -9`` or a power cut costs at most
that much telemetry. The uplink
reads committed rows only, so a ``seq`` that a crash can still take back has never left the
box. A row leaves the outbox only when the uplink reports the broker's PUBACK (``ack``); it
then moves, bytes unchanged, to the ``sent`` table for ``[store] keep_sent`` (default 24 h),
so that the platform can have it again (``cmd/resend``) if the broker lost it after
acknowledging it.

When the store grows past its quota the kept sent rows go first (other streams' before
alarms' and anomalies'), then the oldest unsent telemetry (counted per stream, reported by
``backlog()``); unsent alarms and anomaly events are never evicted. A damaged file
found at start is moved aside with a time stamp, a fresh store starts and an alarm-level
event (``kind: store_damaged``) is put on the `alarms` stream by the outbox (``recovery``
says what happened): never a crash loop.

After each commit the writer hands the committed rows to its listeners (the outbox, for the
uplink), so that a live message is sent without being read back from SQLite.

Exceptions::

    StoreError                 base class
     ├── StoreClosedError      the store was closed; no retry helps
     ├── StoreFullError        the store cannot even be opened: its disk has no room;
     │                         a retry helps once there is room (systemd restarts the daemon)
     └── BadMessageError       the message cannot be stored (a bad stream name);
                               a programming error, no retry helps

Disk errors while writing are not raised to callers: the writer keeps the rows in memory,
logs once and retries with backoff (durable puts wait until their commit succeeds).

A full disk (``SQLITE_FULL``) never costs an alarm. The writer commits what frees room or
must not wait (the broker's acknowledgements, seq reservations) apart from the rest, then
makes room, cheapest first: the oldest telemetry evicted (checked: did the used bytes go
down?), the write-ahead log checkpointed and truncated, the reserve file given back
(``store_room.ReserveFile``). From then on the store is *full* (``disk_full``) until the
filesystem has room for the reserve again: telemetry is not stored (counted per stream
like evictions), alarms are; after each commit the freed pages go back to the filesystem
(incremental vacuum, then a truncating checkpoint). An alarm event that still cannot be
committed stays in memory, is written at once to ``[store] alarm_spill`` if one is set
(its put then returns: it is durable there) and is committed with its seq once there is
room, also after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import re
import shutil
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from watchpost.backoff import Backoff
from watchpost.clock import wall_ms
from watchpost.log_once import LogOnce
from watchpost.settings import StoreConfig
from watchpost.sqlite_files import PAGE_CACHE_KIB, move_aside, open_or_move_aside
from watchpost.sqlite_ro import connect_read_only
from watchpost.store_room import AlarmSpill, ReserveFile, Spilled

if TYPE_CHECKING:
    from watchpost.clock import Clock

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SCHEMA_VERSION = 4  # 4: the `sent` table (keep_sent, gap repair)
# The oldest gateway schema that can still use a file written at SCHEMA_VERSION. A change
# that older versions can live with (a new table, column or index) keeps it, so that a
# version rolled back after an update still opens the store; raise it only for a change
# they cannot (see docs/store-and-forward.md, "Schema changes and rollback").
OLDEST_READER = 3
APPLICATION_ID = 0x57505354  # "WPST": marks the file as a Watchpost store
EVICTABLE_STREAMS = frozenset({"telemetry"})  # = messages.EVICTABLE; the store imports no schema
KEPT_LONGEST = ("alarms", "anomalies")  # = messages.PRIORITY: the last sent rows dropped
EXPIRE_EVERY = 1.0  # seconds between checks for sent rows past keep_sent
MAX_QUEUED_BYTES = 4 * 1024 * 1024  # telemetry puts wait while the writer is this far behind
COMPRESS_ABOVE = 160  # bytes of JSON; smaller bodies are stored as they are
STREAM_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ROOM_MARGIN = 1024 * 1024  # bytes free, beyond the reserve, before a full store counts as not
FULL_RETRY = 1.0  # seconds between commit attempts at most while the disk is full
REBUILD_BELOW = 64 * 1024 * 1024  # bytes: an older store is rebuilt for incremental vacuum
NEARLY_FULL = 64 * 1024  # bytes free under which any SQLite write error counts as a full disk

TEXT_CHECKPOINT_FAILED = (
    "store: closing checkpoint failed (%s); the next start replays the write-ahead log"
)
TEXT_ROLLBACK_COST = _("the failed transaction is left to SQLite; the writer retries it whole")
TEXT_EVICT_COST = _("no telemetry evicted to make room; writes wait until the disk has space")
TEXT_QUOTA_COST = _("the store may grow past its quota until a later commit trims it")
TEXT_DISK_COST = _("min_free_mb is not checked until the filesystem answers; the quota still is")
TEXT_SALVAGED = _("kept the seq counters of the damaged store: %s")
TEXT_WRITE_FAILED = _("cannot write the store (%s); keeping %d operation(s) in memory, retrying")
TEXT_WRITE_RECOVERED = _("store writes work again")
TEXT_GONE = _("the store file was deleted or replaced while the gateway ran")
TEXT_REPLACED = _(
    "store %s is gone or damaged while running (%s): started a fresh store with the seq "
    "counters carried on and the %d message(s) still readable"
)
TEXT_ROWS_LOST = _("the messages waiting in the lost store cannot be read back: %s")
TEXT_CLOSE_FAILED = _("closing the lost store's connection failed: %s")
TEXT_EVICTED = _(
    "store full (quota or disk): evicted %d telemetry message(s) (%d samples), seq %d-%d"
)
TEXT_DROPPED_SENT = _(
    "store full (quota or disk): forgot %d sent message(s) kept for cmd/resend before keep_sent"
)
TEXT_FULL = _(
    "the disk of the store is full (%s): telemetry is not stored until there is room again "
    "(counted); alarms are"
)
TEXT_NO_ROOM = _("no room on the disk")
TEXT_FULL_OVER = _("the disk of the store has room again (%d telemetry message(s) not stored)")
TEXT_RESERVE_RELEASED = _("gave back the %d bytes reserved for alarms so that they can be stored")
TEXT_RESERVE_COST = _("alarms have no reserved room on this disk; they use what is left")
TEXT_ROOM_COST = _("freed pages are not given back to the filesystem yet")
TEXT_DROPPED_COST = _("telemetry that arrives is not stored while the disk is full (counted)")
TEXT_SPILL_COST = _("alarm events wait in memory only: a stop now would lose them")
TEXT_LOST_AT_CLOSE = _(
    "stopping with %d alarm event(s) that the full disk could not take and no "
    "[store] alarm_spill: lost: %s"
)
TEXT_CANNOT_OPEN = _(
    "cannot open the store {path}: its disk has no room ({error}); free some space (the "
    "daemon tries again when it is restarted)"
)
TEXT_REBUILT = _("store %s rebuilt so that it can give pages back to a full disk")
TEXT_NOT_REBUILT = _(
    "store %s not rebuilt for incremental vacuum (%s); on a full disk it keeps its pages"
)
TEXT_CLOSED = "the store is closed"
TEXT_STREAM = "stream name {name!r} is not a lower-case identifier"
TEXT_NOT_BYTES = "a body is stored as bytes (messages.encode_body), not {kind}"
TEXT_NOT_OURS = _("not a Watchpost store (application_id {found:#x})")
TEXT_VERSION = _("store schema version {found}, this gateway reads {expected}")
TEXT_CHECK = _("integrity check: {result}")
TEXT_NEWER = _("store schema %s is newer than this gateway's %s and declared usable by it")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams(
    stream TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    evicted INTEGER NOT NULL DEFAULT 0,
    evicted_items INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the uplink's cursors rely on it
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    items INTEGER NOT NULL,
    boot TEXT,
    z INTEGER NOT NULL,
    body BLOB NOT NULL);
-- covers the backlog's counts, so `health` never reads the bodies
CREATE INDEX IF NOT EXISTS outbox_stream ON outbox(stream, id, seq, ts, items);
CREATE TABLE IF NOT EXISTS clock_fix(boot TEXT PRIMARY KEY, delta_ms INTEGER NOT NULL);
"""
# sent and acknowledged, kept for `[store] keep_sent` so that the platform can have a message
# again (cmd/resend) that the broker lost after its PUBACK; added in schema 4, which older
# gateways can ignore (OLDEST_READER stays 3)
_SENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent(
    id INTEGER PRIMARY KEY,  -- the row's id in outbox
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    items INTEGER NOT NULL,
    boot TEXT,
    z INTEGER NOT NULL,
    body BLOB NOT NULL,
    sent_at INTEGER NOT NULL);  -- wall ms of the commit that recorded the PUBACK
CREATE UNIQUE INDEX IF NOT EXISTS sent_seq ON sent(stream, seq);
CREATE INDEX IF NOT EXISTS sent_age ON sent(sent_at);
"""


class StoreError(Exception):
    """Base of the store's errors."""


class StoreClosedError(StoreError):
    """The store was closed; no retry helps."""


class StoreFullError(StoreError):
    """The store cannot be opened for want of room on its disk; a retry helps once there is."""


class BadMessageError(StoreError, ValueError):
    """The body cannot be stored; a programming error, no retry helps."""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A committed message: its body's bytes and the columns that frame it."""

    id: int  # global insertion order, never reused
    stream: str
    seq: int
    ts: int
    boot: str | None  # the boot whose unsynchronised clock stamped it, else None
    body: bytes  # as it was put (not compressed)


@dataclass(frozen=True, slots=True)
class SentRange:
    """What the store holds of a seq range of one stream (``sent_range``)."""

    kept: list[tuple[int, int]]  # (seq, row id) of the rows sent and still kept
    waiting: list[int]  # seqs not yet acknowledged: the uplink sends them by itself
    last_seq: int  # the last seq given out on the stream


Listener = Callable[[list[StoredRow]], None]
# the outbox's fault message for a store found damaged: (stream, body bytes, ts)
DamageReport = Callable[[dict[str, Any]], tuple[str, bytes, int]]
IDENTITY_CHECK = 1.0  # seconds between checks that the file is still the one opened


@dataclass(slots=True)
class _Put:
    stream: str
    seq: int
    ts: int
    items: int
    boot: str | None
    body: bytes
    done: Callable[[], None] | None
    id: int | None = None  # given by the writer when it inserts the row
    last: str | None = None  # an alarm's id: the body is its last event (meta, same commit)
    spilled: bool = False  # written to the alarm spill file: durable there, not yet here
    durable: bool = False  # a durable put in the writer's hands (the loop's commits wait)


@dataclass(slots=True)
class _Ack:
    ids: list[int]


@dataclass(slots=True)
class _Sync:
    """Commit now; optionally also record a clock fix or a counter reservation."""

    done: Callable[[], None] | None
    fix: tuple[str, int] | None = None
    reserve: tuple[str, int] | None = None


@dataclass(slots=True)
class _Close:
    done: threading.Event = field(default_factory=threading.Event)


_Op = _Put | _Ack | _Sync | _Close


class _CommitSlots:
    """When the writer commits telemetry. Time is cut into slots of ``commit_interval`` on
    the monotonic clock, the grid on which the batcher puts (the event loop's clock,
    ``watchpost.ticks``): the first telemetry of a slot is committed at once (it has waited
    in the batcher already, and the commit needs no wake-up of its own), telemetry taken up
    after it in the same slot at the slot's end. So nothing waits longer than an interval,
    telemetry spread over an interval makes at most two commits in it, and the batch of
    each tick one. A commit that carries no telemetry (a seq reservation, an alarm the
    writer took) takes no slot, so the next batch is not held back by it (as it was when the
    spacing was counted from the last commit of any kind: a batch then waited up to 0.9 s,
    and the batches after it a little less each, after such a commit)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._held: int | None = None  # the slot the telemetry in hand was taken up in
        self._charged = -1  # the last slot a commit of telemetry was charged to

    def take_up(self, ops: list[_Op]) -> None:
        """The writer took ``ops`` up."""
        if self._held is None and any(_batched(op) for op in ops):
            self._held = self._slot(time.monotonic())

    def due(self) -> float:
        """When what the writer has just taken up (into an empty transaction) is due."""
        now = time.monotonic()
        slot = self._slot(now)
        return now if slot > self._charged else (slot + 1) * self.interval

    def charge(self) -> None:
        """A commit begins: the telemetry in hand takes the slot it was taken up in."""
        if self._held is not None:
            self._charged = max(self._charged, self._held)
            self._held = None

    def _slot(self, now: float) -> int:
        return math.floor(now / self.interval)


def _batched(op: _Op) -> bool:
    """A put committed with the others of its interval (telemetry), not on its own."""
    return isinstance(op, _Put) and op.done is None and not op.durable


class Store:
    """The outbox. Construct it anywhere; call ``put`` from the event loop."""

    _durable_in_writer = 0  # durable puts handed to the writer, not yet committed (or spilled)

    def __init__(self, config: StoreConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.path = Path(config.path)
        self.quota_bytes = int(config.quota_mb * 1024 * 1024)
        self.min_free_bytes = int(config.min_free_mb * 1024 * 1024)
        self.keep_sent_ms = round(config.keep_sent * 1000)
        self._clock = clock
        self._expired_at = 0.0  # monotonic time of the last check for sent rows to expire
        self.recovery: dict[str, Any] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # room for alarms on a full disk; also what lets a store be opened on one
        self._reserve = ReserveFile(
            Path(f"{self.path}.reserve"), int(config.alarm_reserve_mb * 1024 * 1024)
        )
        conn, salvaged = self._open_with_room()
        self._wconn = conn
        self._counters: dict[str, int] = dict(
            conn.execute("SELECT stream, last_seq FROM streams").fetchall()
        )
        for stream, last in salvaged.items():
            self._counters[stream] = max(self._counters.get(stream, 0), last)
        self._rconn = _connect(self.path)
        self._row_streams: set[str] = {
            row[0] for row in conn.execute("SELECT DISTINCT stream FROM outbox")
        }
        # ids are given by the writer, so that it can hand committed rows on at once
        self._last_id = int(
            conn.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),"
                " coalesce((SELECT max(id) FROM outbox), 0))"
            ).fetchone()[0]
        )
        self._fixes: dict[str, int] = dict(
            conn.execute("SELECT boot, delta_ms FROM clock_fix").fetchall()
        )
        self._rlock = threading.Lock()
        self._seq_lock = threading.Lock()
        self._acked: set[int] = set()  # acked, delete not yet committed
        self._acks_waiting: list[int] = []  # acked, not yet taken up by the writer
        self._acked_lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._closed = False
        self._failing = False
        self._attempted = time.monotonic()  # the writer's last commit attempt
        self._slots = _CommitSlots(config.commit_interval)
        self._queued_bytes = 0  # bodies handed to the writer, not yet committed
        self._backoff = Backoff(initial=0.2, cap=10.0)
        # errors the writer survives: each logged once with its cost, then on recovery
        self._rollback_failures = LogOnce(log, "store rollback", TEXT_ROLLBACK_COST)
        self._evict_failures = LogOnce(log, "store eviction (disk full)", TEXT_EVICT_COST)
        self._quota_failures = LogOnce(log, "store quota check", TEXT_QUOTA_COST)
        self._disk_failures = LogOnce(log, "store free-space check", TEXT_DISK_COST)
        self._reserve_failures = LogOnce(log, "store alarm reserve", TEXT_RESERVE_COST)
        self._room_failures = LogOnce(log, "store giving pages back", TEXT_ROOM_COST)
        self._dropping = LogOnce(log, "storing telemetry", TEXT_DROPPED_COST, level=logging.WARNING)
        self._spill_failures = LogOnce(log, "alarm spill", TEXT_SPILL_COST)
        # a second path for what still does not fit
        self._spill = AlarmSpill(config.alarm_spill) if config.alarm_spill is not None else None
        self._full: dict[str, Any] | None = None  # the disk is full: since when, what it cost
        self._unsaved_drops: dict[str, tuple[int, int, int, int]] = {}  # -> streams, meta
        self._spilled_lasts: dict[str, bytes] = {}
        # the reserve, if it fits at all; full unless the margin is left beside it
        if not self._take_reserve(need_free=0) or not self._has_room():
            self._enter_full(TEXT_NO_ROOM)
        self._read_spill()
        # the file we opened: deleted or replaced while running, it is noticed and replaced
        self._identity = _identity(self.path)
        self._identity_checked = time.monotonic()
        self.damage_report: DamageReport | None = None  # set by the outbox
        self._start_writer()

    # -- opening and recovering -------------------------------------------------------------

    def _start_writer(self) -> None:
        """Start the writer thread, with what it shares with the event loop beyond the queue."""
        # the write connection is used by one thread at a time: the writer, or the event loop
        # committing a burst of durable puts itself while the writer holds none
        self._wlock = threading.Lock()
        self._burst: list[tuple[_Put, asyncio.Future[int]]] = []  # durable puts of this turn
        self._burst_loop: asyncio.AbstractEventLoop | None = None
        # the watchdog's view of the writer, read without a crossing: waiting with nothing in
        # hand, or when it last took work up or tried a commit
        self._writer_idle = False
        self._writer_progress = time.monotonic()
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    def _open_with_room(self) -> tuple[sqlite3.Connection, dict[str, int]]:
        """Open the store; on a disk without room (SQLite needs some for its log and its
        shared memory file) give the reserve back and try once more. A full disk is never
        taken for damage: the store is not moved aside for it."""
        try:
            return self._open_or_recover()
        except sqlite3.Error as exc:
            if not _no_room(exc, self.path):
                raise
            released = self._reserve.release()
            if not released:
                raise StoreFullError(TEXT_CANNOT_OPEN.format(path=self.path, error=exc)) from exc
            log.warning(TEXT_RESERVE_RELEASED, released)
        try:
            return self._open_or_recover()
        except sqlite3.Error as exc:
            if not _no_room(exc, self.path):
                raise
            raise StoreFullError(TEXT_CANNOT_OPEN.format(path=self.path, error=exc)) from exc

    def _open_or_recover(self) -> tuple[sqlite3.Connection, dict[str, int]]:
        conn, moved = open_or_move_aside(
            self.path,
            _open_checked,
            is_damage=lambda exc: (
                isinstance(exc, sqlite3.DatabaseError | _DamagedError)
                and not (isinstance(exc, sqlite3.Error) and _no_room(exc, self.path))
            ),
            what="store",
        )
        if moved is None:
            return conn, {}
        salvaged = _salvage_counters(moved.moved_to)
        if salvaged:
            log.warning(TEXT_SALVAGED, salvaged)
        self.recovery = {
            "reason": moved.reason,
            "moved_to": str(moved.moved_to),
            "seq_kept": bool(salvaged),
            "at": wall_ms(),
        }
        return conn, salvaged

    # -- writing ------------------------------------------------------------------------------

    async def put(
        self,
        stream: str,
        data: bytes,
        *,
        ts: int,
        durable: bool,
        items: int = 1,
        last: str | None = None,
    ) -> int:
        """Store one message body (``data``, a JSON object's bytes); return its ``seq``.

        Durable: returns after the row is committed and fsync'd. Otherwise queued and
        committed within ``commit_interval``. ``items``: samples or events it carries.
        ``last``: the body is the last event of alarm ``last``, kept in the same commit
        (``last_events``), so that a restart knows what the platform was told.
        """
        if durable:
            return await self.submit(stream, data, ts=ts, items=items, last=last)
        self._check(stream, data)
        self._row_streams.add(stream)
        boot = self._unsynced_boot()
        # the writer (a thread) is behind: wait for it rather than grow in memory
        while self._queued_bytes > MAX_QUEUED_BYTES:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        seq = self._next_seq(stream)
        self._queued(len(data))
        self._queue.put(_Put(stream, seq, int(ts), items, boot, data, None, last=last))
        return seq

    def submit(
        self, stream: str, data: bytes, *, ts: int, items: int = 1, last: str | None = None
    ) -> asyncio.Future[int]:
        """A durable ``put`` that does not wait: the future gets the ``seq`` once the row is
        committed and fsync'd. The seq is taken now, so submits keep their order. Call it
        from the event loop; every submit of one turn of the loop goes into one commit."""
        self._check(stream, data)
        self._row_streams.add(stream)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        seq = self._next_seq(stream)
        if not self._burst:  # after the other puts of this turn of the loop: one commit
            self._burst_loop = loop
            loop.call_soon(self._commit_burst, loop)
        op = _Put(stream, seq, int(ts), items, self._unsynced_boot(), data, None, last=last)
        self._burst.append((op, future))
        return future

    def commit_burst_now(self) -> None:
        """Commit the durable puts submitted so far in this turn of the loop now, instead of
        after the callbacks already waiting in the loop (the other devices' answers, the
        telemetry): the poll path calls it right after the alarm engine, so that an alarm's
        commit waits for no other work. A no-op without such puts."""
        if self._burst and self._burst_loop is not None:
            self._commit_burst(self._burst_loop)

    def _commit_burst(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit this turn's durable puts on the event loop itself when the writer holds no
        durable put (so ids keep each stream's seq order) and is not committing: no hand-off
        to the writer thread and back, which costs several GIL switches and turns of the
        loop. The writer then commits the telemetry it holds at once, as a durable put made
        it do before. Otherwise, or when the commit fails, the writer takes them (it
        retries, spills them on a full disk, replaces a lost file) and resolves them."""
        if not self._burst:
            return
        if not self._commit_on_loop([op for op, _future in self._burst]):
            self._hand_burst(loop)
            return
        burst, self._burst = self._burst, []
        for op, future in burst:
            if not future.done():
                future.set_result(op.seq)

    def _hand_burst(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer commits this turn's durable puts (and resolves them when done)."""
        burst, self._burst = self._burst, []
        with self._seq_lock:
            self._durable_in_writer += len(burst)
        for op, future in burst:
            op.durable = True
            op.done = _resolver(loop, future, op.seq)
            self._queued(len(op.body))
            self._queue.put(op)

    def _commit_on_loop(self, puts: list[_Put]) -> bool:
        if self._closed or self._failing or self._full is not None:
            return False
        if not self._wlock.acquire(blocking=False):
            return False
        try:
            with self._seq_lock:
                if self._durable_in_writer:  # ids must follow each stream's seqs
                    return False
                held = self._queued_bytes > 0
            try:
                self._commit(self._wconn, list(puts))
            except sqlite3.Error:
                self._rollback(self._wconn)
                return False  # the writer tries it again, and says what fails
            self._unsaved_drops = {}  # went in with this commit
            self._publish(list(puts))
            if held:  # as a durable put always did: the writer commits what it holds now
                self._queue.put(_Sync(None))
            return True
        finally:
            self._wlock.release()

    def put_blocking(self, stream: str, data: bytes, *, ts: int, items: int = 1) -> int:
        """``put`` for code that runs before the event loop does (the report of a damaged
        store at start): returns once committed. Blocks: never call it from the loop."""
        self._check(stream, data)
        self._row_streams.add(stream)
        done = threading.Event()
        seq = self._next_seq(stream)
        self._queued(len(data))
        op = _Put(stream, seq, int(ts), items, self._unsynced_boot(), data, done.set)
        op.durable = True
        with self._seq_lock:
            self._durable_in_writer += 1
        self._queue.put(op)
        done.wait()
        return seq

    def _check(self, stream: str, data: bytes) -> None:
        if self._closed:
            raise StoreClosedError(TEXT_CLOSED)
        if not STREAM_PATTERN.match(stream):
            raise BadMessageError(TEXT_STREAM.format(name=stream))
        if not isinstance(data, bytes):  # the writer could never insert it
            raise BadMessageError(TEXT_NOT_BYTES.format(kind=type(data).__name__))

    async def reserve(self, stream: str, count: int = 1) -> int:
        """Take ``count`` seqs of ``stream`` for messages that bypass the outbox (status,
        health, command replies); durable; return the first."""
        if self._closed:
            raise StoreClosedError(TEXT_CLOSED)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._seq_lock:
            first = self._counters.get(stream, 0) + 1
            self._counters[stream] = first + count - 1
        self._queue.put(_Sync(_resolver(loop, future, None), reserve=(stream, first + count - 1)))
        await asyncio.shield(future)
        return first

    def ack(self, ids: Iterable[int]) -> None:
        """The broker acknowledged these rows: forget them (committed with the next batch)."""
        ids = list(ids)
        if not ids or self._closed:
            return
        with self._acked_lock:
            self._acked.update(ids)
            self._acks_waiting.extend(ids)
        # not through the queue: an ack is never urgent, and waking the writer for it cost a
        # wake-up of its own a second; it goes in with the writer's next round (a put, a
        # flush, its commit deadline or its idle check each IDENTITY_CHECK)

    def correct_clock(self, boot_id: str, delta_ms: int) -> None:
        """Shift every unsynced stamp of ``boot_id`` by ``delta_ms`` when it is sent. Blocks
        until committed: call it off the event loop."""
        if self._closed:
            raise StoreClosedError(TEXT_CLOSED)
        done = threading.Event()
        self._queue.put(_Sync(done.set, fix=(boot_id, delta_ms)))
        done.wait()
        self._fixes[boot_id] = delta_ms

    def clock_fix(self, boot_id: str) -> int | None:
        """How far the unsynced stamps of ``boot_id`` were off, once learned."""
        return self._fixes.get(boot_id)

    def writer_alive(self, within: float) -> bool:
        """Whether the writer keeps up: waiting for work with nothing in hand, or it made
        progress (took work up, tried a commit) less than ``within`` seconds ago; while its
        writes fail, only on a full disk that it keeps trying (``writer_retrying``). Asked
        every second by the watchdog's check, without handing anything to the writer."""
        if self._closed:
            return False
        if self._full is not None:
            return self.writer_retrying(within)
        if self._failing:
            return False
        return self._writer_idle or time.monotonic() - self._writer_progress < within

    def flush(self, timeout: float | None = None) -> bool:
        """Commit everything queued so far; whether that happened within ``timeout``
        seconds (None: wait as long as it takes). Blocks: call it off the event loop."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(_Sync(done.set))
        return done.wait(timeout)

    def writer_retrying(self, within: float) -> bool:
        """The writer thread runs and tried a commit in the last ``within`` seconds (what the
        watchdog accepts while a full disk holds commits back)."""
        return self._writer.is_alive() and time.monotonic() - self._attempted < within

    def close(self) -> None:
        """Commit what is queued, checkpoint the WAL and close. Idempotent."""
        if self._closed:
            return
        if self._burst and self._burst_loop is not None:  # accepted before the close
            self._hand_burst(self._burst_loop)
        self._closed = True
        op = _Close()
        self._queue.put(op)
        while not op.done.wait(1.0) and self._writer.is_alive():
            pass  # a writer that died (a bug) must not hold the stop for ever
        self._writer.join(timeout=30)
        with self._rlock:
            self._rconn.close()

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(rows)`` from the writer thread after each commit that added rows,
        with those rows in id order. It must not block."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- reading (the uplink) -----------------------------------------------------------------

    def last_events(self) -> tuple[dict[str, bytes], bool]:
        """Each alarm's last event committed (alarm id -> body), and whether the record is
        complete (the store kept it from its creation: an alarm without one was never
        raised as far as the platform knows). Blocking (SQLite): call it at start."""
        with self._rlock:
            rows = self._rconn.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'last:%' OR key = 'last_events'"
            ).fetchall()
        found = dict(rows)
        complete = found.pop("last_events", None) == "complete"
        lasts = {key[5:]: value.encode("utf-8") for key, value in found.items()}
        return {**lasts, **self._spilled_lasts}, complete  # spilled: later than committed

    def fetch(self, stream: str, after_id: int, limit: int) -> list[StoredRow]:
        """Committed rows of ``stream`` after ``after_id``, oldest first, bodies
        decompressed; rows acknowledged but not yet deleted are left out. Blocking
        (SQLite): call it off the event loop."""
        with self._rlock:
            rows = self._rconn.execute(
                "SELECT id, seq, ts, boot, z, body FROM outbox WHERE stream = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (stream, after_id, limit),
            ).fetchall()
        with self._acked_lock:
            acked = self._acked.intersection(row[0] for row in rows) if self._acked else set()
        return [
            StoredRow(row_id, stream, seq, ts, boot, zlib.decompress(body) if z else body)
            for row_id, seq, ts, boot, z, body in rows
            if row_id not in acked
        ]

    def sent_range(self, stream: str, first: int, last: int) -> SentRange:
        """Which seqs of ``stream`` from ``first`` to ``last`` are kept as sent (their row
        ids) and which still wait to be sent. Blocking (SQLite): call it off the event loop."""
        with self._rlock:
            kept = self._rconn.execute(
                "SELECT seq, id FROM sent WHERE stream = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (stream, first, last),
            ).fetchall()
            waiting = self._rconn.execute(
                "SELECT seq FROM outbox WHERE stream = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (stream, first, last),
            ).fetchall()
        return SentRange(
            kept=[(int(seq), int(row_id)) for seq, row_id in kept],
            waiting=[int(row[0]) for row in waiting],
            last_seq=self.last_seq(stream),
        )

    def fetch_sent(self, ids: list[int]) -> list[StoredRow]:
        """The sent rows with these ids that are still kept, in the order asked, bodies
        decompressed. Blocking (SQLite): call it off the event loop."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._rlock:
            rows = self._rconn.execute(
                f"SELECT id, stream, seq, ts, boot, z, body FROM sent WHERE id IN ({marks})",
                ids,
            ).fetchall()
        found = {
            row_id: StoredRow(row_id, stream, seq, ts, boot, zlib.decompress(body) if z else body)
            for row_id, stream, seq, ts, boot, z, body in rows
        }
        return [found[i] for i in ids if i in found]

    def streams(self) -> set[str]:
        """Streams that may have rows waiting."""
        return set(self._row_streams)

    def max_id(self) -> int:
        """The newest committed row id (0 when empty)."""
        with self._rlock:
            return int(self._rconn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])

    def backlog(self) -> dict[str, Any]:
        """Depth per stream, oldest item, bytes on disk, evictions: for `health` and the CLI."""
        with self._rlock:
            result = _backlog(self._rconn, self.path, self.quota_bytes)
        result["failing"] = self._failing  # the writer cannot commit (disk error)
        result["disk_full"] = self.disk_full
        if self.recovery is not None:
            result["recovered"] = dict(self.recovery)
        return result

    @property
    def disk_full(self) -> dict[str, Any] | None:
        """While the disk is full: since when, why, and what it cost; else None."""
        with self._seq_lock:
            full = self._full
        return (
            None if full is None else {**full, "telemetry_dropped": dict(full["telemetry_dropped"])}
        )

    # -- internals ----------------------------------------------------------------------------

    def last_seq(self, stream: str) -> int:
        """The last seq given out on ``stream`` (0 before the first)."""
        with self._seq_lock:
            return self._counters.get(stream, 0)

    def _next_seq(self, stream: str) -> int:
        with self._seq_lock:
            seq = self._counters.get(stream, 0) + 1
            self._counters[stream] = seq
            return seq

    def _queued(self, size: int) -> None:
        with self._seq_lock:
            self._queued_bytes += size

    def _now_ms(self) -> int:
        return self._clock.now_ms() if self._clock is not None else wall_ms()

    def _unsynced_boot(self) -> str | None:
        clock = self._clock
        return None if clock is None or clock.synced else clock.boot_id

    # -- the file deleted or replaced while running -------------------------------------------

    def _still_ours(self) -> bool:
        """Whether the path still names the file the store opened."""
        self._identity_checked = time.monotonic()
        return _identity(self.path) == self._identity

    def _replace(self, reason: str) -> None:
        """The file was deleted, replaced or damaged under us: move aside what is there now,
        start a fresh store with the seq counters (known here) and every row still readable
        from the old connection (a deleted file stays readable while it is open), and commit
        the outbox's fault report with them. The batch being written goes in on its retry."""
        old = self._wconn
        try:
            rows = old.execute(
                "SELECT id, stream, seq, ts, items, boot, z, body FROM outbox ORDER BY id"
            ).fetchall()
        except sqlite3.Error as exc:
            log.error(TEXT_ROWS_LOST, exc)
            rows = []
        try:  # each alarm's last event: what a restart aligns the engine with
            lasts: list[tuple[str, str]] | None = old.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'last:%' OR key = 'last_events'"
            ).fetchall()
        except sqlite3.Error:
            lasts = None  # the fresh store's record is then incomplete, and says so
        with self._rlock:
            # the fresh store first: while it cannot be made (its folder gone too), the old
            # connections stay open, and the next try reads the same rows from them
            moved = move_aside(self.path) if _regular_file(self.path) else None
            conn = _open_checked(self.path)
            try:
                reader = _connect(self.path)
            except (OSError, sqlite3.Error):
                conn.close()
                raise
            for stale in (old, self._rconn):
                try:
                    stale.close()
                except sqlite3.Error as exc:
                    log.warning(TEXT_CLOSE_FAILED, exc)
            self._wconn = conn
            self._rconn = reader
        self._identity = _identity(self.path)
        self.recovery = {
            "reason": reason,
            "moved_to": str(moved) if moved is not None else "",
            "seq_kept": True,
            "at": wall_ms(),
        }
        log.error(TEXT_REPLACED, self.path, reason, len(rows))
        report = self._damage_row()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO outbox(id, stream, seq, ts, items, boot, z, body) "
            "VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )
        if report is not None:
            self._insert([report])
        conn.executemany(
            "INSERT OR REPLACE INTO clock_fix(boot, delta_ms) VALUES (?, ?)", self._fixes.items()
        )
        with self._seq_lock:
            counters = dict(self._counters)
        self._save_counters(counters)
        conn.execute("DELETE FROM meta WHERE key = 'last_events'")  # complete only if copied
        if lasts is not None:
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", lasts)
        conn.execute("COMMIT")
        if report is not None and report.id is not None:
            row = StoredRow(
                report.id, report.stream, report.seq, report.ts, report.boot, report.body
            )
            for callback in list(self._listeners):
                callback([row])

    def _damage_row(self) -> _Put | None:
        """The fault message the outbox makes for ``recovery``, as a row of this store."""
        if self.damage_report is None or self.recovery is None:
            return None
        stream, body, ts = self.damage_report(dict(self.recovery))
        self._row_streams.add(stream)
        return _Put(stream, self._next_seq(stream), ts, 1, self._unsynced_boot(), body, None)

    def _write_loop(self) -> None:
        """The writer thread: apply queued operations, commit when one is urgent or due."""
        txn: list[_Op] = []  # applied since the last commit, kept to re-apply after a failure
        deadline: float | None = None
        closing: _Close | None = None
        while True:
            ops = self._wait_for_work(txn, deadline) if closing is None else []
            closing = next((op for op in ops if isinstance(op, _Close)), closing)
            txn.extend(op for op in ops if not isinstance(op, _Close))
            if not txn and closing is None:
                deadline = None
                continue
            self._slots.take_up(ops)
            if deadline is None:
                deadline = self._slots.due()
            urgent = (
                closing is not None
                or self._failing
                or self._queued_bytes > MAX_QUEUED_BYTES // 4
                or any(
                    isinstance(op, _Sync) or (isinstance(op, _Put) and op.done is not None)
                    for op in ops
                )
            )
            if not urgent and time.monotonic() < deadline:
                continue
            self._attempted = time.monotonic()
            self._slots.charge()
            with self._wlock:
                txn = self._try_commit(txn)
            self._writer_progress = time.monotonic()
            self._spill_done(txn)
            if self._full is not None:  # what `health` says waits, as of now
                self._note_full(
                    alarms_waiting=sum(1 for op in txn if isinstance(op, _Put)),
                    alarms_spilled=self._spill.written if self._spill is not None else 0,
                )
            if not txn:
                deadline = None
            else:
                delay = self._backoff.next_delay()
                if self._full is not None:
                    delay = min(delay, FULL_RETRY)  # alarms wait: try again soon
                deadline = time.monotonic() + delay
                if closing is not None and self._backoff.attempt > 5:
                    self._lost_at_close(txn)
                    break  # give up at shutdown: what is lost is said
            if closing is not None and not txn:
                break
        with self._wlock:
            try:
                self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning(TEXT_CHECKPOINT_FAILED, exc)
            self._wconn.close()
        if closing is not None:
            closing.done.set()

    def _wait_for_work(self, txn: list[_Op], deadline: float | None) -> list[_Op]:
        """The next operations, by ``deadline``; with nothing in hand, the writer looks at
        its file each IDENTITY_CHECK meanwhile (no flush needs to wake it for that)."""
        idle = not txn
        if idle:
            timeout: float | None = IDENTITY_CHECK
        else:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._writer_idle = idle
        ops = self._gather(timeout)
        self._writer_idle = False
        self._writer_progress = time.monotonic()
        if idle and not ops:
            self._check_identity()
        return ops

    def _check_identity(self) -> None:
        """An idle writer still notices a store file deleted or replaced within a second."""
        if time.monotonic() - self._identity_checked < IDENTITY_CHECK:
            return
        with self._wlock:
            if self._still_ours():
                return
            self._try_replace(TEXT_GONE)

    def _try_replace(self, reason: str) -> bool:
        """``_replace``, or False when no fresh store can be made yet (its folder gone too,
        the disk refusing): logged once, the writer counts as failing for the watchdog and
        tries again on its next round; the writer thread never dies of it."""
        try:
            self._replace(reason)
        except (OSError, sqlite3.Error) as exc:
            if not self._failing:
                log.error(TEXT_WRITE_FAILED, exc, 0)
            self._failing = True
            return False
        return True

    def _gather(self, timeout: float | None) -> list[_Op]:
        ops: list[_Op] = []
        with contextlib.suppress(queue.Empty):
            ops.append(self._queue.get(timeout=timeout))
        while True:
            try:
                ops.append(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._acked_lock:
            acks, self._acks_waiting = self._acks_waiting, []
        if acks:
            ops.append(_Ack(acks))
        return ops

    def _try_commit(self, txn: list[_Op]) -> list[_Op]:
        """Commit ``txn``; what is left of it (empty when all of it went in)."""
        conn = self._wconn
        if self._full is not None:
            txn = self._drop_telemetry(txn)  # the room left is the alarms'
        try:
            self._commit(conn, txn)
        except sqlite3.Error as exc:
            self._rollback(conn)
            if not self._failing:
                log.error(TEXT_WRITE_FAILED, exc, len(txn))
            self._failing = True
            if _is_damage(exc) or not self._still_ours():
                self._try_replace(str(exc) or type(exc).__name__)
                return txn  # the batch goes into the fresh store on the next try
            if self._disk_full(exc):
                return self._commit_on_full_disk(txn, str(exc))
            return txn
        self._committed(conn, txn)
        return []

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.rollback()
        except sqlite3.Error as rollback_exc:
            self._rollback_failures.failed(rollback_exc)
        else:
            self._rollback_failures.succeeded()

    def _committed(self, conn: sqlite3.Connection, txn: list[_Op]) -> None:
        if self._failing:
            log.warning(TEXT_WRITE_RECOVERED)
            self._failing = False
            self._backoff.reset()
        self._unsaved_drops = {}  # went in with this commit
        self._after_commit(conn, txn)
        if self._full is not None:
            self._give_room_back(conn)

    # -- a full disk ------------------------------------------------------------------------

    def _disk_full(self, exc: sqlite3.Error) -> bool:
        return _no_room(exc, self.path)

    def _commit_on_full_disk(self, txn: list[_Op], reason: str) -> list[_Op]:
        """Commit what can be, making room cheapest first; what is left of ``txn``."""
        self._enter_full(reason)
        remaining = self._commit_parts(txn)
        for make_room in (self._evict_for_room, self._truncate_wal, self._release_reserve):
            if not remaining:
                return []
            if make_room():
                remaining = self._commit_parts(remaining)
        remaining = self._drop_telemetry(remaining)
        self._spill_durable(remaining)
        return remaining

    def _commit_parts(self, ops: list[_Op]) -> list[_Op]:
        """The most of ``ops`` that one commit takes: all, else all but the telemetry, else
        the acknowledgements and reservations alone (they free room or must not wait)."""
        conn = self._wconn
        essential = [op for op in ops if not _droppable(op)]
        small: list[_Op] = [op for op in ops if not isinstance(op, _Put)]
        for part in (ops, essential, small):
            if not part or (part is not ops and len(part) == len(ops)):
                continue
            try:
                self._commit(conn, part)
            except sqlite3.Error as exc:
                self._rollback(conn)
                if not self._disk_full(exc):
                    return ops
                continue
            self._committed(conn, part)
            taken = {id(op) for op in part}
            return [op for op in ops if id(op) not in taken]
        return ops

    def _enter_full(self, reason: str) -> None:
        if self._full is not None:
            return
        log.error(TEXT_FULL, reason)
        with self._seq_lock:
            self._full = {
                "since": wall_ms(),
                "reason": reason,
                "reserve_released": False,
                "telemetry_dropped": {"messages": 0, "items": 0},
                "alarms_waiting": 0,
                "alarms_spilled": 0,
            }

    def _note_full(self, **changes: Any) -> None:
        with self._seq_lock:
            if self._full is not None:
                self._full = {**self._full, **changes}

    def _evict_for_room(self) -> bool:
        """Evict the oldest telemetry; whether the used bytes went down."""
        conn = self._wconn
        try:
            before = _used_bytes(conn)
            self._evict(conn, fraction=0.1)
            freed = _used_bytes(conn) < before
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._evict_failures.failed(exc)
            return False
        self._evict_failures.succeeded()
        return freed

    def _truncate_wal(self) -> bool:
        """Checkpoint the write-ahead log and give its space back; whether it shrank."""
        wal = Path(f"{self.path}-wal")
        try:
            before = wal.stat().st_size
            self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return wal.stat().st_size < before
        except (OSError, sqlite3.Error) as exc:
            self._room_failures.failed(exc)
            return False

    def _release_reserve(self) -> bool:
        try:
            released = self._reserve.release()
        except OSError as exc:
            self._reserve_failures.failed(exc)
            return False
        if released:
            log.warning(TEXT_RESERVE_RELEASED, released)
            self._note_full(reserve_released=True)
        return released > 0

    def _give_room_back(self, conn: sqlite3.Connection) -> None:
        """While full, after a commit: free pages to the filesystem, and once it has room
        for the reserve again (and a margin), the store is no longer full."""
        try:
            conn.execute("PRAGMA incremental_vacuum").fetchall()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            self._room_failures.failed(exc)
            return
        self._room_failures.succeeded()
        if not self._take_reserve(need_free=self._margin()) or not self._has_room():
            return
        with self._seq_lock:
            full, self._full = self._full, None
        dropped = full["telemetry_dropped"]["messages"] if full else 0
        log.warning(TEXT_FULL_OVER, dropped)
        self._dropping.succeeded()

    def _margin(self) -> int:
        """Bytes free, beside the reserve, for the store not to count as full."""
        return max(self._reserve.size, ROOM_MARGIN)

    def _take_reserve(self, need_free: int) -> bool:
        """Hold the reserve if the filesystem keeps ``need_free`` beyond it; whether held."""
        try:
            held = self._reserve.ensure(need_free=need_free)
        except OSError as exc:
            self._reserve_failures.failed(exc)
            return False
        if held:
            self._reserve_failures.succeeded()
        return held

    def _has_room(self) -> bool:
        try:
            return shutil.disk_usage(self.path.parent).free >= self._margin()
        except OSError as exc:
            self._disk_failures.failed(exc)
            return False

    def _drop_telemetry(self, ops: list[_Op]) -> list[_Op]:
        """Leave the telemetry out (counted per stream, like an eviction)."""
        dropped = [op for op in ops if isinstance(op, _Put) and _droppable(op)]
        if not dropped:
            return ops
        self._dropping.failed(TEXT_NO_ROOM)
        items = sum(op.items for op in dropped)
        for op in dropped:
            count, samples, first, _last = self._unsaved_drops.get(op.stream, (0, 0, op.seq, 0))
            self._unsaved_drops[op.stream] = (count + 1, samples + op.items, first, op.seq)
        with self._seq_lock:
            self._queued_bytes -= sum(len(op.body) for op in dropped)
            if self._full is not None:
                before = self._full["telemetry_dropped"]
                self._full = {
                    **self._full,
                    "telemetry_dropped": {
                        "messages": before["messages"] + len(dropped),
                        "items": before["items"] + items,
                    },
                }
        return [op for op in ops if not (isinstance(op, _Put) and _droppable(op))]

    def _spill_durable(self, ops: list[_Op]) -> None:
        """Alarm events the disk cannot take: to the second path (their puts return),
        else they wait in memory."""
        waiting = [op for op in ops if isinstance(op, _Put) and not op.spilled]
        if not waiting or self._spill is None:
            if waiting:
                self._spill_failures.failed(TEXT_SPILL_COST)
            return
        try:
            self._spill.append(
                [
                    Spilled(op.stream, op.seq, op.ts, op.items, op.boot, op.body, op.last)
                    for op in waiting
                ]
            )
        except OSError as exc:
            self._spill_failures.failed(exc)
            return
        self._spill_failures.succeeded()
        self._note_full(alarms_spilled=self._spill.written)  # before the puts return
        for op in waiting:
            op.spilled = True
            done, op.done = op.done, None
            if done is not None:
                done()

    def _spill_done(self, txn: list[_Op]) -> None:
        """Everything spilled is committed: the spill file goes."""
        spill = self._spill
        if spill is None or not spill.written:
            return
        if any(isinstance(op, _Put) and op.spilled for op in txn):
            return
        try:
            spill.clear()
        except OSError as exc:
            self._spill_failures.failed(exc)

    def _read_spill(self) -> None:
        """At start: what an earlier run spilled and did not commit, queued with its seqs."""
        if self._spill is None:
            return
        try:
            found = self._spill.read()
        except OSError as exc:
            self._spill_failures.failed(exc)
            return
        committed = dict(self._wconn.execute("SELECT stream, last_seq FROM streams").fetchall())
        for entry in found:
            if entry.seq <= committed.get(entry.stream, 0):
                continue  # committed before the spill file could be removed
            with self._seq_lock:
                self._counters[entry.stream] = max(self._counters.get(entry.stream, 0), entry.seq)
                self._queued_bytes += len(entry.body)
            self._row_streams.add(entry.stream)
            if entry.last is not None:
                self._spilled_lasts[entry.last] = entry.body
            put = _Put(
                entry.stream,
                entry.seq,
                entry.ts,
                entry.items,
                entry.boot,
                entry.body,
                None,
                last=entry.last,
                spilled=True,
                durable=True,
            )
            with self._seq_lock:
                self._durable_in_writer += 1
            self._queue.put(put)

    def _lost_at_close(self, txn: list[_Op]) -> None:
        """Stopping on a disk that still has no room: say what is lost."""
        lost = [
            f"{op.stream} {op.seq}"
            for op in txn
            if isinstance(op, _Put) and not op.spilled and not _droppable(op)
        ]
        if lost:
            log.error(TEXT_LOST_AT_CLOSE, len(lost), ", ".join(lost))

    def _after_commit(self, conn: sqlite3.Connection, txn: list[_Op]) -> None:
        """First whoever waits for a put (a durable alarm), then the uplink, then the
        housekeeping: each SQLite call hands the GIL to the event loop and waits for it.
        A commit nobody waits for (telemetry) does its housekeeping (a few SQLite calls)
        before the uplink has its rows instead: once they are handed over, the event loop
        wakes to send them while the writer's SQLite calls still want the GIL, and the two
        threads hand it back and forth a few times a commit (wake-ups of both)."""
        self._finish(txn)
        urgent = any(isinstance(op, _Put) and op.done is not None for op in txn)
        if urgent:
            self._publish(txn)
        self._housekeeping(conn)
        if not urgent:
            self._publish(txn)
        for op in txn:  # a flush or a reservation: done once the quota is kept too
            if isinstance(op, _Sync) and op.done is not None:
                op.done()

    def _housekeeping(self, conn: sqlite3.Connection) -> None:
        try:
            self._enforce_quota(conn)
        except sqlite3.Error as exc:
            self._quota_failures.failed(exc)
        else:
            self._quota_failures.succeeded()
        if time.monotonic() - self._identity_checked >= IDENTITY_CHECK and not self._still_ours():
            self._try_replace(TEXT_GONE)

    def _publish(self, txn: list[_Op]) -> None:
        """Hand the rows of a commit to the listeners (the uplink)."""
        committed = [
            StoredRow(op.id, op.stream, op.seq, op.ts, op.boot, op.body)
            for op in txn
            if isinstance(op, _Put) and op.id is not None
        ]
        if committed:
            for callback in list(self._listeners):
                callback(committed)

    def _commit(self, conn: sqlite3.Connection, txn: list[_Op]) -> None:
        puts = [op for op in txn if isinstance(op, _Put)]
        acked = [row_id for op in txn if isinstance(op, _Ack) for row_id in op.ids]
        counters: dict[str, int] = {}
        for op in puts:
            counters[op.stream] = max(counters.get(op.stream, 0), op.seq)
        fixes: list[tuple[str, int]] = []
        for sync in txn:
            if isinstance(sync, _Sync):
                if sync.reserve is not None:
                    stream, last = sync.reserve
                    counters[stream] = max(counters.get(stream, 0), last)
                if sync.fix is not None:
                    fixes.append(sync.fix)
        conn.execute("BEGIN IMMEDIATE")
        self._insert(puts)
        lasts = [("last:" + op.last, op.body.decode("utf-8")) for op in puts if op.last]
        if lasts:  # in order: the latest event of an alarm wins
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", lasts)
        if acked:
            # kept for cmd/resend: the broker may still lose them; not on a full disk, where
            # the kept rows would go first anyway and the room is the alarms'
            if self.keep_sent_ms > 0 and self._full is None:
                now = self._now_ms()
                conn.executemany(
                    "INSERT OR REPLACE INTO sent(id, stream, seq, ts, items, boot, z, body, "
                    "sent_at) SELECT id, stream, seq, ts, items, boot, z, body, ? FROM outbox "
                    "WHERE id = ?",
                    ((now, i) for i in acked),
                )
            conn.executemany("DELETE FROM outbox WHERE id = ?", ((i,) for i in acked))
        if fixes:
            conn.executemany(
                "INSERT OR REPLACE INTO clock_fix(boot, delta_ms) VALUES (?, ?)", fixes
            )
        self._save_counters(counters)
        self._save_drops(conn)
        conn.execute("COMMIT")

    def _save_drops(self, conn: sqlite3.Connection) -> None:
        """Telemetry left out on a full disk: counted with the evictions."""
        for stream, (count, items, first, last) in self._unsaved_drops.items():
            conn.execute(
                "UPDATE streams SET evicted = evicted + ?, "
                "evicted_items = evicted_items + ? WHERE stream = ?",
                (count, items, stream),
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                (f"last_eviction.{stream}", json.dumps([first, last])),
            )

    def _insert(self, puts: list[_Put]) -> None:
        rows = []
        for op in puts:
            if op.id is None:  # kept when a failed commit is tried again
                self._last_id += 1
                op.id = self._last_id
            body, z = op.body, 0
            if len(body) > COMPRESS_ABOVE:
                # level 1, not 6: 4 % less of the daemon's CPU at 5,000 points, 12 % more disk
                body, z = zlib.compress(body, 1), 1
            rows.append((op.id, op.stream, op.seq, op.ts, op.items, op.boot, z, body))
        self._wconn.executemany(
            "INSERT INTO outbox(id, stream, seq, ts, items, boot, z, body) "
            "VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )

    def _save_counters(self, counters: dict[str, int]) -> None:
        self._wconn.executemany(
            "INSERT INTO streams(stream, last_seq) VALUES (?, ?) ON CONFLICT(stream) "
            "DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            counters.items(),
        )

    def _finish(self, txn: list[_Op]) -> None:
        size = sum(len(op.body) for op in txn if isinstance(op, _Put))
        with self._seq_lock:
            self._queued_bytes -= size
            self._durable_in_writer -= sum(1 for op in txn if isinstance(op, _Put) and op.durable)
        acked = [row_id for op in txn if isinstance(op, _Ack) for row_id in op.ids]
        if acked:
            with self._acked_lock:
                self._acked.difference_update(acked)
        for op in txn:
            if isinstance(op, _Put) and op.done is not None:
                op.done()

    def _enforce_quota(self, conn: sqlite3.Connection) -> None:
        """Keep the used pages under the quota, and the file from growing when the
        filesystem is down to ``min_free_mb``; first forget sent rows past ``keep_sent``."""
        if time.monotonic() - self._expired_at >= EXPIRE_EVERY:
            self._expire(conn)
        used = _used_bytes(conn)
        limit = self.quota_bytes
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            self._disk_failures.failed(exc)
            free = None
        else:
            self._disk_failures.succeeded()
        if free is not None and free < self.min_free_bytes:
            pages, size = (
                conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size")
            )
            limit = min(limit, int(pages * size * 0.98))  # reuse pages, do not grow
        if used > limit:
            self._evict(conn, fraction=(used - 0.9 * limit) / used)

    def _drop_sent(self, conn: sqlite3.Connection, target: int) -> int:
        """Delete the oldest sent rows holding about ``target`` bytes, alarms and anomalies
        last; the bytes freed (estimated)."""
        freed = 0
        marks = ",".join("?" * len(KEPT_LONGEST))
        for which in ("NOT IN", "IN"):
            rows = conn.execute(
                f"SELECT id, length(body) FROM sent WHERE stream {which} ({marks}) "
                "ORDER BY sent_at, id LIMIT 100000",
                KEPT_LONGEST,
            ).fetchall()
            chosen = []
            for row_id, size in rows:
                if freed >= target:
                    break
                chosen.append(row_id)
                freed += size + 40
            if chosen:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM sent WHERE id = ?", ((i,) for i in chosen))
                conn.execute("COMMIT")
                log.info(TEXT_DROPPED_SENT, len(chosen))
            if freed >= target:
                break
        return freed

    def _expire(self, conn: sqlite3.Connection) -> None:
        """Forget the sent rows acknowledged more than ``keep_sent`` ago."""
        self._expired_at = time.monotonic()
        horizon = self._now_ms() - self.keep_sent_ms
        if conn.execute("SELECT 1 FROM sent WHERE sent_at < ? LIMIT 1", (horizon,)).fetchone():
            conn.execute("DELETE FROM sent WHERE sent_at < ?", (horizon,))

    def _evict(self, conn: sqlite3.Connection, *, fraction: float) -> None:
        """Free about ``fraction`` of the used bytes: the sent rows kept for cmd/resend first
        (other streams', then alarms' and anomalies'), then the oldest unsent telemetry."""
        target = max(1, int(_used_bytes(conn) * fraction))
        target -= self._drop_sent(conn, target)
        if target <= 0:
            return
        for stream in sorted(EVICTABLE_STREAMS):
            rows = conn.execute(
                "SELECT id, seq, items, length(body) FROM outbox WHERE stream = ? "
                "ORDER BY id LIMIT 100000",
                (stream,),
            ).fetchall()
            chosen, freed = [], 0
            for row_id, seq, items, size in rows:
                if freed >= target:
                    break
                chosen.append((row_id, seq, items))
                freed += size + 40
            if not chosen:
                continue
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM outbox WHERE id = ?", ((c[0],) for c in chosen))
            items = sum(c[2] for c in chosen)
            conn.execute(
                "UPDATE streams SET evicted = evicted + ?, "
                "evicted_items = evicted_items + ? WHERE stream = ?",
                (len(chosen), items, stream),
            )
            last = json.dumps([chosen[0][1], chosen[-1][1]])
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                (f"last_eviction.{stream}", last),
            )
            conn.execute("COMMIT")
            log.warning(TEXT_EVICTED, len(chosen), items, chosen[0][1], chosen[-1][1])
            target -= freed
            if target <= 0:
                return


# -- module helpers -----------------------------------------------------------------------------


class _DamagedError(Exception):
    """The file opened but is not a usable store of this version."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    return conn


def _open_checked(path: Path) -> sqlite3.Connection:
    """Open (or create) the store and prove it sound; raise on any damage."""
    new = not path.exists() or path.stat().st_size == 0
    conn = _connect(path)
    try:
        if new:  # before WAL and any table: pages freed on a full disk can then be given
            # back to the filesystem; older versions read it as any other store
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = FULL")  # each commit fsyncs the WAL
        conn.execute("PRAGMA journal_size_limit = 8388608")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            conn.executescript(_SCHEMA + _SENT_SCHEMA)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("oldest_reader", str(OLDEST_READER)),
                    ("last_events", "complete"),  # every alarm's last event from the start
                ],
            )
            return conn
        if app_id != APPLICATION_ID:
            raise _DamagedError(TEXT_NOT_OURS.format(found=app_id))
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is not None and found[0] == "2":  # v3 only widened the stream index
            conn.executescript(
                "BEGIN; DROP INDEX outbox_stream;"
                "CREATE INDEX outbox_stream ON outbox(stream, id, seq, ts, items);"
                "UPDATE meta SET value = '3' WHERE key = 'schema_version';"
                "COMMIT;"
            )
            found = ("3",)
        if found is not None and found[0] == "3":  # v4 only added the `sent` table
            conn.executescript(
                "BEGIN;"
                + _SENT_SCHEMA
                + "UPDATE meta SET value = '4' WHERE key = 'schema_version'; COMMIT;"
            )
            found = ("4",)
        if found is not None and _readable_newer(conn, found[0]):
            log.info(TEXT_NEWER, found[0], SCHEMA_VERSION)
        elif found is None or found[0] != str(SCHEMA_VERSION):
            raise _DamagedError(
                TEXT_VERSION.format(found=found and found[0], expected=SCHEMA_VERSION)
            )
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise _DamagedError(TEXT_CHECK.format(result=result))
        conn.execute("SELECT count(*) FROM streams").fetchone()
        _allow_giving_back(conn, path)
        return conn
    except BaseException:
        conn.close()
        raise


def _allow_giving_back(conn: sqlite3.Connection, path: Path) -> None:
    """An older store (no incremental vacuum) is rebuilt with it once, when it is small and
    the disk has room: pages freed on a full disk can then go back to the filesystem. A
    rebuild that fails costs nothing but that (logged)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 0:
        return
    try:
        size = sum(f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists())
        if size > REBUILD_BELOW or shutil.disk_usage(path.parent).free < 3 * size + ROOM_MARGIN:
            return
    except OSError:
        return
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.Error as exc:
        log.warning(TEXT_NOT_REBUILT, path, exc)
    else:
        log.info(TEXT_REBUILT, path)


def _readable_newer(conn: sqlite3.Connection, found: str) -> bool:
    """A newer schema whose writer declared this version able to use it."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'oldest_reader'").fetchone()
    try:
        return int(found) > SCHEMA_VERSION and row is not None and int(row[0]) <= SCHEMA_VERSION
    except ValueError:
        return False


def _salvage_counters(path: Path) -> dict[str, int]:
    """The seq counters of a damaged store, if they can still be read."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {str(s): int(n) for s, n in conn.execute("SELECT stream, last_seq FROM streams")}
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, TypeError):
        return {}


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _is_damage(exc: sqlite3.Error) -> bool:
    """SQLite says the file is not (or no longer) a database."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or (
        isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc)
    )


def _used_bytes(conn: sqlite3.Connection) -> int:
    # one statement, not three PRAGMAs: the writer runs it after every commit, and each
    # statement takes and drops SQLite's read lock and the GIL
    pages, free, size = conn.execute(
        "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    return int((pages - free) * size)


def _backlog(conn: sqlite3.Connection, path: Path, quota: int) -> dict[str, Any]:
    streams: dict[str, Any] = {}
    for stream, depth, items, oldest, first, last in conn.execute(
        "SELECT stream, count(*), sum(items), min(ts), min(seq), max(seq) "
        "FROM outbox GROUP BY stream"
    ):
        streams[stream] = {
            "depth": depth,
            "items": items,
            "oldest_ts": oldest,
            "first_seq": first,
            "last_seq": last,
        }
    evictions: dict[str, Any] = {}
    for stream, last_seq, evicted, evicted_items in conn.execute(
        "SELECT stream, last_seq, evicted, evicted_items FROM streams"
    ):
        streams.setdefault(
            stream, {"depth": 0, "items": 0, "oldest_ts": None, "first_seq": None, "last_seq": None}
        )
        streams[stream]["seq"] = last_seq
        if evicted:
            evictions[stream] = {"messages": evicted, "items": evicted_items}
    kept: dict[str, Any] = {}
    has_sent = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sent'"
    ).fetchone()
    if has_sent:  # a read-only look at a store of schema 3 has none
        for stream, count, first, last in conn.execute(
            "SELECT stream, count(*), min(seq), max(seq) FROM sent GROUP BY stream"
        ):
            kept[stream] = {"count": count, "first_seq": first, "last_seq": last}
    for key, value in conn.execute("SELECT key, value FROM meta WHERE key LIKE 'last_eviction.%'"):
        stream = key.split(".", 1)[1]
        if stream in evictions:
            evictions[stream]["last_seq_range"] = json.loads(value)
    on_disk = sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    return {
        "streams": streams,
        "bytes": on_disk,
        "used_bytes": _used_bytes(conn),
        "quota_bytes": quota,
        "evictions": evictions,
        "kept": kept,
    }


def read_backlog(path: Path) -> dict[str, Any]:
    """``backlog()`` of a store file, read-only, without a running gateway."""
    conn = connect_read_only(path)
    try:
        return _backlog(conn, path, quota=0)
    finally:
        conn.close()


def _resolver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[_T], value: _T
) -> Callable[[], None]:
    def resolve() -> None:
        def set_result() -> None:
            if not future.done():
                future.set_result(value)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(set_result)

    return resolve


def _droppable(op: _Op) -> bool:
    """Telemetry: left out rather than kept waiting when the disk is full."""
    return isinstance(op, _Put) and op.stream in EVICTABLE_STREAMS and not op.spilled


def _no_room(exc: sqlite3.Error, path: Path) -> bool:
    """SQLite failed for want of room on the disk of ``path``."""
    if _is_full(exc):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    try:  # SQLite reports some writes that found no room as an I/O error
        return shutil.disk_usage(path.parent).free < NEARLY_FULL
    except OSError:
        return False


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
