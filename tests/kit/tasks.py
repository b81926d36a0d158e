"""asyncio tasks in tests: a cancellation that must not be lost."""

from __future__ import annotations

import asyncio

import pytest


async def assert_cancelled(task: asyncio.Task[object], timeout: float = 5.0) -> None:
    """Cancel ``task``; it must end cancelled within ``timeout`` s (Python 3.11's wait_for
    could swallow the cancellation and let it finish, or run on)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(timeout):
            await task
    assert task.cancelled()
