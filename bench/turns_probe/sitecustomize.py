"""Loaded by the daemon when bench/perf_turns.py puts this folder on its PYTHONPATH: times
every callback of the event loop (thread CPU, ns) by what it runs, and each turn of the loop
and its `select`; at exit writes the totals to ``$WP_TURNS_OUT.<pid>`` (JSON)."""

from __future__ import annotations

import asyncio.base_events
import asyncio.events
import atexit
import json
import os
import selectors
import time
from pathlib import Path
from typing import Any

OUT = os.environ.get("WP_TURNS_OUT")


def _name(handle: asyncio.events.Handle) -> str:
    """A task's step by its outer and innermost awaited coroutine, else the callback."""
    callback: Any = handle._callback
    task = getattr(callback, "__self__", None)
    if task is not None and hasattr(task, "get_coro"):
        outer = inner = task.get_coro()
        while hasattr(getattr(inner, "cr_await", None), "cr_frame"):
            inner = inner.cr_await
        return f"task:{getattr(outer, '__qualname__', '?')}>{getattr(inner, '__qualname__', '?')}"
    return str(getattr(callback, "__qualname__", repr(callback)))


def _install(out: str) -> None:
    stats: dict[str, list[int]] = {}
    clock = time.thread_time_ns
    started = time.monotonic()

    def timed(key_of: Any, original: Any) -> Any:
        def wrapper(self: Any, *args: Any) -> Any:
            t0 = clock()
            try:
                return original(self, *args)
            finally:
                slot = stats.setdefault(key_of(self), [0, 0])
                slot[0] += 1
                slot[1] += clock() - t0

        return wrapper

    asyncio.events.Handle._run = timed(_name, asyncio.events.Handle._run)  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = timed(  # type: ignore[method-assign]
        lambda _loop: "=turn",
        asyncio.base_events.BaseEventLoop._run_once,
    )
    selectors.EpollSelector.select = timed(lambda _s: "=select", selectors.EpollSelector.select)  # type: ignore[method-assign]

    def dump() -> None:
        stats["=seconds"] = [0, int((time.monotonic() - started) * 1e9)]
        Path(f"{out}.{os.getpid()}").write_text(json.dumps(stats))

    atexit.register(dump)


if OUT:
    _install(OUT)
