"""Polling: every bus in parallel, one transaction at a time on each, samples with a quality.

A device that stops answering is polled less often (capped backoff) so that the other
devices on its RS-485 line keep their rate; every attempt still yields `comm` samples.

Modbus devices are read by ``DeviceReader`` (a read plan over registers); devices of the
other bus types (DL/T 645 meters, line-oriented instruments) read all their points
themselves (a ``PointSource`` from their bus) and ``SourceReader`` keeps their health.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from gettext import gettext as _
from typing import TypeVar

from watchpost.backoff import Backoff
from watchpost.clock import NowMs, monotonic_ms
from watchpost.drivers.base import (
    AnswerError,
    Bus,
    BusError,
    CommError,
    DeviceError,
    PointSource,
    ReadRequest,
    SourceBus,
)
from watchpost.drivers.codec import Reader, reader
from watchpost.drivers.planner import PlannedRead, plan_reads
from watchpost.samples import Quality, Sample
from watchpost.settings import DeviceBase, DeviceConfig, PointConfig
from watchpost.ticks import poll_instant

log = logging.getLogger(__name__)

SampleSink = Callable[[Sequence[Sample]], None]
T = TypeVar("T")
# how the poll path decodes one point: name, index in the answer, register reader (None for
# a bit), scale, offset, plausible range (low, high) or None
Decoding = tuple[str, int, Reader | None, float, float, tuple[float, float] | None]

ILLEGAL_DATA_ADDRESS = 2
# A device that stops answering is polled again after a capped, jittered backoff from
# DOWN_RECHECK seconds up to DOWN_RECHECK_CAP, so its timeouts do not eat its bus.
DOWN_RECHECK = 5.0
DOWN_RECHECK_CAP = 60.0

TEXT_DEVICE_DOWN = _("device %s on bus %s: %s (polled less often until it answers)")
TEXT_DEVICE_BAD = _("device %s on bus %s: %s (its samples are bad until it answers right)")
TEXT_DEVICE_UP = _("device %s on bus %s answers again")
TEXT_SPLIT = _(
    "device %s: %s covers an address the device refuses; reading its points one by one from now on"
)


@dataclass
class DeviceHealth:
    """Communication state of one device, published in `health` and shown by `status`."""

    state: str = "unknown"  # unknown, ok, comm, bad
    last_error: str = ""
    last_good_ts: int | None = None
    polls: int = 0
    failures: int = 0
    requests: int = 0


@dataclass
class DeviceReader:
    """Reads one device: its read plan, decoding and the quality of every sample."""

    device: DeviceConfig
    now_ms: NowMs
    health: DeviceHealth = field(default_factory=DeviceHealth)
    mono_ms: NowMs = monotonic_ms

    def __post_init__(self) -> None:
        self.plan: list[PlannedRead[PointConfig]] = plan_reads(
            self.device.unit, self.device.points, self.device.max_gap
        )
        # per planned read (by id, holding the read so that its id stays its own)
        self._decodings: dict[int, tuple[PlannedRead[PointConfig], list[Decoding]]] = {}

    async def poll(self, bus: Bus) -> list[Sample]:
        """One poll cycle; never raises for bus trouble, which becomes sample quality."""
        samples: list[Sample] = []
        comm_down: CommError | None = None
        errors: list[str] = []
        for planned in list(self.plan):
            if comm_down is not None:  # the device is not answering: do not wait again
                samples.extend(self._all(planned, Quality.COMM))
                continue
            try:
                raw = await self._read(bus, planned.request)
            except CommError as exc:
                comm_down = exc
                samples.extend(self._all(planned, Quality.COMM))
            except DeviceError as exc:
                if exc.code == ILLEGAL_DATA_ADDRESS and len(planned.points) > 1:
                    self._split(planned)
                errors.append(str(exc))
                samples.extend(self._all(planned, Quality.BAD))
            except AnswerError as exc:
                errors.append(str(exc))
                samples.extend(self._all(planned, Quality.BAD))
            else:
                samples.extend(self._decode(planned, raw))
        self._record(comm_down, errors, bus)
        return samples

    async def _read(self, bus: Bus, request: ReadRequest) -> list[int] | list[bool]:
        # a device already known to be down gets one attempt, not its retries, per poll
        attempts = 1 if self.health.state == "comm" else self.device.retries + 1
        for attempt in range(attempts):
            self.health.requests += 1
            try:
                return await bus.read(request, timeout=self.device.timeout)
            except CommError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _decode(
        self, planned: PlannedRead[PointConfig], raw: list[int] | list[bool]
    ) -> list[Sample]:
        ts, mono = self.now_ms(), self.mono_ms()
        good, bad, isfinite = Quality.GOOD, Quality.BAD, math.isfinite
        samples = []
        for name, index, read, scale, shift, limits in self._decodings_of(planned):
            value: float | None
            if read is None:
                value = 1.0 if raw[index] else 0.0
            else:
                value = read(raw, index) * scale + shift
                if not isfinite(value):
                    value = None
            if value is None or (limits is not None and not limits[0] <= value <= limits[1]):
                samples.append(Sample(name, ts, value, bad, mono))
            else:
                samples.append(Sample(name, ts, value, good, mono))
        return samples

    def _decodings_of(self, planned: PlannedRead[PointConfig]) -> list[Decoding]:
        entry = self._decodings.get(id(planned))
        if entry is None or entry[0] is not planned:
            entry = (
                planned,
                [
                    (
                        point.name,
                        offset,
                        None if point.type == "bool" else reader(point.type, point.word_order),
                        point.scale,
                        point.offset,
                        point.range,
                    )
                    for point, offset in planned.points
                ],
            )
            self._decodings[id(planned)] = entry
        return entry[1]

    def _all(self, planned: PlannedRead[PointConfig], quality: Quality) -> list[Sample]:
        ts, mono = self.now_ms(), self.mono_ms()
        return [Sample(point.name, ts, None, quality, mono) for point, _offset in planned.points]

    def _split(self, planned: PlannedRead[PointConfig]) -> None:
        log.warning(TEXT_SPLIT, self.device.name, planned.request)
        index = self.plan.index(planned)
        singles = [plan_reads(self.device.unit, [point], 0)[0] for point, _ in planned.points]
        self.plan[index : index + 1] = singles
        self._decodings.pop(id(planned), None)

    def _record(self, comm_down: CommError | None, errors: list[str], bus: Bus) -> None:
        record_poll(
            self.health,
            None if comm_down is None else str(comm_down),
            errors,
            device=self.device.name,
            bus=bus.name,
            now_ms=self.now_ms(),
        )

    def longest_poll(self) -> float:
        """Seconds one poll may take when every request times out on every retry."""
        return len(self.plan) * self.device.timeout * (self.device.retries + 1)


def record_poll(
    health: DeviceHealth,
    comm_error: str | None,
    errors: list[str],
    *,
    device: str,
    bus: str,
    now_ms: int,
) -> None:
    """Count one poll in ``health``; log a change of state once, then stay quiet."""
    health.polls += 1
    was = health.state
    if comm_error is not None:
        health.failures += 1
        health.state, health.last_error = "comm", comm_error
    elif errors:
        health.state, health.last_error = "bad", errors[0]
    else:
        health.state, health.last_error = "ok", ""
        health.last_good_ts = now_ms
    if health.state != was:
        if health.state == "ok" and was != "unknown":
            log.warning(TEXT_DEVICE_UP, device, bus)
        elif health.state == "comm":
            log.error(TEXT_DEVICE_DOWN, device, bus, health.last_error)
        elif health.state == "bad":
            log.error(TEXT_DEVICE_BAD, device, bus, health.last_error)


class SourceReader:
    """Reads one device whose protocol reads all its points itself, and keeps its health."""

    def __init__(self, device: DeviceBase, source: PointSource, now_ms: NowMs) -> None:
        self.device = device
        self.source = source
        self.now_ms = now_ms
        self.health = DeviceHealth()

    def longest_poll(self) -> float:
        return self.source.longest_poll()

    async def poll(self, bus: Bus) -> list[Sample]:
        """One poll cycle; never raises for bus trouble, which becomes sample quality."""
        outcome = await self.source.poll(down=self.health.state == "comm")
        self.health.requests += outcome.requests
        record_poll(
            self.health,
            outcome.comm_error,
            outcome.errors,
            device=self.device.name,
            bus=bus.name,
            now_ms=self.now_ms(),
        )
        return outcome.samples


AnyReader = DeviceReader | SourceReader


def reader_for(device: DeviceBase, bus: Bus, now_ms: NowMs) -> AnyReader:
    """The reader of ``device`` on ``bus``: by registers for Modbus, else the bus's own."""
    if isinstance(device, DeviceConfig):
        return DeviceReader(device, now_ms)
    if isinstance(bus, SourceBus):
        return SourceReader(device, bus.source(device, now_ms), now_ms)
    raise TypeError(f"device {device.name}: bus {bus.name} cannot read a {type(device).__name__}")


