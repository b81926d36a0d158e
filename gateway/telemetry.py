"""Telemetry batching: samples gathered in memory for a moment, then stored as one message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from watchpost.messages import SampleReading
from watchpost.samples import Sample
from watchpost.ticks import next_tick

# the batches of one flush, stored together (one commit, see ``Outbox.put_all``)
Put = Callable[[list[list[SampleReading]]], Awaitable[object]]
# a flush before the tick only when this many messages are pending (10,000 samples): a bound
# on memory, far above a second of the largest site measured (5,000 points at 1 Hz)
EARLY_FLUSH_BATCHES = 20


class TelemetryBatcher:
    """Turns a stream of samples into `telemetry` messages of at most ``max_samples`` each."""

    def __init__(self, put: Put, *, interval: float = 1.0, max_samples: int = 500) -> None:
        self._put = put
        self._interval = interval
        self._max = max_samples
        self._pending: list[SampleReading] = []
        self._wake: asyncio.Future[None] | None = None  # what run() waits on: tick or full

    def add(self, samples: Sequence[Sample]) -> None:
        """Called on the poll path: only appends."""
        # ``_value_`` is the member's value without the descriptor behind ``.value``,
        # which costs more than building the dict on a path taken for every sample
        self._pending.extend(
            {"point": s.point, "ts": s.ts, "value": s.value, "quality": s.quality._value_}
            for s in samples
        )
        if len(self._pending) >= self._max * EARLY_FLUSH_BATCHES:
            _wake(self._wake)

    async def run(self) -> None:
        """Store what is pending every ``interval``, on the grid of the periodic loops (sooner
        only when EARLY_FLUSH_BATCHES messages are pending); flush on cancel. At 1,000 points
        a second the tick's two messages go into one commit; a message flushed as soon as it
        was full (500 samples) used to make a commit of its own and hold the rest of the
        second back to the writer's next slot."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                # one future, resolved by the tick's timer or by add(): no timeout context
                # (its cancellation and exception every second) and no Event
                wake = self._wake = loop.create_future()
                # on the grid of the other periodic loops (watchpost.ticks): no wake-up of
                # its own
                timer = loop.call_at(next_tick(loop.time(), self._interval), _wake, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    self._wake = None
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Hand what is pending to the store, in batches of at most ``max_samples``, all at
        once: the store's writer takes them up together (at 1,000 points a second, two
        batches: one commit instead of two)."""
        if self._pending:
            pending, self._pending, size = self._pending, [], self._max
            await self._put([pending[at : at + size] for at in range(0, len(pending), size)])


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
