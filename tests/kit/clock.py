"""One fake clock for every test where time matters."""

from __future__ import annotations

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, in ms: a stamp far from any epoch edge


class FakeClock:
    """Now, in UTC epoch milliseconds, moved only by the test.

    Pass the clock itself where a part takes ``now_ms`` (a ``clock.NowMs``), and
    ``clock.seconds`` where it takes seconds (``time.monotonic``-like).
    """

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def seconds(self) -> float:
        """Now in seconds, for parts that count seconds."""
        return self.ms / 1000

    def advance(self, ms: int) -> int:
        """Move on by ``ms``; the new now."""
        self.ms += ms
        return self.ms
