"""An RS-485 line at its real pace, between two pseudo-terminals.

A pseudo-terminal passes bytes at memory speed whatever baud rate its termios claims, so a
Modbus RTU exchange through one says nothing about bus timing. ``PacedLine`` joins two
pseudo-terminals like a null-modem cable that carries one character every ``bits/baud``
seconds (11 bits: start, 8 data, parity or a second stop, stop) on a half-duplex line, and
keeps the 3.5-character silence that ends an RTU frame before the next frame in either
direction starts:

- bytes written while the line still carries the same sender's frame continue that frame;
- any other bytes start a new frame, at the earliest 3.5 characters after the line fell idle;
- byte ``i`` of a frame reaches the far end at ``start + (i + 1) * character time``.

`python bench/linepace.py --baud 9600` prints ``{"a": PATH, "b": PATH}`` and carries the line
until SIGTERM or SIGINT (a process of its own keeps the pace free of another program's GIL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import threading
import time
import tty
from collections import deque
from types import FrameType

BITS_PER_CHAR = 11
SILENCE_CHARS = 3.5
MAX_WAIT = 0.05  # seconds the pump sleeps at most, so that close() is seen promptly


def char_time(baudrate: int, bits: int = BITS_PER_CHAR) -> float:
    """Seconds one character takes on the line."""
    return bits / baudrate


def transaction_time(request: int, response: int, baudrate: int) -> float:
    """Seconds of one request/response exchange at full pace, each frame followed by the
    3.5-character silence."""
    return (request + response + 2 * SILENCE_CHARS) * char_time(baudrate)


class PacedLine:
    """Two pseudo-terminal ends (``a_path``, ``b_path``) joined by a paced half-duplex line."""

    def __init__(
        self, baudrate: int, *, bits: int = BITS_PER_CHAR, silence_chars: float = SILENCE_CHARS
    ) -> None:
        self.baudrate = baudrate
        self.char = char_time(baudrate, bits)
        self.silence = silence_chars * self.char
        self._fds: list[int] = []
        self.a_master, a_slave = self._openpty()
        self.b_master, b_slave = self._openpty()
        self.a_path, self.b_path = os.ttyname(a_slave), os.ttyname(b_slave)
        # the slaves stay open here, so that a master never reads a hang-up between clients
        self._pending: deque[tuple[float, int, int]] = deque()  # (due, target fd, byte)
        self._free_at = 0.0  # when the line's last scheduled byte is through
        self._sender = -1  # the master whose frame the line carries last
        # (from a or b, written by the sender, start on the line, end on the line, bytes)
        self.frames: list[tuple[str, float, float, float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _openpty(self) -> tuple[int, int]:
        master, slave = os.openpty()
        self._fds += [master, slave]
        for fd in (master, slave):
            tty.setraw(fd)
        os.set_blocking(master, False)
        return master, slave

    def start(self) -> PacedLine:
        self._thread = threading.Thread(target=self.pump, name="paced-line", daemon=True)
        self._thread.start()
        return self

    def _schedule(self, source: int, data: bytes, now: float) -> None:
        target = self.b_master if source == self.a_master else self.a_master
        if source == self._sender and now < self._free_at:
            start = self._free_at  # the same frame goes on
            if self.frames:
                name, written, first, _end, count = self.frames[-1]
                self.frames[-1] = (
                    name,
                    written,
                    first,
                    start + len(data) * self.char,
                    count + len(data),
                )
        else:
            start = max(now, self._free_at + self.silence) if self._free_at else now
            self.frames.append(
                (
                    "a" if source == self.a_master else "b",
                    now,
                    start,
                    start + len(data) * self.char,
                    len(data),
                )
            )
        for i, byte in enumerate(data):
            self._pending.append((start + (i + 1) * self.char, target, byte))
        self._free_at = start + len(data) * self.char
        self._sender = source

    def _deliver(self, now: float) -> None:
        out: dict[int, bytearray] = {}
        while self._pending and self._pending[0][0] <= now:
            _due, target, byte = self._pending.popleft()
            out.setdefault(target, bytearray()).append(byte)
        for target, data in out.items():
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.write(target, data)  # a full buffer drops bytes, as a line nobody reads

    def pump(self) -> None:
        """Carry bytes until ``close``: the body of the line's thread (or process)."""
        masters = [self.a_master, self.b_master]
        while not self._stop.is_set():
            now = time.monotonic()
            self._deliver(now)
            wait = MAX_WAIT if not self._pending else max(0.0, self._pending[0][0] - now)
            try:
                readable, _w, _x = select.select(masters, [], [], min(wait, MAX_WAIT))
            except (OSError, ValueError):
                return
            for source in readable:
                try:
                    data = os.read(source, 4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                self._schedule(source, data, time.monotonic())

    def stop(self) -> None:
        """Ask ``pump`` to return (safe from a signal handler)."""
        self._stop.set()

    def turnarounds(self) -> dict[str, list[float]]:
        """Per sender, seconds from the end of the other side's frame to its next write."""
        out: dict[str, list[float]] = {"a": [], "b": []}
        for before, after in zip(self.frames, self.frames[1:], strict=False):
            if before[0] != after[0]:
                out[after[0]].append(after[1] - before[3])
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baud", type=int, default=9600)
    args = parser.parse_args()
    line = PacedLine(args.baud)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        line.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"a": line.a_path, "b": line.b_path}), flush=True)
    try:
        line.pump()
    finally:
        line.close()
        medians = {
            side: sorted(times)[len(times) // 2] if times else None
            for side, times in line.turnarounds().items()
        }
        print(json.dumps({"turnaround_s": medians, "frames": len(line.frames)}), flush=True)


if __name__ == "__main__":
    main()
