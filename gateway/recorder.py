"""The alarm engine's events on their way to the outbox, in the order they were decided.

The recorder listens to the engine (every transition: from samples, from shelves that
expire, from a crew's or the platform's action) and stores each event durably on the
`alarms` stream. Whoever caused events can wait for exactly those events to be stored and
learn their seqs (``stored``): each event carries its own future, nothing is counted.
Each event goes to the outbox as the engine decides it (``Outbox.submit``: encoded, seq
taken), and a burst (one poll can move many alarms) is committed at the end of that turn
of the event loop, so one fsync covers it and no task or queue stands in between.
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
    """Engine listener: every alarm event into the outbox, durably and in order."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._futures: dict[int, asyncio.Future[int]] = {}  # id(event) -> its seq, until stored

    def __call__(self, event: AlarmEvent) -> None:
        """The engine's listener: hand ``event`` to the outbox at once (encoded, given its
        seq; committed with the other events of this turn of the loop). Never blocks and
        never raises into the engine."""
        try:
            # built by the engine: not validated again, so that no alarm is lost to a nit
            future = self._outbox.submit(AlarmMessage(**event.body()), ts=event.decided_ts)
        except Exception as exc:  # the store is closed, or the body cannot be encoded
            log.error(TEXT_NOT_STORED, event.alarm, event.event, exc)
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting for this one
        else:
            future.add_done_callback(lambda done: self._stored(event, done))
        self._futures[id(event)] = future

    def _stored(self, event: AlarmEvent, future: asyncio.Future[int]) -> None:
        if self._futures.get(id(event)) is future:
            del self._futures[id(event)]
        if not future.cancelled() and future.exception() is not None:
            log.error(TEXT_NOT_STORED, event.alarm, event.event, future.exception())

    def stored(self, events: Sequence[AlarmEvent]) -> list[asyncio.Future[int]]:
        """The seqs of ``events``, each once it is durable. Call it right after the engine
        returned them (before any ``await``)."""
        return [self._futures[id(event)] for event in events]

    async def drain(self) -> None:
        """Wait until every event handed over so far is stored (at shutdown)."""
        pending = list(self._futures.values())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
