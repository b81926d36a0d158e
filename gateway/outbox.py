"""The one way out: every producer hands its message here and gets its ``seq`` back.

``put(message)`` encodes the body once and stores it (durably for alarms and anomalies: it
returns once the row is fsync'd; ``submit`` is the same without waiting, for the alarm
recorder); ``number(message)`` gives the messages that are not stored
(status, health, command replies) their seq and their wire bytes. The uplink reads what to
send from here too: ``fetch`` (the backlog, from SQLite) and ``follow`` (rows as the store's
writer commits them, without reading them back). Either way ``frame`` is where a stored
body gets its envelope: ``replay`` and the clock's state are decided at send time, so the
stored bytes never change; a body stamped before the clock was synchronised is the only one
decoded again, to shift its stamps.

Exceptions: ``messages.EncodeError`` (a body JSON cannot carry: a programming error) and the
store's ``StoreClosedError``; none of them is worth a retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from watchpost import messages
from watchpost.messages import AlarmMessage, Message, encode_body

if TYPE_CHECKING:
    from watchpost.clock import Clock
    from watchpost.store import Store, StoredRow

TEXT_NOT_STORED = "{stream} messages are not stored: use number()"
TEXT_STORED = "{stream} messages are stored: use put()"
TEXT_NOT_DURABLE = "{stream} messages are committed in batches: use put()"
TEXT_NOT_BATCHED = "{stream} messages are not committed in batches: use put() or number()"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready for the wire. ``id`` is its store row (0 for unstored streams)."""

    id: int
    stream: str
    seq: int
    payload: bytes
    resend: bool = False  # a sent row again (cmd/resend): ``id`` is its row in ``sent``


