"""Time stamps on a box without a real-time clock.

A Raspberry Pi boots with whatever time it saved last (or 1970) and learns the real time
from NTP some moment later, when the network allows. Until then every stamp is taken from
the boot-time monotonic clock plus the wall-clock offset seen at start, so stamps of one
boot stay ordered and evenly spaced even when the wall clock jumps. Once the kernel says
the clock is synchronised, ``watch()`` tells the store how far the unsynced stamps of this
boot were off (``delta_ms``); the store shifts them before they are sent.

    clock = Clock()                       # probe: the kernel's NTP state (adjtimex)
    ts = clock.now_ms()                   # the poller's and the alarm engine's stamp
    clock.synced                          # what `status` says: "synced" / "unsynced"
    monotonic_ms()                        # what durations are measured with (never stamps)
    wall_ms()                             # the plain wall clock: parts run without a Clock

One clock is passed in: the daemon makes one ``Clock`` and hands its ``now_ms`` (a
``NowMs``) to every part that stamps; a part built without one (a tool, a test) falls back
to ``wall_ms``, the only other "now in ms" of the gateway.
    await clock.watch(store)              # a task: on sync, store.correct_clock(...)

No exceptions of its own: a probe that fails counts as "not synchronised".
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
import uuid
from collections.abc import Callable
from gettext import gettext as _
from pathlib import Path
from typing import Protocol

from watchpost.ticks import sleep_to_tick

log = logging.getLogger(__name__)

TEXT_SYNCED = _("clock synchronised: stamps of boot %s taken before now shift by %+d ms")

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library runs ldconfig in a child process: once per process, not once per probe
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def kernel_synced() -> bool:
    """True when the kernel's clock is NTP-synchronised (adjtimex, read-only, no privilege)."""
    libc = _libc()
    if libc is None:
        return False
    try:
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: only read
        state = libc.adjtimex(timex)
    except AttributeError:
        return False
    return state not in (-1, _TIME_ERROR)


NowMs = Callable[[], int]
"""A source of time stamps, UTC epoch milliseconds: ``Clock.now_ms``, ``wall_ms`` or a fake."""


def wall_ms() -> int:
    """Milliseconds of the wall clock, UTC epoch (trusted or not: see ``Clock``)."""
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    """Milliseconds on the monotonic clock. Durations (alarm delays, shelves, rates, stuck
    spells) are measured with it, so that a wall clock step neither stretches nor cuts them;
    the wall clock only stamps."""
    return time.monotonic_ns() // 1_000_000


def always_synced() -> bool:
    """The probe for boxes with an RTC or a clock kept by other means."""
    return True


def read_boot_id() -> str:
    """The kernel's id of this boot (a fresh random id where there is none)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


class ClockCorrector(Protocol):
    """What the clock needs of the store: shift the unsynced stamps of one boot."""

    def correct_clock(self, boot_id: str, delta_ms: int) -> object: ...


class Clock:
    """Stamps in UTC epoch ms, and whether they can be trusted."""

    def __init__(
        self,
        probe: Callable[[], bool] = kernel_synced,
        *,
        boot_id: str | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._wall = wall
        self._mono = monotonic
        self.boot_id = boot_id or read_boot_id()
        self._synced = probe()
        # wall - monotonic at start: the base of every unsynced stamp of this boot
        self._base_ms = round((wall() - monotonic()) * 1000)

    @property
    def synced(self) -> bool:
        """Whether stamps taken now are real UTC."""
        return self._synced

    @property
    def state(self) -> str:
        """``"synced"`` or ``"unsynced"``: the `clock` field of `status`."""
        return "synced" if self._synced else "unsynced"

    def now_ms(self) -> int:
        """The time stamp to put on a sample or an event now."""
        if self._synced:
            return round(self._wall() * 1000)
        return self._base_ms + round(self._mono() * 1000)

    def check(self) -> int | None:
        """Probe once; on the change to synced return how far unsynced stamps were off (ms)."""
        if self._synced or not self._probe():
            return None
        delta = round((self._wall() - self._mono()) * 1000) - self._base_ms
        self._synced = True
        return delta

    async def watch(
        self,
        store: ClockCorrector,
        *,
        interval: float = 2.0,
        on_change: Callable[[], object] | None = None,
    ) -> None:
        """Until cancelled: probe every ``interval`` s; on sync, correct the store's stamps."""
        while not self._synced:
            await sleep_to_tick(interval)  # with the other periodic loops
            delta = self.check()
            if delta is not None:
                log.warning(TEXT_SYNCED, self.boot_id, delta)
                await asyncio.to_thread(store.correct_clock, self.boot_id, delta)
                if on_change is not None:
                    on_change()
