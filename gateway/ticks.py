"""One grid for the periodic loops: what runs every second or so wakes the loop together.

Each periodic loop of the daemon (the watchdog's liveness probes, the disk watch, the
health loop, the telemetry batcher, the alarm keeper, paho's keepalive, the clock probe)
used to sleep its period from when it last ran, so each had a phase of its own and the event
loop woke for each of them apart: about ten wake-ups a second with nothing to poll. A
wake-up costs more than the work of most of these loops (a thread that wakes after a pause
runs with cold caches). Sleeping to the next multiple of the period on the loop's clock puts
them on the same instants: the loop wakes once and runs them all in that turn.

The buses' polls have a grid of their own, just after the ticks (``poll_instant``): a read
then finds the loop, the store's writer and their data warm from the tick's work, and its
alarm commits are faster than half a second later (docs/performance.md, "polls just after
the ticks").
"""

from __future__ import annotations

import asyncio
import math


def next_tick(now: float, period: float) -> float:
    """The first multiple of ``period`` after ``now`` (the same float for every caller)."""
    when = (math.floor(now / period) + 1) * period
    return when if when > now else when + period


async def sleep_to_tick(period: float) -> None:
    """Sleep until the next multiple of ``period`` on the running loop's clock."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    handle = loop.call_at(next_tick(loop.time(), period), _wake, future)
    try:
        await future
    finally:
        handle.cancel()


POLL_LAG = 0.05
"""Seconds from a tick to the polls of a whole-second interval: past the tick's own work
(the batcher's hand-over and the store's commit of it, 8 to 15 ms on the machine where the
lag was measured; docs/performance.md, "polls just after the ticks")."""


def poll_instant(when: float, interval: float) -> float:
    """The instant of the polls' grid nearest to ``when``, for a device polled every
    ``interval`` seconds: the multiples of ``interval`` shifted by ``POLL_LAG`` (by half of an
    interval shorter than that), so that a whole-second interval polls just after each tick."""
    offset = min(POLL_LAG, interval / 2)
    return round((when - offset) / interval) * interval + offset


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["next_tick", "poll_instant", "sleep_to_tick"]
