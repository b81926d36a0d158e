"""`watchpost scan` against a real pymodbus RTU server on pseudo-terminals.

A pseudo-terminal carries bytes whatever its baud rate, so the line between the scanner and
the server is two pseudo-terminals joined by ``Line``, which passes the scanner's bytes only
while the scanner's port is set to the device's speed, as a real RS-485 device only
understands frames sent at its own setting, and passes bytes at that speed's pace (the
gateway takes an answer that arrives sooner than the line could carry it for another
master's). (Linux pseudo-terminals keep no parity: that
part of a setting is not observable here.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import termios
import threading
import tomllib
import tty
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pymodbus.datastore import ModbusServerContext
from pymodbus.server import ModbusSerialServer

from tests.modbus_servers import KnownUnitsOnly, device_context
from watchpost.cli import build_parser, main
from watchpost.config import GatewayConfig
from watchpost.drivers.line_watch import LineTiming
from watchpost.provisioning.scan import (
    LineSetting,
    Progress,
    line_settings,
    parse_units,
    scan,
)

warnings.filterwarnings("ignore", message=".*deprecated.*", module="pymodbus")

SPEEDS = {getattr(termios, f"B{b}"): b for b in (4800, 9600, 19200, 38400, 115200)}


def speed_of(fd: int) -> int:
    """The baud rate a program has set on the terminal ``fd``."""
    return SPEEDS.get(termios.tcgetattr(fd)[5], 0)


class Line:
    """Two pseudo-terminals joined master to master; the scanner's bytes reach the device
    only at the device's baud rate."""

    def __init__(self, baudrate: int) -> None:
        self.baudrate = baudrate
        self.server_master, self.server_slave = os.openpty()
        self.client_master, self.client_slave = os.openpty()
        for fd in (self.server_master, self.server_slave, self.client_master, self.client_slave):
            tty.setraw(fd)
        for fd in (self.server_master, self.client_master):
            os.set_blocking(fd, False)
        self.server_path = os.ttyname(self.server_slave)
        self.client_path = os.ttyname(self.client_slave)
        self.dropped = 0
        self._char = LineTiming(baudrate).char
        self._free_at: dict[int, float] = {}  # target fd -> when the line towards it is free
        self._pending: list[asyncio.TimerHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.client_master, self._to_device)
        loop.add_reader(self.server_master, self._to_scanner)

    def _to_device(self) -> None:
        data = self._read(self.client_master)
        if speed_of(self.client_slave) == self.baudrate:
            self._pass(self.server_master, data)
        else:
            self.dropped += len(data)  # garbage to the device: it stays silent

    def _to_scanner(self) -> None:
        self._pass(self.client_master, self._read(self.server_master))

    def _pass(self, target: int, data: bytes) -> None:
        """Deliver ``data`` once the line could have carried it, in order."""
        if not data or self._loop is None:
            return
        due = max(self._loop.time(), self._free_at.get(target, 0.0)) + len(data) * self._char
        self._free_at[target] = due
        self._pending.append(self._loop.call_at(due, self._write, target, data))

    @staticmethod
    def _write(target: int, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(target, data)

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except OSError:
            return b""

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for fd in (self.server_master, self.client_master):
            loop.remove_reader(fd)
        for handle in self._pending:
            handle.cancel()
        for fd in (self.server_master, self.server_slave, self.client_master, self.client_slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class RtuSite:
    port: str
    line: Line


@contextlib.contextmanager
def rtu_site(units: dict[int, int], baudrate: int) -> Iterator[RtuSite]:
    """A pymodbus RTU server, in its own thread and loop, with the given units
    (unit id -> value of holding register 0) at one baud rate, 8N1."""
    line = Line(baudrate)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, ModbusSerialServer] = {}

    async def serve() -> None:
        line.start(loop)
        contexts = {unit: device_context({0: value}) for unit, value in units.items()}
        server = ModbusSerialServer(
            ModbusServerContext(devices=contexts, single=False),
            port=line.server_path,
            baudrate=baudrate,
            ignore_missing_devices=True,
        )
        server.context = KnownUnitsOnly(server.context, set(units))  # others stay silent
        holder["server"] = server
        await server.serve_forever(background=True)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, name="rtu-server", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
    assert ready.wait(10)
    try:
        yield RtuSite(line.client_path, line)
    finally:
        asyncio.run_coroutine_threadsafe(holder["server"].shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(line.close, loop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def scan_8n1(port: str, units: str, bauds: str, timeout: str, *extra: str) -> int:
    """`watchpost scan` of ``port`` for ``units`` at ``bauds``, no parity; its exit status."""
    line = ["--units", units, "--baud", bauds, "--parity", "N", "--timeout", timeout]
    return main(["scan", "--port", port, *line, *extra])


def test_finds_the_units_at_their_baud_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with rtu_site({2: 1234, 3: 77}, baudrate=19200) as site:
        # `Line` checks the scanner's speed when its thread reads the bytes, not when they
        # were sent: a 9600 probe for unit 3 that the thread reads only after the scanner
        # moved on to 19200 reaches the device, whose answer then looks like a second
        # master's. The thread has two probe timeouts (unit 3's and 4's) to read it; 0.2 s
        # each was once too little on a busy machine, 0.5 s leaves it a second.
        status = scan_8n1(site.port, "1-4", "9600,19200", "0.5", "--bus-name", "line_a")
        assert site.line.dropped > 0  # the 9600 probes were sent, and went unheard
    out, err = capsys.readouterr()
    assert status == 0
    assert "found 2 unit(s)" in err
    assert "9600 8N1: -" in err

    proposed = tomllib.loads(out)
    assert proposed["buses"] == [
        {
            "type": "modbus_rtu",
            "name": "line_a",
            "port": site.port,
            "baudrate": 19200,
            "parity": "N",
            "stopbits": 1,
        }
    ]
    assert [(d["name"], d["unit"], d["bus"]) for d in proposed["devices"]] == [
        ("line_a_unit_2", 2, "line_a"),
        ("line_a_unit_3", 3, "line_a"),
    ]
    assert "holding 0 read 1234" in out

    # with one point each (the installer's part), the proposal is a valid config
    for device in proposed["devices"]:
        device["points"] = [{"name": f"p{device['unit']}", "address": 0}]
    GatewayConfig.model_validate(
        {
            "gateway": {"site": "s", "id": "g"},
            "uplink": {"broker": "mqtt://127.0.0.1"},
            "store": {"path": "/tmp/x.db"},
            **proposed,
        }
    )


def test_proposal_for_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    with rtu_site({1: 5}, baudrate=9600) as site:
        status = scan_8n1(site.port, "1", "9600", "0.3", "--manifest", "--bus-name", "b")
    assert status == 0
    proposed = tomllib.loads(capsys.readouterr().out)
    assert proposed["gateways"]["buses"][0]["baudrate"] == 9600
    assert proposed["gateways"]["devices"][0]["unit"] == 1


def test_settings_are_tried_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with rtu_site({1: 0}, baudrate=38400) as site:
        status = scan_8n1(site.port, "1", "19200,9600,4800", "0.1")
    err = capsys.readouterr().err
    assert status == 1, err
    tried = [line.split(":")[0] for line in err.splitlines() if line.endswith(": -")]
    assert tried == ["19200 8N1", "9600 8N1", "4800 8N1"]


def test_parity_by_parity_then_baud_by_baud() -> None:
    """(Linux pseudo-terminals refuse parity, so the order is checked without a line.)"""
    assert [str(s) for s in line_settings([9600, 19200], ["E", "N"], 2)] == [
        "9600 8E2",
        "19200 8E2",
        "9600 8N2",
        "19200 8N2",
    ]
    defaults = build_parser().parse_args(["scan", "--port", "/dev/ttyUSB0"])
    assert defaults.baud == [9600, 19200, 38400, 4800, 115200]
    assert defaults.parity == ["N", "E", "O"]
    assert defaults.units == list(range(1, 248))


def test_an_exception_answer_counts_as_found() -> None:
    with rtu_site({7: 0}, baudrate=9600) as site:
        found = asyncio.run(
            scan(site.port, units=[7], settings=[LineSetting(9600, "N")], address=5000, timeout=0.3)
        )  # past the unit's registers
    assert len(found) == 1
    assert "exception 2 (illegal data address)" in found[0].answer


def test_nothing_on_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    with rtu_site({9: 0}, baudrate=38400) as site:
        status = scan_8n1(site.port, "1,2", "9600", "0.1")
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert "no unit answered" in err


def test_a_missing_port(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["scan", "--port", "/dev/ttyNOPE9", "--units", "1", "--baud", "9600", "--parity", "N"]
    )
    assert status == 74
    assert "cannot open /dev/ttyNOPE9" in capsys.readouterr().err


def test_unit_lists() -> None:
    assert parse_units("1-3,7,2") == [1, 2, 3, 7]
    assert parse_units("247") == [247]
    for bad in ("a", "", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a list"):
            parse_units(bad)
    for bad, unit in (("0-300", "0"), ("1-300", "300"), ("1-248", "248"), ("0", "0")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"unit {unit} is outside") as caught:
            parse_units(bad)
        assert "1-247" in str(caught.value)
        assert "not a list" not in str(caught.value)
    with pytest.raises(argparse.ArgumentTypeError, match="runs backwards; write 2-5"):
        parse_units("5-2")


def test_a_range_problem_is_named_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--port", "/dev/null", "--units", "0-300"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --units: '0-300': unit 0 is outside the Modbus unit ids 1-247" in err


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--baud", "9601"], ["--parity", "X"], ["--probe", "register:1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["scan", "--port", "/dev/null", *extra])
        assert exit_info.value.code == 2
    assert "not a list" in capsys.readouterr().err


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress([LineSetting(9600, "N")], [1, 2, 3, 4], stream=screen)
    progress.step(LineSetting(9600, "N"), 1, 0)
    progress.step(LineSetting(9600, "N"), 2, 1)
    progress.note("9600 8N1: unit 2")
    text = screen.getvalue()
    assert "\r[" + "#" * 7 + "." * 23 + "] 9600 8N1 (setting 1 of 1)  unit   1 (1 of 4)" in text
    assert "unit   2 (2 of 4)  found 1" in text
    assert text.endswith("\r\033[K9600 8N1: unit 2\n")


def test_progress_of_one_baud_rate_says_which_parity_of_how_many() -> None:
    """One baud rate, the three default parities: the count is per setting, not one total
    that reads as if a single setting were three times as long."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    settings = line_settings([9600], ["N", "E", "O"])
    progress = Progress(settings, list(range(1, 248)), stream=screen)
    for unit in range(1, 248):
        progress.step(settings[0], unit, 0)
    progress.step(settings[1], 1, 0)
    text = screen.getvalue()
    assert "9600 8N1 (setting 1 of 3)  unit 247 (247 of 247)" in text
    assert "9600 8E1 (setting 2 of 3)  unit   1 (1 of 247)" in text
    assert "/741" not in text
