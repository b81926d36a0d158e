"""A serial line in a test: a real pseudo-terminal whose far end a thread serves.

class Echo(FarEnd):
    def on_bytes(self, chunk: bytes) -> None:
        self.send(chunk)

with Echo("echo") as line:  # the gateway opens line.path
    ...
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty


class FarEnd:
    """A raw pseudo-terminal pair; ``path`` is the end the gateway opens. A thread reads
    what the gateway writes and hands each chunk to ``on_bytes``; ``send`` writes back."""

    def __init__(self, name: str) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def on_bytes(self, chunk: bytes) -> None:
        """What the far end does with bytes from the gateway (nothing, unless overridden)."""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def __enter__(self) -> FarEnd:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):  # closed already: nothing to release
                os.close(fd)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _w, _x = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the test closed the line
                return
            self.on_bytes(chunk)
