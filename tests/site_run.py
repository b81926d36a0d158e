"""The simulated demo site and a gateway daemon, as real processes, for end-to-end tests."""

from __future__ import annotations

import importlib.resources
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# the demo files as installed with the package (examples/demo in the repository)
DEMO = Path(str(importlib.resources.files("watchpost") / "examples" / "demo"))


def watchpost(*args: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "watchpost", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class SimulatedSite:
    """A `watchpost simulate` process on free ports in ``folder``, and a gateway started later."""

    def __init__(self, folder: Path, site_text: str) -> None:
        self.folder = folder
        (folder / "site.toml").write_text(site_text)
        self.events_file = folder / "events.json"
        self.simulator = watchpost(
            "simulate",
            "site.toml",
            "--port-base",
            "0",
            "--events",
            str(self.events_file),
            cwd=folder,
            log=folder / "simulator.log",
        )
        self.gateway: subprocess.Popen[bytes] | None = None
        self.events = self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.simulator.poll() is not None:
                raise RuntimeError(self.log("simulator"))
            try:
                events = json.loads(self.events_file.read_text())
            except (OSError, ValueError):
                events = {}
            if any(e.get("event") == "ready" for e in events.get("events", [])):
                return events
            time.sleep(0.1)
        raise RuntimeError("the simulator did not get ready: " + self.log("simulator"))

    def start_gateway_with(self, config: Path) -> None:
        self.gateway = watchpost(
            "run", "--config", str(config), cwd=self.folder, log=self.folder / "gateway.log"
        )

    def refresh_events(self) -> dict[str, Any]:
        self.events = json.loads(self.events_file.read_text())
        return self.events

    def crossing(self, point: str, mark: float, direction: str = "up") -> float | None:
        """Wall-clock time of the scripted crossing, once the simulator has announced it."""
        for event in self.refresh_events()["events"]:
            for crossing in event.get("crossings", []):
                if (crossing["point"], crossing["mark"], crossing["direction"]) == (
                    point,
                    mark,
                    direction,
                ):
                    return float(crossing["time"])
        return None

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        if self.gateway is not None:
            stop(self.gateway)
        stop(self.simulator)


class SiteRun(SimulatedSite):
    """``examples/demo`` in a folder of its own: simulator on free ports, gateway pointed at it."""

    def __init__(self, folder: Path, broker_url: str) -> None:
        super().__init__(folder, (DEMO / "site.toml").read_text())
        self.config = folder / "gateway.toml"
        self.config.write_text(self._gateway_config(broker_url))

    def start_gateway(self) -> None:
        self.start_gateway_with(self.config)

    def _gateway_config(self, broker_url: str) -> str:
        text = (DEMO / "gateway.toml").read_text()
        text = text.replace("mqtt://127.0.0.1:1883", broker_url)
        for name, bus in self.events["buses"].items():
            if bus["type"] == "modbus_tcp":
                text = re.sub(
                    rf'(name = "{name}"\nhost = "127.0.0.1"\nport = )\d+',
                    rf"\g<1>{bus['port']}",
                    text,
                )
        return text
