"""The simulated demo site and a gateway daemon, as real processes, for end-to-end tests.

Both run through the kit's process runner (``tests.kit.processes.Watchpost``) and count as
started when they say ``READY=1``.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

from tests.kit.processes import Watchpost

# the demo files as installed with the package (examples/demo in the repository)
DEMO = Path(str(importlib.resources.files("watchpost") / "examples" / "demo"))


def watchpost(*args: str, cwd: Path, log: Path) -> Watchpost:
    """`python -m watchpost ARGS` in ``cwd``, its output appended to ``log``."""
    return Watchpost(*args, folder=cwd, name=log.stem, log=log)


def stop(process: Watchpost, timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` s; the exit status."""
    return process.stop(timeout)


class SimulatedSite:
    """A `watchpost simulate` process on free ports in ``folder``, and a gateway started later."""

    def __init__(self, folder: Path, site_text: str) -> None:
        self.folder = folder
        (folder / "site.toml").write_text(site_text)
        self.events_file = folder / "events.json"
        self.simulator = Watchpost(
            "simulate",
            "site.toml",
            "--port-base",
            "0",
            "--events",
            str(self.events_file),
            folder=folder,
            name="simulator",
        )
        self.gateway: Watchpost | None = None
        try:
            self.simulator.wait_ready()
        except BaseException:
            self.simulator.stop()
            raise
        self.events = self.refresh_events()

    def start_gateway_with(self, config: Path) -> Watchpost:
        self.gateway = Watchpost("run", "--config", str(config), folder=self.folder, name="gateway")
        return self.gateway

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
            self.gateway.stop()
        self.simulator.stop()


class SiteRun(SimulatedSite):
    """``examples/demo`` in a folder of its own: simulator on free ports, gateway pointed at it."""

    def __init__(self, folder: Path, broker_url: str) -> None:
        super().__init__(folder, (DEMO / "site.toml").read_text())
        self.config = folder / "gateway.toml"
        self.config.write_text(self._gateway_config(broker_url))

    def start_gateway(self) -> Watchpost:
        return self.start_gateway_with(self.config)

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
