"""An answer that arrives before the gateway's request could have ended on the line.

The unit asked cannot start its answer before the request's last character; bytes received
sooner were sent by someone else. A unit that skips the 3.5-character silence is tolerated.
The clock is a plain callable moved by the test.
"""

from __future__ import annotations

import pytest

from watchpost.drivers.line_watch import LineTiming, LineWatch

REQUEST = b"\x01\x03\x00\x00\x00\x01\x84\x0a"  # 8 bytes: unit 1, holding 0+1
ANSWER = b"\x01\x03\x02\x00\x96\x38\x2a"


class Clock:
    """Seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer_at(timing: LineTiming, seconds: float) -> str | None:
    """Send REQUEST at t=0, receive ANSWER at ``seconds``; what ``suspect()`` says."""
    clock = Clock()
    watch = LineWatch("rs485", timing=timing, monotonic=clock)
    watch.begin(1)
    watch.trace(True, REQUEST)
    clock.now = seconds
    assert watch.trace(False, ANSWER) == ANSWER  # the hook passes the bytes on unchanged
    watch.end(timed_out=False)
    return watch.suspect()


def test_character_time_counts_start_data_parity_and_stop_bits() -> None:
    assert LineTiming(1200).char == pytest.approx(10 / 1200)
    assert LineTiming(9600, 8, "E", 2).char == pytest.approx(12 / 9600)
    assert LineTiming(9600, 7, "N", 1).char == pytest.approx(9 / 9600)


def test_at_1200_baud_an_answer_10_ms_after_the_request_began_is_foreign() -> None:
    # the request alone takes 8 x 8.33 ms = 66.7 ms on the line
    why = answer_at(LineTiming(1200), 0.010)
    assert why is not None
    assert "another master" in why
    assert "56.7 ms before the request could have ended" in why


def test_at_1200_baud_an_answer_200_ms_after_the_request_began_is_trusted() -> None:
    assert answer_at(LineTiming(1200), 0.200) is None


def test_at_1200_baud_the_request_itself_is_the_bound_not_the_silence() -> None:
    # the request's last character is through at 66.7 ms; a unit answering at once after it,
    # without the 3.5-character silence (95.8 ms), is still trusted
    assert answer_at(LineTiming(1200), 0.060) is not None
    assert answer_at(LineTiming(1200), 0.075) is None


def test_at_115200_baud_the_bound_is_the_request_time() -> None:
    # 8 characters take 0.69 ms
    assert answer_at(LineTiming(115200), 0.0005) is not None
    assert answer_at(LineTiming(115200), 0.0008) is None


def test_without_line_timing_answers_are_not_timed() -> None:
    clock = Clock()
    watch = LineWatch("rs485", monotonic=clock)
    watch.begin(1)
    watch.trace(True, REQUEST)
    watch.trace(False, ANSWER)
    watch.end(timed_out=False)
    assert watch.suspect() is None


def test_an_early_answer_keeps_the_line_suspect_for_the_quiet_period() -> None:
    clock = Clock()
    watch = LineWatch("rs485", timing=LineTiming(1200), monotonic=clock)
    watch.begin(1)
    watch.trace(True, REQUEST)
    clock.now = 0.001
    watch.trace(False, ANSWER)
    watch.end(timed_out=False)
    clock.now = 5.0  # honest transactions after it do not clear the suspicion
    watch.begin(1)
    watch.trace(True, REQUEST)
    clock.now = 5.2
    watch.trace(False, ANSWER)
    watch.end(timed_out=False)
    assert watch.suspect() is not None
    clock.now = 11.0
    assert watch.suspect() is None
