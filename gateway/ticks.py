"""One grid for the periodic loops: what runs every second or so wakes the loop together.

Each periodic loop of the daemon (the watchdog's liveness probes, the disk watch, the
health loop, the telemetry batcher, the alarm keeper, paho's keepalive, the clock probe)
used to sleep its period from when it last ran, so each had a phase of its own and the event
loop woke for each of them apart: about ten wake-ups a second with nothing to poll. A
wake-up costs more than the work of most of these loops (a thread that wakes after a pause
runs with cold caches). Sleeping to the next multiple of the period on the loop's clock puts
them on the same instants: the loop wakes once and runs them all in that turn.

The buses' polls have a grid of their own, half a period off the ticks (``poll_instant``):
the batcher takes a poll's samples at the next tick, half a second later, and the store's
commit of that tick's batch, which follows the tick by a few milliseconds, never meets the
reads and the alarm commits they may bring.
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


def poll_instant(when: float, interval: float) -> float:
    """The instant of the polls' grid nearest to ``when``, for a device polled every
    ``interval`` seconds: the multiples of ``interval`` shifted by half of ``interval`` or of a
    second, whichever is shorter. A whole-second interval polls at the middle of the second,
    half-way between two ticks; a shorter one at the middle of its own period, which is never
    on a tick either."""
    offset = min(interval, 1.0) / 2
    return round((when - offset) / interval) * interval + offset


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["next_tick", "poll_instant", "sleep_to_tick"]
