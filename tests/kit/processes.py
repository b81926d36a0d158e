"""`python -m watchpost ...` as a real process, with one readiness probe for all of them.

The daemon (`watchpost run`) and the simulator (`watchpost simulate`) both tell systemd
``READY=1`` on ``$NOTIFY_SOCKET`` once they serve (the daemon: polling started and the crews'
socket answers; the simulator: every bus listens). The kit gives each process a
notification socket of its own and waits for that datagram: the same probe systemd uses,
so the tests also check what a unit file relies on.

    with Watchpost("run", "--config", str(config), folder=tmp_path, name="gateway") as daemon:
        daemon.wait_ready()
        ...
        daemon.wait_for("STOPPING=1")  # any notification field
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

START_TIMEOUT = 60.0  # seconds; a loaded machine (eight test suites at once) is slow to start


class NotReady(AssertionError):
    """The process exited or stayed silent instead of saying what was waited for."""


class Watchpost:
    """One `python -m watchpost ARGS` in ``folder``; output to ``log`` (``folder/NAME.log``).

    ``env`` adds to the environment; ``prefix`` goes before the interpreter (``prlimit``).
    It also answers ``poll``, ``wait``, ``kill`` and ``send_signal`` as a ``Popen`` does.
    """

    def __init__(
        self,
        *args: str,
        folder: Path,
        name: str,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        log: Path | None = None,
    ) -> None:
        self.folder = folder
        self.name = name
        self.log_path = log or folder / f"{name}.log"
        address = f"@watchpost-test-{uuid.uuid4().hex}"  # abstract: no path length limit
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.bind("\0" + address[1:])
        self.notifications: list[str] = []
        environ = {**os.environ, "NOTIFY_SOCKET": address, "PYTHONUNBUFFERED": "1", **(env or {})}
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "watchpost", *args],
                cwd=folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def running(self) -> bool:
        return self.process.poll() is None

    def poll(self) -> int | None:
        """The exit status, or None while it runs (as ``Popen.poll``)."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit (as ``Popen.wait``)."""
        return self.process.wait(timeout)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def catches(self, signum: int) -> bool:
        """Whether the process has a handler for ``signum`` now (its ``SigCgt`` in /proc)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except FileNotFoundError:  # it has exited
            return False
        caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught, 16) >> (signum - 1) & 1)

    def wait_for(self, field: str, timeout: float = START_TIMEOUT) -> list[str]:
        """Notifications until one holds the line ``field`` (``READY=1``); all of them so far.

        NotReady, with the end of the log, if the process exits first or ``timeout`` passes.
        """
        if any(field in message.split("\n") for message in self.notifications):
            return list(self.notifications)
        deadline = time.monotonic() + timeout
        exited_at: float | None = None
        while time.monotonic() < deadline:
            self._notify.settimeout(0.2)
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                if not self.running():
                    # read what it sent before it exited, then give up
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 0.5:
                        break
                continue
            self.notifications.append(message)
            if field in message.split("\n"):
                return list(self.notifications)
        state = "still running" if self.running() else f"exited {self.process.returncode}"
        raise NotReady(f"{self.name} ({state}) did not say {field}:\n{self.log()}")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the process said ``READY=1``."""
        self.wait_for("READY=1", timeout)

    def log(self, tail: int = 4000) -> str:
        """The end of the process's output."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit status. Notifications sent on
        the way out (``STOPPING=1``) can still be waited for."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def assert_stops_cleanly(self, timeout: float = 15.0) -> None:
        """Stop it (as ``stop``); AssertionError with the end of its log unless it exits 0."""
        status = self.stop(timeout)
        assert status == 0, f"{self.name} exited {status}:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.running():
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Stop, and let go of the notification socket."""
        self.stop()
        self._notify.close()

    def __enter__(self) -> Watchpost:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()


def cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """`python -m watchpost ARGS` run to its exit, its output captured as text. ``env`` is
    the whole environment when given; ``prefix`` goes before the interpreter."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "watchpost", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gateway_process(config: Path, **keys: Any) -> Watchpost:
    """`watchpost run --config CONFIG` in the config's folder, its output in ``gateway.log``
    there; ``keys`` as for ``Watchpost`` (``env``, ``prefix``)."""
    return Watchpost("run", "--config", str(config), folder=config.parent, name="gateway", **keys)


@contextlib.contextmanager
def running_gateway(config: Path, *, clean_stop: bool = True, **keys: Any) -> Iterator[Watchpost]:
    """The daemon on ``config`` for the ``with`` block; stopped at its end, and with
    ``clean_stop`` an AssertionError (with the log) unless it then exits 0."""
    process = gateway_process(config, **keys)
    try:
        yield process
    finally:
        try:
            if clean_stop:
                process.assert_stops_cleanly()
        finally:
            process.close()


class SimulatorProcess:
    """`watchpost simulate` on free ports, with its events file (``--events``).

    with SimulatorProcess.start(site_toml_text, tmp_path) as sim:
        sim.tcp_port("face"); sim.link("rs485"); sim.wait_event("phase", name="...")
    """

    def __init__(self, process: Watchpost, events: Path, cwd: Path) -> None:
        self.process = process
        self.events_path = events
        self.cwd = cwd

    @classmethod
    @contextlib.contextmanager
    def start(cls, site_text: str, folder: Path, *extra: str) -> Iterator[SimulatorProcess]:
        """Write ``site.toml`` into ``folder``, run the simulator there, stop it at the end."""
        site = folder / "site.toml"
        site.write_text(site_text, encoding="utf-8")
        events = folder / "events.json"
        process = Watchpost(
            *("simulate", str(site), "--port-base", "0", "--events", str(events), *extra),
            folder=folder,
            name="simulator",
        )
        sim = cls(process, events, folder)
        try:
            process.wait_ready()
            yield sim
        finally:
            sim.stop()
            process.close()

    def document(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.events_path.read_text(encoding="utf-8")))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_event(self, event: str, /, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for found in self.document().get("events", []):
                if found["event"] == event and all(found.get(k) == v for k, v in match.items()):
                    return dict(found)
            if not self.process.running():
                raise AssertionError(
                    f"simulator exited {self.process.returncode}: {self.process.log()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {event} event {match} within {timeout} s")

    def tcp_port(self, bus: str) -> int:
        return int(self.document()["buses"][bus]["port"])

    def link(self, bus: str) -> Path:
        return Path(self.document()["buses"][bus]["link"])

    def t(self) -> float:
        """Seconds on the simulator's clock."""
        return time.time() - float(self.document()["started_at"])

    def stop(self, timeout: float = 10.0) -> int:
        return self.process.stop(timeout)
