"""A stop is never lost inside a Modbus transaction.

pymodbus waits with ``asyncio.wait_for``, which on Python 3.11 swallows a cancellation that
arrives as its awaitable completes; the daemon then waited for ever on SIGTERM (seen: 1 stop
in 5 right after start). ``keep_cancel`` raises such a lost cancellation again.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.kit.tasks import assert_cancelled
from watchpost.drivers.modbus import keep_cancel


async def swallows_a_cancel(started: asyncio.Event) -> int:
    """What 3.11's wait_for does when the answer and the cancellation come together."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):  # the swallowing under test
        await asyncio.sleep(10)
    return 1


def test_a_cancellation_swallowed_below_is_raised_again() -> None:
    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(keep_cancel(swallows_a_cancel(started)))
        await started.wait()
        await assert_cancelled(task)

    asyncio.run(main())


def test_without_a_cancellation_the_answer_comes_through() -> None:
    async def main() -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.set_result(7)
        assert await keep_cancel(future) == 7

    asyncio.run(main())
