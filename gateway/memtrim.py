"""Hand the memory the daemon has freed back to the system (glibc's ``malloc_trim``).

Start-up builds and drops a great deal (imports, the config's validators, the first messages),
and an anomaly model's calibration makes large temporary arrays. glibc keeps the pages it got
for them in its heaps for reuse, so without a trim the resident memory stays near its peak.
``malloc_trim(0)`` gives every free page back; it takes 0.3 to 2 ms here, once a minute.
Figures: docs/performance.md ("Issue 10: memory").

On a C library without ``malloc_trim`` (musl) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_TRIM_S = 10.0  # after start-up: the first poll cycles and messages are done by then
TRIM_EVERY_S = 60.0  # then: a calibration, a backlog sent after an outage, a reload


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except AttributeError:
        log.debug("no malloc_trim in this C library: freed memory stays with the process")
        return None
    return trim


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system; False when the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


async def run(sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Trim ``FIRST_TRIM_S`` after start, then every ``TRIM_EVERY_S``, until cancelled."""
    await sleep(FIRST_TRIM_S)
    while release_free_memory():
        await sleep(TRIM_EVERY_S)
