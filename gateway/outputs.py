"""Local outputs: a sounder, a beacon, a relay that cuts power, driven by alarms on the spot.

    [[outputs]]
    name = "sounder_face_1"
    device = "face-station"          # or: bus = "rs485", unit = 7
    table = "coil"
    address = 0
    points = ["ch4_face_1"]          # default: every point
    levels = ["alarm", "critical"]   # the default
    until = "ack"                    # a sounder falls silent on acknowledgement

An output is on while at least one alarm that drives it is raised and not shelved (with
``until = "ack"``: and not yet acknowledged). The alarm engine tells the driver of every
event without waiting; the driver writes each change between two polls of the bus (through
its scheduler, so transactions never overlap), reads it back, and on a failed or wrong write
raises the output's own ``output_fault`` alarm and tries again with backoff until it holds.
The poll path never waits on an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from gettext import gettext as _
from typing import Any, Protocol, TypeVar

from watchpost.alarms import AlarmEngine, AlarmEvent
from watchpost.backoff import Backoff
from watchpost.drivers.base import Bus, BusError, ReadRequest, Table
from watchpost.settings import Level, OutputConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

TEXT_NO_SCHEDULER = _("output {name!r}: bus {bus!r} has no scheduler")
TEXT_NO_FAULT_ALARM = _(
    "output {name!r}: the alarm engine has no {name}/output_fault alarm "
    "(build it with outputs=fault_levels(...))"
)
TEXT_WRITE_FAILED = _("writing {value} to {what} failed: {error}")
TEXT_UNVERIFIED = _("{what} reads back {got} after writing {value}")
TEXT_FAULT = _("output %s: %s (retrying)")
TEXT_RECOVERED = _("output %s: verified again")


def fault_levels(outputs: Iterable[OutputConfig]) -> dict[str, Level]:
    """What AlarmEngine(outputs=...) takes: each output's name and fault level."""
    return {output.name: output.fault_level for output in outputs}


class Transactor(Protocol):
    """What the driver needs of a bus scheduler (poller.BusScheduler)."""

    async def transact(self, work: Callable[[Bus], Awaitable[T]]) -> T: ...


class DeviceRef(Protocol):
    """What an output needs of a device: where to write (read-only, as config models are)."""

    @property
    def name(self) -> str: ...
    @property
    def bus(self) -> str: ...
    @property
    def unit(self) -> int: ...


class _Output:
    __slots__ = (
        "bus",
        "config",
        "desired",
        "driving",
        "fault",
        "name",
        "scheduler",
        "unit",
        "verified",
        "verified_ts",
        "wake",
    )

    def __init__(self, config: OutputConfig, bus: str, unit: int, scheduler: Transactor) -> None:
        self.config = config
        self.name = config.name
        self.bus = bus
        self.unit = unit
        self.scheduler = scheduler
        self.driving: dict[str, bool] = {}  # alarm id -> acknowledged
        self.desired = False
        self.verified: bool | None = None  # the state last read back, None before the first
        self.verified_ts: float | None = None
        self.fault: str | None = None
        self.wake = asyncio.Event()

    def drives(self, point: str, kind: str, level: str) -> bool:
        config = self.config
        if kind == "output_fault" and (point == self.name or kind not in config.kinds):
            return False
        return (
            level in config.levels
            and (not config.points or point in config.points)
            and (not config.kinds or kind in config.kinds)
        )

    def want(self) -> bool:
        if self.config.until == "ack":
            return not all(self.driving.values())
        return bool(self.driving)


