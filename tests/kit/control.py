"""The crews' control socket of a running daemon, as a test asks it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from watchpost.control import ControlError, request


def wait_status(sock: Path, timeout: float = 30.0, every: float = 0.1) -> dict[str, Any]:
    """The daemon's `status` once its socket answers; the last ControlError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(request(sock, "status", timeout=2))
        except ControlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(every)
