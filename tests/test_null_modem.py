"""The simulator's RTU line takes the time a real line takes.

Real pseudo-terminals joined by the simulator's ``NullModem`` at 1200 baud 8N1: a frame
written at one end reaches the other end no sooner than its characters could cross the line
(a lower bound only; the machine may be slow, so no upper bound on the time).
"""

from __future__ import annotations

import asyncio
import os
import select
import time

from watchpost.drivers.line_watch import LineTiming
from watchpost.drivers.simulator.server import NullModem

TIMING = LineTiming(1200)  # 8.33 ms per character


async def carry(writes: list[bytes], *, towards_server: bool = True) -> tuple[bytes, float]:
    """Write each of ``writes`` at one end, read the other end until all bytes are there.

    Returns the bytes read and the seconds from the first write to the last byte.
    """
    modem = NullModem(TIMING)
    modem.start(asyncio.get_running_loop())
    near = os.open(modem.client_path if towards_server else modem.server_path, os.O_RDWR)
    far = os.open(modem.server_path if towards_server else modem.client_path, os.O_RDWR)
    expected = sum(len(w) for w in writes)
    got = b""
    try:
        start = time.monotonic()
        for data in writes:
            os.write(near, data)
        for _ in range(1000):  # bounded: 1000 x 10 ms
            readable, _, _ = select.select([far], [], [], 0)
            if readable:
                got += os.read(far, 4096)
            if len(got) >= expected:
                break
            await asyncio.sleep(0.01)
        return got, time.monotonic() - start
    finally:
        os.close(near)
        os.close(far)
        modem.close()


def test_a_frame_takes_its_characters_time_to_cross_the_line() -> None:
    frame = bytes(range(24))  # 24 characters: 200 ms at 1200 baud
    got, took = asyncio.run(carry([frame]))
    assert got == frame
    assert took >= len(frame) * TIMING.char


def test_frames_written_back_to_back_queue_behind_each_other_in_order() -> None:
    frames = [b"\x01" * 10, b"\x02" * 10, b"\x03" * 10]  # 250 ms together
    got, took = asyncio.run(carry(frames, towards_server=False))
    assert got == b"".join(frames)
    assert took >= 30 * TIMING.char
