"""What a crew asks a running daemon: its control socket, and the CLI beside it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.kit.processes import cli
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


def crew(config: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`watchpost ARGS --config CONFIG` as a crew runs it beside the daemon, to its exit."""
    return cli(*args, "--config", str(config), cwd=config.parent, timeout=timeout)
