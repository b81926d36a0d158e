"""The alarm engine's events on their way to the outbox, in the order they were decided.

The recorder listens to the engine (every transition: from samples, from shelves that
expire, from a crew's or the platform's action) and stores each event durably on the
`alarms` stream. Whoever caused events can wait for exactly those events to be stored and
learn their seqs (``stored``): each event carries its own future, nothing is counted.
A burst (one poll can move many alarms) goes to the store at once, so one fsync covers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from gettext import gettext as _
from typing import TYPE_CHECKING

from watchpost.messages import AlarmMessage

if TYPE_CHECKING:
    from watchpost.alarms import AlarmEvent
    from watchpost.outbox import Outbox

log = logging.getLogger(__name__)

TEXT_NOT_STORED = _("alarm event %s %s could not be stored: %s")


class AlarmRecorder:
    """Engine listener and task: every alarm event into the outbox, durably and in order."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._queue: asyncio.Queue[tuple[AlarmEvent, asyncio.Future[int]]] = asyncio.Queue()
        self._futures: dict[int, asyncio.Future[int]] = {}  # id(event) -> its seq, until stored

    def __call__(self, event: AlarmEvent) -> None:
        """The engine's listener: queue ``event`` (synchronously, never blocks)."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._futures[id(event)] = future
        self._queue.put_nowait((event, future))

    def stored(self, events: Sequence[AlarmEvent]) -> list[asyncio.Future[int]]:
        """The seqs of ``events``, each once it is durable. Call it right after the engine
        returned them (before any ``await``), while they are still queued."""
        return [self._futures[id(event)] for event in events]

    async def run(self) -> None:
        """Store queued events until cancelled."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._store(batch)

    async def drain(self) -> None:
        """Store whatever is still queued (at shutdown)."""
        batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        await self._store(batch)

    async def _store(self, batch: list[tuple[AlarmEvent, asyncio.Future[int]]]) -> None:
        # each put takes its seq before its first await: gather keeps the order
        results = await asyncio.gather(
            *(
                # built by the engine: not validated again, so that no alarm is lost to a nit
                self._outbox.put(AlarmMessage.model_construct(**event.body()), ts=event.decided_ts)
                for event, _future in batch
            ),
            return_exceptions=True,
        )
        for (event, future), result in zip(batch, results, strict=True):
            self._futures.pop(id(event), None)
            if future.done():
                continue
            if isinstance(result, BaseException):
                log.error(TEXT_NOT_STORED, event.alarm, event.event, result)
                future.set_exception(result)
                future.exception()  # retrieved: nobody may be waiting for this one
            else:
                future.set_result(result)