class OutputDriver:
    """Drives every configured output from alarm events; run() is the app's task.

    Output faults are alarms of the engine and reach its listeners; give ``emit`` only if no
    listener stores them.
    """

    def __init__(
        self,
        outputs: Sequence[OutputConfig],
        *,
        engine: AlarmEngine,
        devices: Iterable[DeviceRef],
        schedulers: Mapping[str, Transactor],
        emit: Callable[[AlarmEvent], None] | None = None,
        retry_cap: float = 30.0,
    ) -> None:
        by_name = {device.name: device for device in devices}
        known = set(engine.alarm_ids())
        self._outputs: list[_Output] = []
        for config in outputs:
            if config.device is not None:
                device = by_name[config.device]
                bus, unit = device.bus, device.unit
            else:
                assert config.bus is not None
                assert config.unit is not None
                bus, unit = config.bus, config.unit
            if bus not in schedulers:
                raise ValueError(TEXT_NO_SCHEDULER.format(name=config.name, bus=bus))
            if f"{config.name}/output_fault" not in known:
                raise ValueError(TEXT_NO_FAULT_ALARM.format(name=config.name))
            self._outputs.append(_Output(config, bus, unit, schedulers[bus]))
        self._engine = engine
        self._emit = emit
        self._retry_cap = retry_cap
        for entry in engine.active():
            self._update(
                entry["alarm"],
                entry["point"],
                entry["kind"],
                entry["level"],
                active=entry["raised"],
                shelved=entry["shelved"],
                acked=entry["acked"],
            )
        engine.add_listener(self.notify)

    # -- called from the engine, on the poll path: never waits ---------------------------------

    def notify(self, event: AlarmEvent) -> None:
        """Take one alarm event into account; wakes the outputs it changes."""
        if not event.test:
            self._update(
                event.alarm,
                event.point,
                event.kind,
                event.level,
                active=event.active,
                shelved=event.shelved,
                acked=event.acked,
            )

    def _update(
        self,
        alarm: str,
        point: str,
        kind: str,
        level: str,
        *,
        active: bool,
        shelved: bool,
        acked: bool,
    ) -> None:
        for output in self._outputs:
            if not output.drives(point, kind, level):
                continue
            if active and not shelved:
                output.driving[alarm] = acked
            else:
                output.driving.pop(alarm, None)
            want = output.want()
            if want != output.desired:
                output.desired = want
                output.wake.set()

    # -- the task ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Assert every output's state at start, then follow the alarms; runs until cancelled."""
        if not self._outputs:
            return
        async with asyncio.TaskGroup() as group:
            for output in self._outputs:
                group.create_task(self._drive(output), name=f"output:{output.name}")

    def status(self) -> dict[str, dict[str, Any]]:
        """Per output: wanted state, state last read back, fault; for `status` and `health`."""
        return {
            o.name: {
                "on": o.desired,
                "verified": o.verified,
                "fault": o.fault,
                "alarms": sorted(o.driving),
            }
            for o in self._outputs
        }

    async def _drive(self, output: _Output) -> None:
        backoff = Backoff(initial=min(1.0, self._retry_cap), cap=self._retry_cap)
        loop = asyncio.get_running_loop()
        output.wake.set()  # first pass: a relay may have been left on by a crash
        read_first = True
        while True:
            if not output.wake.is_set():
                delay = backoff.next_delay() if output.fault else (output.config.refresh or None)
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await output.wake.wait()
                read_first = not output.wake.is_set() and output.fault is None  # a refresh
            output.wake.clear()
            desired = output.desired
            ok, detail, got = await self._apply(output, desired, read_first=read_first)
            read_first = False
            if ok:
                output.verified, output.verified_ts = desired, loop.time()
                if output.fault is not None:
                    log.warning(TEXT_RECOVERED, output.name)
                output.fault = None
                backoff.reset()
            else:
                if output.fault is None:
                    log.error(TEXT_FAULT, output.name, detail)
                output.fault = detail
                output.verified = None if got is None else got == output.config.on
            for event in self._engine.report_output(output.name, ok=ok, detail=detail, value=got):
                if self._emit is not None:
                    self._emit(event)

    async def _apply(
        self, output: _Output, on: bool, *, read_first: bool
    ) -> tuple[bool, str, int | None]:
        """Write ``on`` and read it back: (verified, what went wrong, value read back)."""
        config = output.config
        table = Table(config.table)
        value = config.on if on else config.off
        request = ReadRequest(output.unit, table, config.address, 1)
        what = f"{config.table} {config.address} of unit {output.unit} on bus {output.bus}"

        async def work(bus: Bus) -> int:
            if read_first:
                current = int((await bus.read(request, timeout=config.timeout))[0])
                if current == value:
                    return current
            await bus.write(output.unit, table, config.address, [value], timeout=config.timeout)
            return int((await bus.read(request, timeout=config.timeout))[0])

        try:
            got = await output.scheduler.transact(work)
        except BusError as exc:
            return False, TEXT_WRITE_FAILED.format(value=value, what=what, error=exc), None
        if got != value:
            return False, TEXT_UNVERIFIED.format(what=what, got=got, value=value), got
        return True, "", got