class Outbox:
    """Numbers, stores and frames every outbound message of one gateway."""

    def __init__(self, store: Store, *, gateway: str, clock: Clock | None = None) -> None:
        self.store = store
        self.gateway = gateway
        self._clock = clock
        store.damage_report = self._damage_body  # a store lost while running
        if store.recovery is not None:  # a store found damaged at start
            stream, body, ts = self._damage_body(store.recovery)
            store.put_blocking(stream, body, ts=ts)

    def now_ms(self) -> int:
        """The stamp for a message made now."""
        return self._clock.now_ms() if self._clock is not None else round(time.time() * 1000)

    # -- producers ------------------------------------------------------------------------

    async def put(self, message: Message, *, ts: int | None = None) -> int:
        """Store ``message``; return its seq once stored (fsync'd for durable streams).

        ``ts`` is the envelope's stamp (default: now); an alarm is stamped when decided.
        """
        if message.durable:
            return await self.submit(message, ts=ts)
        if not message.stored:
            raise TypeError(TEXT_NOT_STORED.format(stream=message.stream))
        return await self._put_encoded(message, encode_body(message), ts)

    async def put_all(self, batch: Sequence[Message]) -> list[int]:
        """``put`` of several messages committed in batches (telemetry), their seqs: all are
        encoded first, then handed to the store back to back, so that its writer takes them
        up together, in one commit, instead of waking for the first while the next is
        encoded."""
        encoded = []
        for message in batch:
            if message.durable or not message.stored:
                raise TypeError(TEXT_NOT_BATCHED.format(stream=message.stream))
            encoded.append((message, encode_body(message)))
        return [await self._put_encoded(message, data, None) for message, data in encoded]

    async def _put_encoded(self, message: Message, data: bytes, ts: int | None) -> int:
        """The store's ``put`` of a message committed in batches, its body encoded."""
        return await self.store.put(
            message.stream,
            data,
            ts=self.now_ms() if ts is None else ts,
            durable=False,
            items=message.items(),
            last=_alarm_of(message),
        )

    def submit(self, message: Message, *, ts: int | None = None) -> asyncio.Future[int]:
        """``put`` of a durable message without waiting: encoded and given its seq now, the
        future gets the seq once fsync'd. Every submit of one turn of the event loop goes
        into one commit (an alarm burst: one fsync)."""
        if not message.durable:
            raise TypeError(TEXT_NOT_DURABLE.format(stream=message.stream))
        return self.store.submit(
            message.stream,
            encode_body(message),
            ts=self.now_ms() if ts is None else ts,
            items=message.items(),
            last=_alarm_of(message),
        )

    def commit_submitted(self) -> None:
        """Commit what ``submit`` took in this turn of the loop now (see
        ``Store.commit_burst_now``); the same commit would otherwise come later in the turn."""
        self.store.commit_burst_now()

    async def number(self, message: Message) -> Outgoing:
        """A message that is not stored (status, health, reply): its seq, taken durably so
        that it never repeats, and its wire bytes."""
        if message.stored:
            raise TypeError(TEXT_STORED.format(stream=message.stream))
        seq = await self.store.reserve(message.stream)
        return self.frame_now(message, seq)

    async def reserve(self, stream: str, count: int) -> int:
        """Take ``count`` seqs of an unstored stream ahead (a will: the `offline` status)."""
        return await self.store.reserve(stream, count)

    def frame_now(self, message: Message, seq: int) -> Outgoing:
        """An unstored message with a seq already taken (``reserve``), stamped now."""
        payload = messages.frame(
            self.gateway, message.stream, seq, self.now_ms(), encode_body(message)
        )
        return Outgoing(0, message.stream, seq, payload)

    # -- the uplink -------------------------------------------------------------------------

    def frame(self, row: StoredRow, *, replay: bool) -> Outgoing:
        """A stored row as it goes on the wire now."""
        ts, body = row.ts, row.body
        clock: messages.Clock | None = None
        if row.boot is not None:
            delta = self.store.clock_fix(row.boot)
            if delta is None:
                clock = "unsynced"
            else:
                clock = "corrected"
                ts += delta
                body = messages.shift_stamps(row.stream, body, delta)
        payload = messages.frame(
            self.gateway,
            row.stream,
            row.seq,
            ts,
            body,
            replay=replay,
            clock=clock,
            boot_id=row.boot if clock == "unsynced" else None,
        )
        return Outgoing(row.id, row.stream, row.seq, payload)

    def fetch(self, stream: str, after_id: int, limit: int, *, replay_upto: int) -> list[Outgoing]:
        """The backlog of ``stream`` after row ``after_id``, framed; rows up to
        ``replay_upto`` are replays. Blocking (SQLite): call it off the event loop."""
        return [
            self.frame(row, replay=row.id <= replay_upto)
            for row in self.store.fetch(stream, after_id, limit)
        ]

    def fetch_sent(self, ids: list[int]) -> list[Outgoing]:
        """Sent rows asked for again (cmd/resend), framed as replays; rows no longer kept are
        left out. Blocking (SQLite): call it off the event loop."""
        rows = self.store.fetch_sent(ids)
        return [replace(self.frame(row, replay=True), resend=True) for row in rows]

    def streams(self) -> list[str]:
        """Streams that may have rows waiting, in the order they are sent."""
        return sorted(self.store.streams(), key=messages.priority)

    def follow(self, callback: Callable[[list[StoredRow]], None]) -> Callable[[], None]:
        """Call ``callback(rows)`` from the store's writer thread with every commit's rows;
        returns the function that stops it."""
        self.store.add_listener(callback)
        return lambda: self.store.remove_listener(callback)

    def ack(self, ids: list[int]) -> None:
        """The broker acknowledged these rows."""
        self.store.ack(ids)

    # -- the gateway's own faults -----------------------------------------------------------

    def _damage_body(self, recovery: dict[str, Any]) -> tuple[str, bytes, int]:
        """The `store_damaged` fault for the platform: (stream, body, stamp)."""
        now = self.now_ms()
        event = AlarmMessage(
            event="raised",
            alarm="gateway/store_damaged",
            point="gateway",
            rule="store_damaged",
            kind="store_damaged",
            level="fault",
            value=None,
            threshold=None,
            sample_ts=now,
            decided_ts=now,
            reason=str(recovery["reason"]),
            moved_to=str(recovery["moved_to"]),
            seq_kept=bool(recovery["seq_kept"]),
        )
        return event.stream, encode_body(event), now


def _alarm_of(message: Message) -> str | None:
    """The alarm whose last event ``message`` is (kept by the store in the same commit), or
    None: test alarms change no state."""
    if isinstance(message, AlarmMessage) and message.test is not True:
        return str(message.alarm)
    return None
