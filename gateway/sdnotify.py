"""Tell systemd how the daemon is doing (sd_notify), and feed its watchdog only while alive.

``Notifier`` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1`` as datagrams
to ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``). Without
``$NOTIFY_SOCKET`` (run by hand, in tests) every call does nothing.

``Watchdog`` pings systemd's watchdog only while every registered liveness check (the poll
loop, the store writer, ...) has reported progress within the watchdog interval, so a wedged
loop gets the service killed and restarted instead of being covered by a healthy timer::

    notifier = Notifier.from_environment()
    watchdog = Watchdog.from_environment(notifier)  # interval from $WATCHDOG_USEC
    poll = watchdog.register("poll loop")         # each loop beats at least once per interval,
    writer = watchdog.register("store writer")    # also when it has nothing to do
    tasks.create_task(watchdog.run(), name="watchdog")
    notifier.ready(status="polling 12 devices")
    ...  poll.beat()  ...  writer.beat()  ...
    notifier.stopping()

Sending never raises: systemd's view of the service is not worth crashing a safety daemon
for. A failure is logged once, and again only after a send has worked in between.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from gettext import gettext as _

log = logging.getLogger(__name__)

TEXT_SEND_FAILED = _("sd_notify to {address}: {error} (systemd may consider the service hung)")
TEXT_STALLED = _("watchdog not fed: no progress from {names} for over {interval:.1f}s")
TEXT_RECOVERED = _("watchdog fed again: every liveness check reports progress")


class Notifier:
    """A client of systemd's notification socket; a no-op when there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for ``$NOTIFY_SOCKET`` (unset or empty: one that does nothing)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if systemd got them."""
        if self.address is None:
            return False
        for line in assignments:
            if "\n" in line or "=" not in line:
                raise ValueError(f"not a single KEY=value line: {line!r}")
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, target)
        except OSError as exc:
            if not self._failing:
                log.warning(TEXT_SEND_FAILED.format(address=self.address, error=exc))
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete: systemd marks the service active."""
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        """A one-line state shown by ``systemctl status``."""
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        """Reset systemd's watchdog timer; prefer ``Watchdog`` to calling this directly."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line, whatever the caller passed


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds of ``$WATCHDOG_USEC`` if the watchdog is on and meant for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # inherited from a parent: the watchdog is not ours to feed
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


@dataclass(slots=True)
class Liveness:
    """One thing that must keep making progress; call ``beat()`` whenever it does."""

    name: str
    clock: Callable[[], float]
    last: float

    def beat(self) -> None:
        self.last = self.clock()


class Watchdog:
    """Pings systemd's watchdog while every registered check has beaten within the interval.

    ``interval`` is the watchdog timeout in seconds; ``None`` turns the feeder off. Pings are
    sent every half interval, as sd_watchdog_enabled(3) recommends.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        interval: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval is not None and not interval > 0:
            raise ValueError(f"watchdog interval must be positive seconds, not {interval!r}")
        self.notifier = notifier
        self.interval = interval
        self._clock = clock
        self._checks: dict[str, Liveness] = {}
        self._stalled: frozenset[str] = frozenset()

    @classmethod
    def from_environment(
        cls,
        notifier: Notifier,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> Watchdog:
        """The feeder for ``$WATCHDOG_USEC`` (off when systemd set no watchdog for us)."""
        return cls(notifier, interval=watchdog_interval(environ), clock=clock)

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled and self.interval is not None

    def register(self, name: str) -> Liveness:
        """A new liveness check; it counts as fresh from now on."""
        if name in self._checks:
            raise ValueError(f"liveness check {name!r} is registered twice")
        check = Liveness(name, self._clock, self._clock())
        self._checks[name] = check
        return check

    def unregister(self, check: Liveness) -> None:
        """Stop watching a check (its loop has ended on purpose)."""
        self._checks.pop(check.name, None)

    def stalled(self) -> list[str]:
        """Names of the checks that have not beaten within the interval."""
        if self.interval is None:
            return []
        now = self._clock()
        return sorted(c.name for c in self._checks.values() if now - c.last > self.interval)

    def tick(self) -> bool:
        """Ping if every check is fresh; return whether a ping was sent."""
        if not self.enabled:
            return False
        stalled = frozenset(self.stalled())
        if stalled != self._stalled:
            if stalled:
                text = TEXT_STALLED.format(names=", ".join(sorted(stalled)), interval=self.interval)
                log.error(text)
                self.notifier.status(text)
            else:
                log.warning(TEXT_RECOVERED)
            self._stalled = stalled
        if stalled:
            return False
        return self.notifier.watchdog()

    async def run(self) -> None:
        """Feed the watchdog until cancelled; returns at once if it is off."""
        if not self.enabled or self.interval is None:
            return
        while True:
            self.tick()
            await asyncio.sleep(self.interval / 2)
