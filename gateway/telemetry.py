"""Telemetry batching: samples gathered in memory for a moment, then stored as one message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from watchpost.messages import SampleReading
from watchpost.samples import Sample
from watchpost.ticks import next_tick

Put = Callable[[list[SampleReading]], Awaitable[object]]


class TelemetryBatcher:
    """Turns a stream of samples into `telemetry` messages of at most ``max_samples`` each."""

    def __init__(self, put: Put, *, interval: float = 1.0, max_samples: int = 500) -> None:
        self._put = put
        self._interval = interval
        self._max = max_samples
        self._pending: list[SampleReading] = []
        self._full = asyncio.Event()

    def add(self, samples: Sequence[Sample]) -> None:
        """Called on the poll path: only appends."""
        # ``_value_`` is the member's value without the descriptor behind ``.value``,
        # which costs more than building the dict on a path taken for every sample
        self._pending.extend(
            {"point": s.point, "ts": s.ts, "value": s.value, "quality": s.quality._value_}
            for s in samples
        )
        if len(self._pending) >= self._max:
            self._full.set()

    async def run(self) -> None:
        """Store a batch every ``interval`` (sooner when one is full); flush on cancel."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # on the grid of the other periodic loops (watchpost.ticks): no wake-up of its own
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_tick(loop.time(), self._interval)):
                        await self._full.wait()
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        self._full.clear()
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            await self._put(batch)
