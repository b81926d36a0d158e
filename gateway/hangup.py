"""SIGHUP while `watchpost run` starts: kept for later, never fatal.

Until the event loop installs its own handler (``app._serve``) the default action of
SIGHUP would end the process: a reload sent in the first half second of a start would stop
the gateway. ``hold()`` runs first thing in ``watchpost run`` and only notes the signal;
``take()`` tells the daemon, once it can reload, whether one came meanwhile.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_seen = threading.Event()


def _note(_signum: int, _frame: FrameType | None) -> None:
    _seen.set()


def hold() -> None:
    """Note SIGHUP instead of dying of it, until the daemon installs its handler."""
    signal.signal(signal.SIGHUP, _note)


def take() -> bool:
    """Whether a SIGHUP came while it was held (and forget it)."""
    seen = _seen.is_set()
    _seen.clear()
    return seen
