"""A serial port read by the event loop, for the line and meter drivers.

pyserial opens the port and sets its speed, parity and stop bits; the event loop watches its
file descriptor (pyserial opens it non-blocking) and hands every chunk read to a *framer*,
which cuts frames or lines out of the byte stream the way pyserial's
``serial.threaded.Packetizer`` does, but with a bound: a framer never holds more than its
longest frame plus one chunk, so garbage, a missing line end or an endless line cannot grow
memory. No thread per port: the loop wakes only when bytes arrive.

A hang-up or a read error closes the port; the next transaction opens it again (CommError
if it cannot), so an unplugged USB adapter costs `comm` samples, not a restart.

``PortBus`` is what the DL/T 645 and the serial line buses share: the port, a request sent
after older input is dropped, the wait for the framer's next arrival, and the refusal of
register reads and writes (their instruments read their own points).
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
from gettext import gettext as _
from typing import ClassVar, Protocol

import serial

from watchpost.drivers.base import CommError, DeviceError, PortSettings, ReadRequest, Table

log = logging.getLogger(__name__)

CHUNK = 4096  # bytes read per wake-up: bounds how much a framer sees at once

TEXT_NO_PORT = _("bus {name}: cannot open {port}: {error}")
TEXT_LOST = _("bus %s: port %s lost (%s); it is opened again at the next transaction")
TEXT_WRITE = _("bus {name}: cannot write to {port}: {error}")
TEXT_PTY_PARITY = _("bus %s: %s is a pseudo-terminal that refuses parity; opened without it")
TEXT_WRITE_TIMEOUT = _("bus {name}: {port} did not take {count} bytes within {timeout} s")


class Framer(Protocol):
    """Cuts the byte stream of a port into frames or lines."""

    def feed(self, data: bytes) -> None:
        """Take the next bytes read from the port."""

    def reset(self) -> None:
        """Forget everything received so far (before a new request)."""


class SerialPort:
    """One serial port; bytes read go to ``framer``. Open, write and close from the loop."""

    def __init__(self, name: str, settings: PortSettings, framer: Framer) -> None:
        self.name = name
        self.settings = settings
        self.framer = framer
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_in = 0

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        """Open the port if it is not open; CommError if it cannot be (a retry can help)."""
        if self._serial is not None:
            return
        settings = self.settings
        try:
            port = self._open(settings.parity)
        except termios.error as exc:
            # A pseudo-terminal (the simulator, the tests) carries no parity bits, and some
            # kernels refuse to set parity on one: open it without
            if settings.parity == "N" or not _is_pseudo_terminal(settings.port):
                raise CommError(
                    TEXT_NO_PORT.format(name=self.name, port=settings.port, error=exc)
                ) from exc
            log.info(TEXT_PTY_PARITY, self.name, settings.port)
            try:
                port = self._open("N")
            except (serial.SerialException, OSError, ValueError, termios.error) as again:
                raise CommError(
                    TEXT_NO_PORT.format(name=self.name, port=settings.port, error=again)
                ) from again
        except (serial.SerialException, OSError, ValueError) as exc:
            raise CommError(
                TEXT_NO_PORT.format(name=self.name, port=settings.port, error=exc)
            ) from exc
        self._serial = port
        self._loop = asyncio.get_running_loop()
        self.framer.reset()
        self._loop.add_reader(port.fileno(), self._readable)

    def _open(self, parity: str) -> serial.Serial:
        settings = self.settings
        return serial.Serial(
            settings.port,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=parity,
            stopbits=settings.stopbits,
            timeout=0,
            write_timeout=0,
        )

    def _readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = os.read(port.fileno(), CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(str(exc))
            return
        if not data:  # end of file: the other end hung up
            self._lost("hang-up")
            return
        self.bytes_in += len(data)
        self.framer.feed(data)

    def _lost(self, why: str) -> None:
        log.warning(TEXT_LOST, self.name, self.settings.port, why)
        self._release()

    def discard_input(self) -> None:
        """Drop what arrived before a request: bytes in the kernel and in the framer."""
        port = self._serial
        if port is not None:
            try:
                termios.tcflush(port.fileno(), termios.TCIFLUSH)
            except termios.error as exc:  # not a terminal after all: the framer reset is enough
                log.debug("bus %s: tcflush failed: %s", self.name, exc)
        self.framer.reset()

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Write all of ``data``; CommError if the port refuses or stays full past ``timeout``."""
        await self.open()
        port = self._serial
        assert port is not None
        assert self._loop is not None
        fd = port.fileno()
        view = memoryview(data)
        loop = self._loop
        try:
            async with asyncio.timeout(timeout):
                while view:
                    try:
                        written = os.write(fd, view)
                    except (BlockingIOError, InterruptedError):
                        await _writable(loop, fd)
                        continue
                    view = view[written:]
        except TimeoutError as exc:
            raise CommError(
                TEXT_WRITE_TIMEOUT.format(
                    name=self.name, port=self.settings.port, count=len(data), timeout=timeout
                )
            ) from exc
        except OSError as exc:
            self._release()
            raise CommError(
                TEXT_WRITE.format(name=self.name, port=self.settings.port, error=exc)
            ) from exc

    def _release(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(port.fileno())
        try:
            port.close()
        except (OSError, serial.SerialException) as exc:  # closing a lost port may fail too
            log.debug("bus %s: close: %s", self.name, exc)

    async def close(self) -> None:
        """Release the port. Never raises."""
        self._release()


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _is_pseudo_terminal(path: str) -> bool:
    """``path`` (or the link it is) names a pseudo-terminal's slave (/dev/pts/N)."""
    return os.path.realpath(path).startswith("/dev/pts/")


class PortBus:
    """A bus of instruments that read their own points over one serial port.

    A subclass names what it carries in ``NO_REGISTERS`` (``{name}`` and ``{what}``); its
    framer sets ``arrived`` on each complete frame or line.
    """

    NO_REGISTERS: ClassVar[str]

    def __init__(
        self, name: str, settings: PortSettings, framer: Framer, arrived: asyncio.Event
    ) -> None:
        self.name = name
        self.arrived = arrived
        self.port = SerialPort(name, settings, framer)

    async def open(self) -> None:
        await self.port.open()

    async def close(self) -> None:
        await self.port.close()

    async def read(self, request: ReadRequest, *, timeout: float) -> list[int] | list[bool]:
        """Registers are Modbus: refused with a clear error (a crew's `watchpost read`)."""
        raise DeviceError(self.NO_REGISTERS.format(name=self.name, what="read"), code=1)

    async def write(
        self,
        unit: int,
        table: Table,
        address: int,
        values: list[int] | list[bool],
        *,
        timeout: float,
    ) -> None:
        """The instruments take no writes from the gateway: refused (outputs are Modbus)."""
        raise DeviceError(self.NO_REGISTERS.format(name=self.name, what="write"), code=1)

    async def send(self, request: bytes, *, timeout: float) -> None:
        """Open the port if need be, drop older input, write ``request``."""
        await self.port.open()
        self.port.discard_input()
        self.arrived.clear()
        await self.port.write(request, timeout=timeout)

    async def wait_arrival(self, left: float) -> None:
        """Return when the framer has something new, or after ``left`` seconds."""
        self.arrived.clear()
        try:
            async with asyncio.timeout(left):
                await self.arrived.wait()
        except TimeoutError:
            return  # the caller looks at its deadline
