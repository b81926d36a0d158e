"""The paced RS-485 line of the benches (bench/linepace.py) keeps the line's real pace:
11 bits a character and a 3.5-character silence between frames. Bounds are generous: the
machine is shared, so only "not faster than the line" is strict."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "linepace.py"
    spec = importlib.util.spec_from_file_location("linepace", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


linepace = _load()


@contextlib.contextmanager
def line_ends(baudrate: int) -> Iterator[tuple[object, int, int]]:
    line = linepace.PacedLine(baudrate).start()
    fds = []
    try:
        for path in (line.a_path, line.b_path):
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(fd)
            fds.append(fd)
        yield line, fds[0], fds[1]
    finally:
        for fd in fds:
            os.close(fd)
        line.close()


def receive(fd: int, count: int, timeout: float = 5.0) -> tuple[bytes, float, float]:
    """Read ``count`` bytes; return them with the arrival times of the first and last."""
    data = b""
    first = 0.0
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    while len(data) < count and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, count - len(data))
        except BlockingIOError:
            time.sleep(0.0002)
            continue
        if not data:
            first = time.monotonic()
        data += chunk
    return data, first, time.monotonic()


@pytest.mark.parametrize("baudrate", [9600, 19200])
def test_a_frame_takes_11_bits_a_character(baudrate):
    char = 11 / baudrate
    frame = bytes(range(200))
    with line_ends(baudrate) as (_line, a, b):
        sent = time.monotonic()
        os.write(a, frame)
        got, _first, last = receive(b, len(frame))
    assert got == frame
    assert last - sent >= 0.95 * len(frame) * char
    assert last - sent <= len(frame) * char + 1.0  # a loaded machine may be late, never early


@pytest.mark.parametrize("baudrate", [9600, 19200])
def test_an_answer_starts_after_a_silence_of_three_and_a_half_characters(baudrate):
    char = 11 / baudrate
    with line_ends(baudrate) as (line, a, b):
        os.write(a, b"\x01\x03\x00\x00\x00\x7d\x85\xeb")  # a request
        request, _first, request_end = receive(b, 8)
        os.write(b, bytes(255))  # answered at once, as fast as a device ever could
        answer, answer_first, _last = receive(a, 255)
        os.write(a, b"\x01\x03\x00\x00\x00\x7d\x85\xeb")  # the next request, at once
        _again, again_first, _end = receive(b, 8)
        frames = list(line.frames)
    assert len(request) == 8
    assert len(answer) == 255
    # the schedule: each frame starts 3.5 characters after the one before it ends
    assert [f[0] for f in frames] == ["a", "b", "a"]
    for before, after in itertools.pairwise(frames):
        assert after[2] - before[3] >= 3.5 * char - 1e-9
    # what the far ends see: no byte before its time on the line (a byte may be seen late)
    assert request_end >= frames[0][3] - 1e-3
    assert answer_first >= frames[0][3] + 4.5 * char - 1e-3
    assert again_first >= frames[1][3] + 4.5 * char - 1e-3
