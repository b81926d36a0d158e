"""The daemon hands freed memory back to the system: after start-up, then once a minute."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from watchpost import memtrim

CHUNK = 64 * 1024  # below glibc's mmap threshold: these come from the heap, not mmap
CHUNKS = 800  # 50 MiB


def rss_mib() -> float:
    """Resident memory of this process, MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / (1024 * 1024)


def test_freed_heap_pages_go_back_to_the_system() -> None:
    blocks = [bytearray(CHUNK) for _ in range(CHUNKS)]
    for block in blocks:  # touch every page, so that each one is resident
        block[::4096] = b"\x01" * len(block[::4096])
    keep = blocks[-1]  # the top of the heap stays in use: free() alone cannot shrink it
    del blocks
    before = rss_mib()
    assert memtrim.release_free_memory() is True  # glibc here
    after = rss_mib()
    assert before - after > 0.8 * CHUNK * (CHUNKS - 1) / (1024 * 1024), (before, after)
    assert keep[0] == 1


def test_the_trims_come_after_start_up_then_every_minute() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(memtrim.run(sleep))
    assert waits == [memtrim.FIRST_TRIM_S, 60.0, 60.0, 60.0]
    assert memtrim.FIRST_TRIM_S == 10.0