class BusScheduler:
    """One bus: its devices on their schedules, and the lock every transaction takes."""

    def __init__(self, bus: Bus, readers: Sequence[AnyReader], sink: SampleSink) -> None:
        self.bus = bus
        self.readers = list(readers)
        self._sink = sink
        self._lock = asyncio.Lock()
        self.cycles = 0
        self._busy_since: float | None = None
        # the longest one poll may take when every request times out on every retry
        self._longest_poll = max((r.longest_poll() for r in self.readers), default=0.0)

    def stuck(self, now: float, grace: float = 10.0) -> bool:
        """True when a poll has run far longer than its timeouts allow: the task is wedged."""
        return self._busy_since is not None and now - self._busy_since > self._longest_poll + grace

    async def transact(self, work: Callable[[Bus], Awaitable[T]]) -> T:
        """Run ``work`` between two polls, never overlapping another transaction."""
        async with self._lock:
            return await work(self.bus)

    async def run(self) -> None:
        """Poll each device at once, then on the polls' grid (``ticks.poll_instant``): just
        after each tick for whole-second intervals, when the tick's work is done and the loop
        and the store are warm from it."""
        loop = asyncio.get_running_loop()
        backoffs = {
            id(r): Backoff(
                initial=max(DOWN_RECHECK, r.device.interval),
                cap=max(DOWN_RECHECK_CAP, r.device.interval),
            )
            for r in self.readers
        }
        due = {id(r): loop.time() for r in self.readers}
        try:
            if not self.readers:  # a bus that only carries outputs: serve transact() alone
                await asyncio.Event().wait()
            while True:
                reader = min(self.readers, key=lambda r: due[id(r)])
                delay = due[id(reader)] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with self._lock:
                    self._busy_since = loop.time()
                    samples = await reader.poll(self.bus)
                    self._busy_since = None
                self.cycles += 1
                self._sink(samples)
                now = loop.time()
                interval = reader.device.interval
                if reader.health.state == "comm":
                    # never sooner than DOWN_RECHECK (the backoff's full jitter alone could
                    # give a dead device its next timeout at once), jittered up to the bound
                    backoff = backoffs[id(reader)]
                    recheck = max(backoff.initial, backoff.next_delay())
                    due[id(reader)] = poll_instant(now + interval + recheck, interval)
                else:
                    backoffs[id(reader)].reset()
                    next_due = poll_instant(due[id(reader)] + interval, interval)
                    # after an overrun, keep the rhythm instead of firing a burst of late polls
                    due[id(reader)] = (
                        next_due if next_due > now else poll_instant(now + interval, interval)
                    )
        finally:
            await self.bus.close()


class Poller:
    """All buses of the gateway, each polled by its own task."""

    def __init__(self, schedulers: Sequence[BusScheduler]) -> None:
        self.schedulers = {scheduler.bus.name: scheduler for scheduler in schedulers}

    def stuck(self) -> list[str]:
        """Names of the buses whose poll has wedged."""
        now = asyncio.get_running_loop().time()
        return [name for name, scheduler in self.schedulers.items() if scheduler.stuck(now)]

    def devices(self) -> dict[str, DeviceHealth]:
        return {
            reader.device.name: reader.health
            for scheduler in self.schedulers.values()
            for reader in scheduler.readers
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, scheduler in self.schedulers.items():
                group.create_task(scheduler.run(), name=f"bus:{name}")


__all__ = [
    "BusError",
    "BusScheduler",
    "DeviceHealth",
    "DeviceReader",
    "Poller",
    "SourceReader",
    "reader_for",
]
