"""The simulated site as a running process: Modbus servers, the RTU link, the clock, the script.

One asyncio loop runs everything: a pymodbus TCP server per TCP bus, a pymodbus RTU server
per RTU bus on a pseudo-terminal, and the tick task that advances the engine, starts the
scripted phases and announces faults. Time ``t`` counts from the moment every bus is ready.

An RTU bus needs two serial ends with paths (pymodbus's server opens its port by path, and
so does the gateway), so it uses two pseudo-terminals joined back to back, like a null-modem
cable: the server opens the first one's slave, the link names the second one's slave.

Exceptions::

    SimulatorError      the site cannot be brought up (port taken, link refused); no retry helps
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from gettext import gettext as _
from pathlib import Path
from typing import Any, TextIO, cast

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from watchpost.drivers.base import Table
from watchpost.drivers.line_watch import LineTiming
from watchpost.drivers.simulator.engine import Crossing, RampInfo, SiteEngine
from watchpost.drivers.simulator.serial_devices import SerialServer, serial_server
from watchpost.drivers.simulator.site import (
    DEVICE_FAULTS,
    InstrumentLine,
    MeterLine,
    Refuse,
    RtuBus,
    Silent,
    SimDeviceConfig,
    SiteConfig,
    Slow,
    TcpBus,
)
from watchpost.files import atomic_write
from watchpost.sdnotify import Notifier

log = logging.getLogger(__name__)

TEXT_READY = _("site {site!r} ready (pid {pid}); buses:")
TEXT_TCP = _("  {name}: modbus_tcp {host}:{port}")
TEXT_RTU = _("  {name}: modbus_rtu {link} -> {tty}")
TEXT_SERIAL = _("  {name}: {type} {link} -> {tty}")
TEXT_PHASE = _("t={t:7.1f} s  phase {name!r}")
TEXT_RAMP = _("             {point}: {start} -> {end} from t={t0:.1f} to t={t1:.1f} s")
TEXT_CROSS = _("             expect {point} {direction} through {mark} at t={t:.1f} s")
TEXT_FAULT = _("t={t:7.1f} s  fault {kind} on {target} {state}")
TEXT_SHUTDOWN_FAILED = _("a simulated bus did not shut down cleanly (%s); its port may stay open")
TEXT_STOPPED = _("t={t:7.1f} s  stopped")
TEXT_NOT_A_LINK = _("{path} exists and is not a link; refusing to replace it")
TEXT_NO_LISTEN = _("bus {name}: cannot listen on {where}")
TEXT_NO_EVENTS = _("cannot write the events file {path}: {error}")
TEXT_NO_LINK = _("bus {name}: cannot make the link {path}: {error}")

# function codes -> the table they touch
_FC_TABLES = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}


class SimulatorError(Exception):
    """The site cannot be brought up (a port is taken, a link path is a file). No retry helps."""


class Clock:
    """Seconds since the site became ready."""

    def __init__(self) -> None:
        self._zero = time.monotonic()
        self.started_at = time.time()

    def start(self) -> None:
        self._zero = time.monotonic()
        self.started_at = time.time()

    def now(self) -> float:
        return time.monotonic() - self._zero


# -- events: printed, and kept in a JSON file for scripts and tests ---------------------------


@dataclass
class EventLog:
    """Prints each event and rewrites the ``--events`` file (atomically) after each one."""

    path: Path | None
    out: TextIO
    document: dict[str, Any] = field(default_factory=dict)

    def begin(self, **header: Any) -> None:
        self.document = {**header, "events": []}
        self._save()

    def add(self, text: str, **event: Any) -> None:
        self.document["events"].append(event)
        print(text, file=self.out, flush=True)
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps(self.document, indent=1) + "\n"
        atomic_write(self.path, text.encode("utf-8"), mode=0o644, durable=False)


# -- the RTU line: two pseudo-terminals back to back -------------------------------------------


class NullModem:
    """Two pseudo-terminals joined master to master; each slave is one end of the line.

    A pseudo-terminal passes bytes at memory speed, whatever baud rate it is set to. The
    modem passes them at the pace of a line with ``timing`` (9600 8N1 unless told): bytes
    read from one end reach the other end ``len * character time`` after the later of
    their arrival and the moment the line in that direction is free again, in the order
    they came. A unit's answer then cannot reach the gateway sooner than on a real line.

    The simulator keeps both slaves open itself, so that a master never reads a hang-up
    while nobody has the other end open.
    """

    def __init__(self, timing: LineTiming | None = None) -> None:
        self.timing = timing or LineTiming(9600)
        self._fds: list[int] = []
        self.server_master, self.server_slave = self._openpty()
        self.client_master, self.client_slave = self._openpty()
        self.server_path = os.ttyname(self.server_slave)
        self.client_path = os.ttyname(self.client_slave)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free_at: dict[int, float] = {}  # target fd -> when the line towards it is free
        self._pending: set[asyncio.TimerHandle] = set()

    def _openpty(self) -> tuple[int, int]:
        master, slave = os.openpty()
        self._fds += [master, slave]
        for fd in (master, slave):
            tty.setraw(fd)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(master, False)
        return master, slave

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.server_master, self._pass, self.server_master, self.client_master)
        loop.add_reader(self.client_master, self._pass, self.client_master, self.server_master)

    def _pass(self, source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # a hang-up cannot happen while we hold the slaves; nothing to pass
        if not data or self._loop is None:
            return
        now = self._loop.time()
        # strictly later than the direction's previous delivery: the timers keep the order
        due = max(now, self._free_at.get(target, 0.0)) + len(data) * self.timing.char
        self._free_at[target] = due
        handle = self._loop.call_at(due, self._deliver, target, data)
        self._pending.add(handle)

    def _deliver(self, target: int, data: bytes) -> None:
        if self._loop is not None:  # forget the timers that have run (this one among them)
            now = self._loop.time()
            self._pending = {handle for handle in self._pending if handle.when() > now}
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.write(target, data)  # a full buffer drops bytes, as a line with no listener

    def close(self) -> None:
        if self._loop is not None:
            for fd in (self.server_master, self.client_master):
                self._loop.remove_reader(fd)
        for handle in self._pending:
            handle.cancel()  # bytes still on the line when it is cut
        self._pending = set()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def make_link(link: Path, target: str) -> Path:
    """Point ``link`` (relative: to the working directory) at ``target``; return its path.

    A link already there is replaced (it is left over from an earlier run); anything else
    is not touched.
    """
    path = link if link.is_absolute() else Path.cwd() / link
    if not path.is_symlink() and path.exists():
        raise SimulatorError(TEXT_NOT_A_LINK.format(path=path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(path)
    return path


def remove_link(path: Path, target: str) -> None:
    """Remove ``path`` if it still is our link to ``target``."""
    with contextlib.suppress(OSError):
        if path.is_symlink() and str(path.readlink()) == target:
            path.unlink()


# -- the Modbus side ---------------------------------------------------------------------------


def _pack_bits(bits: list[bool]) -> list[int]:
    """Bits to registers, bit 0 first (as pymodbus stores coils)."""
    words = []
    for start in range(0, len(bits), 16):
        word = 0
        for i, bit in enumerate(bits[start : start + 16]):
            if bit:
                word |= 1 << i
        words.append(word)
    return words


class SiteServer:
    """Everything the simulator serves, and its life from start to a clean stop."""

    def __init__(
        self,
        site: SiteConfig,
        *,
        events: EventLog,
        port_base: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.site = site
        self.engine = SiteEngine(site, seed=seed)
        self.events = events
        self.port_base = port_base
        self.clock = Clock()
        self._servers: list[ModbusBaseServer] = []
        self._modems: list[NullModem] = []
        self._serial: list[SerialServer] = []
        self._links: list[tuple[Path, str]] = []
        self._buses: dict[str, dict[str, Any]] = {}
        self._active_faults: set[int] = set()

    # -- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring up every bus; raise SimulatorError (after cleaning up) if one cannot be."""
        try:
            tcp_index = 0
            for bus in self.site.buses:
                if isinstance(bus, TcpBus):
                    port = (
                        bus.port
                        if self.port_base is None
                        else (self.port_base + tcp_index if self.port_base else 0)
                    )
                    tcp_index += 1
                    await self._start_tcp(bus, port)
                elif isinstance(bus, RtuBus):
                    await self._start_rtu(bus)
                else:
                    self._start_serial(bus)
        except BaseException:
            await self.stop()
            raise
        self.clock.start()
        try:
            self._begin_events()
        except OSError as exc:
            await self.stop()
            raise SimulatorError(TEXT_NO_EVENTS.format(path=self.events.path, error=exc)) from exc

    def _begin_events(self) -> None:
        self.events.begin(
            site=self.site.site.name,
            pid=os.getpid(),
            started_at=self.clock.started_at,
            tick=self.engine.tick,
            buses=self._buses,
        )
        lines = [TEXT_READY.format(site=self.site.site.name, pid=os.getpid())]
        for name, bus in self._buses.items():
            if bus["type"] == "modbus_tcp":
                lines.append(TEXT_TCP.format(name=name, host=bus["host"], port=bus["port"]))
            elif bus["type"] == "modbus_rtu":
                lines.append(TEXT_RTU.format(name=name, link=bus["link"], tty=bus["tty"]))
            else:
                lines.append(
                    TEXT_SERIAL.format(
                        name=name, type=bus["type"], link=bus["link"], tty=bus["tty"]
                    )
                )
        self.events.add("\n".join(lines), event="ready", t=0.0, time=self.clock.started_at)

    async def _start_tcp(self, bus: TcpBus, port: int) -> None:
        devices = self._devices_on(bus.name)
        # any other unit on a TCP endpoint: "gateway target device failed to respond"
        catch_all = SimDevice(0, simdata=_blocks(None), action=_refuse_unknown)
        server = ModbusTcpServer(
            [*(self._sim_device(d) for d in devices), catch_all],
            address=(bus.host, port),
            ignore_missing_devices=True,
            trace_pdu=partial(self._trace, devices, silent_unknown=False),  # type: ignore[arg-type]
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise SimulatorError(
                TEXT_NO_LISTEN.format(name=bus.name, where=f"{bus.host}:{port}")
            ) from exc
        self._servers.append(server)
        listener = cast(asyncio.Server, server.transport)  # a listening server's transport
        self._buses[bus.name] = {
            "type": "modbus_tcp",
            "host": bus.host,
            "port": listener.sockets[0].getsockname()[1],
        }

    async def _start_rtu(self, bus: RtuBus) -> None:
        devices = self._devices_on(bus.name)
        modem = NullModem(LineTiming(bus.baudrate))  # the server's port is 8N1
        self._modems.append(modem)
        modem.start(asyncio.get_running_loop())
        try:
            path = make_link(bus.link, modem.client_path)
        except OSError as exc:
            raise SimulatorError(
                TEXT_NO_LINK.format(name=bus.name, path=bus.link, error=exc)
            ) from exc
        self._links.append((path, modem.client_path))
        server = ModbusSerialServer(
            [self._sim_device(d) for d in devices],
            port=modem.server_path,
            baudrate=bus.baudrate,
            ignore_missing_devices=True,
            trace_pdu=partial(self._trace, devices, silent_unknown=True),  # type: ignore[arg-type]
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise SimulatorError(
                TEXT_NO_LISTEN.format(name=bus.name, where=modem.server_path)
            ) from exc
        self._servers.append(server)
        self._buses[bus.name] = {
            "type": "modbus_rtu",
            "link": str(path),
            "tty": modem.client_path,
            "baudrate": bus.baudrate,
        }

    def _start_serial(self, bus: MeterLine | InstrumentLine) -> None:
        """A meter line or a line of text instruments on one pseudo-terminal."""
        server = serial_server(bus, self.site, self.engine.value, self.clock.now)
        self._serial.append(server)
        try:
            path = make_link(bus.link, server.end.path)
        except OSError as exc:
            raise SimulatorError(
                TEXT_NO_LINK.format(name=bus.name, path=bus.link, error=exc)
            ) from exc
        self._links.append((path, server.end.path))
        server.start(asyncio.get_running_loop())
        self._buses[bus.name] = {
            "type": bus.type,
            "link": str(path),
            "tty": server.end.path,
            "baudrate": bus.baudrate,
        }

    async def stop(self) -> None:
        """Stop serving, close the pseudo-terminals, remove the links. Never raises."""
        for server in self._servers:
            try:
                await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus: unannotated
            except Exception as exc:
                log.warning(TEXT_SHUTDOWN_FAILED, exc)
        self._servers = []
        for path, target in self._links:
            remove_link(path, target)
        self._links = []
        for modem in self._modems:
            modem.close()
        self._modems = []
        loop = asyncio.get_running_loop()
        for serial in self._serial:
            serial.close(loop)
        self._serial = []

    # -- the clock ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Advance the site until ``stop`` is set (or ``duration`` seconds have passed)."""
        occurrences = self._script_times()
        next_phase = 0
        while not stop.is_set():
            now = self.clock.now()
            if duration is not None and now >= duration:
                break
            while occurrences is not None:
                at, phase_index, cycle = occurrences(next_phase)
                if at > now:
                    break
                self.engine.advance_to(at)
                self._start_phase(phase_index, at, cycle)
                next_phase += 1
            self.engine.advance_to(now)
            self._announce_faults(now)
            wake = (self.engine.steps + 1) * self.engine.tick
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as stop is set, and the simulator would not stop
            with contextlib.suppress(TimeoutError):  # the next tick is due
                async with asyncio.timeout(max(0.0, wake - self.clock.now())):
                    await stop.wait()
        t = self.clock.now()
        self.events.add(TEXT_STOPPED.format(t=t), event="stopped", t=round(t, 3), time=time.time())

    def _script_times(self) -> Callable[[int], tuple[float, int, int]] | None:
        """The n-th scripted phase to start: (time, phase index, cycle)."""
        script = sorted(range(len(self.site.script)), key=lambda i: self.site.script[i].at)
        if not script:
            return None
        repeat = self.site.site.repeat

        def nth(n: int) -> tuple[float, int, int]:
            cycle, position = divmod(n, len(script))
            if cycle and repeat is None:
                return float("inf"), 0, cycle
            index = script[position]
            return self.site.script[index].at + cycle * (repeat or 0.0), index, cycle

        return nth

    def _start_phase(self, index: int, at: float, cycle: int) -> None:
        phase = self.site.script[index]
        ramps, crossings = self.engine.apply_phase(phase, at)
        lines = [TEXT_PHASE.format(t=at, name=phase.name)]
        lines += [
            TEXT_RAMP.format(
                point=r.point,
                start=_show(r.value_from),
                end=_show(r.value_to),
                t0=r.start,
                t1=r.end,
            )
            for r in ramps
        ]
        lines += [
            TEXT_CROSS.format(point=c.point, direction=c.direction, mark=c.mark, t=c.t)
            for c in crossings
        ]
        self.events.add(
            "\n".join(lines),
            event="phase",
            name=phase.name,
            index=index,
            cycle=cycle,
            t=at,
            time=self.clock.started_at + at,
            changes=[_ramp_json(r) for r in ramps],
            crossings=[_crossing_json(c, self.clock.started_at) for c in crossings],
        )

    def _announce_faults(self, now: float) -> None:
        for index, fault in enumerate(self.site.faults):
            active = fault.active(now)
            if active == (index in self._active_faults):
                continue
            target = fault.device if isinstance(fault, DEVICE_FAULTS) else fault.point
            at = fault.start if active else (fault.end or now)
            state = "start" if active else "end"
            (self._active_faults.add if active else self._active_faults.discard)(index)
            self.events.add(
                TEXT_FAULT.format(t=at, kind=fault.kind, target=target, state=state),
                event="fault",
                kind=fault.kind,
                target=target,
                state=state,
                index=index,
                t=at,
                time=self.clock.started_at + at,
            )

    # -- what a master sees --------------------------------------------------------------------

    def _devices_on(self, bus: str) -> list[SimDeviceConfig]:
        return [device for device in self.site.devices if device.bus == bus]

    def _sim_device(self, device: SimDeviceConfig) -> SimDevice:
        spans = {table: len(self.engine.image(device.name, table)) for table in Table}
        return SimDevice(device.unit, simdata=_blocks(spans), action=partial(self._action, device))

    def _silent(self, device: SimDeviceConfig) -> bool:
        now = self.clock.now()
        return any(
            isinstance(fault, Silent) and fault.device == device.name and fault.active(now)
            for fault in self.site.faults
        )

    def _trace(
        self, devices: list[SimDeviceConfig], sending: bool, pdu: ModbusPDU, *, silent_unknown: bool
    ) -> ModbusPDU | None:
        """Drop requests to a silent device (and, on a serial line, to absent units).

        pymodbus answers nothing when the hook returns None for a received request, though
        its annotation says the hook returns a PDU (hence the ignores where it is passed).
        """
        if sending:
            return pdu
        for device in devices:
            if device.unit == pdu.dev_id:
                return None if self._silent(device) else pdu
        return None if silent_unknown else pdu

    async def _action(  # noqa: PLR0917 - the signature of pymodbus's SimAction
        self,
        device: SimDeviceConfig,
        function_code: int,
        _start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus on every access: inject faults, then serve the engine's image.

        For bit tables pymodbus passes ``count`` in registers of 16 bits, not in bits.
        """
        table = _FC_TABLES.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        now = self.clock.now()
        for fault in self.site.faults:
            if not (
                isinstance(fault, Slow | Refuse)
                and fault.device == device.name
                and fault.active(now)
            ):
                continue
            if isinstance(fault, Slow):
                await asyncio.sleep(fault.delay)
            elif fault.table == table and _overlaps(
                fault.address, fault.count, address, 1 if table.is_bits else count
            ):
                return ExcCodes(fault.code)
        image = self.engine.image(device.name, table)
        if table.is_bits:
            if address >= len(image):
                return ExcCodes.ILLEGAL_ADDRESS
            if set_values is not None:
                self.engine.write(device, table, address, [bool(v) for v in set_values])
            packed = _pack_bits([bool(b) for b in image])
            registers[: len(packed)] = packed
        else:
            if address + count > len(image):
                return ExcCodes.ILLEGAL_ADDRESS
            if set_values is not None:
                self.engine.write(device, table, address, [int(v) for v in set_values])
            registers[: len(image)] = [int(w) for w in image]
        return None


async def _refuse_unknown(*_args: Any) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _blocks(
    spans: dict[Table, int] | None,
) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
    """pymodbus's four tables, each covering the image from address 0 (at least one cell)."""
    spans = spans or {}

    def bits(table: Table) -> list[SimData]:
        words = max(1, (spans.get(table, 0) + 15) // 16)
        return [SimData(0, values=[False] * (16 * words), datatype=DataType.BITS)]

    def words(table: Table) -> list[SimData]:
        return [SimData(0, count=max(1, spans.get(table, 0)), datatype=DataType.REGISTERS)]

    return bits(Table.COIL), bits(Table.DISCRETE), words(Table.HOLDING), words(Table.INPUT)


def _overlaps(start: int, count: int, address: int, length: int) -> bool:
    return address < start + count and start < address + length


def _show(value: float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def _ramp_json(ramp: RampInfo) -> dict[str, Any]:
    return {
        "point": ramp.point,
        "from": ramp.value_from,
        "to": ramp.value_to,
        "start": ramp.start,
        "end": ramp.end,
    }


def _crossing_json(crossing: Crossing, started_at: float) -> dict[str, Any]:
    return {
        "point": crossing.point,
        "mark": crossing.mark,
        "direction": crossing.direction,
        "t": round(crossing.t, 3),
        "time": started_at + crossing.t,
    }


async def serve(
    site: SiteConfig,
    *,
    events_path: Path | None = None,
    port_base: int | None = None,
    seed: int | None = None,
    duration: float | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Run the simulated site until SIGINT or SIGTERM (or ``duration``); stop cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = SiteServer(site, events=EventLog(events_path, out), port_base=port_base, seed=seed)
    try:
        await server.start()
        # under systemd (Type=notify) or the test kit: the buses listen, the site is ready
        Notifier.from_environment().ready(status=f"site {site.site.name} ready")
        await server.run(stop, duration)
    finally:
        await server.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
