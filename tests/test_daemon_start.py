"""The daemon's start on a bad day: signals while it starts, unusable paths.

Each test runs `watchpost run` (and `watchpost config check`) as a real process and looks
at its exit status, its output and what reached the broker.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.modbus_servers import MisshapenAnswers
from tests.site_run import stop
from watchpost.control import ControlError, request

ROOT = "watchpost/v1/start-site/gw-st/"

GATEWAY = """
[gateway]
site = "start-site"
id = "gw-st"
[uplink]
broker = "{broker}"
[store]
path = "{store}"
[control]
socket = "{socket}"
[[buses]]
type = "modbus_tcp"
name = "tcp"
host = "127.0.0.1"
port = {port}
[[devices]]
name = "gas"
bus = "tcp"
interval = 0.5
[[devices.points]]
name = "gas_a"
address = 0
"""


def write_config(
    folder: Path,
    broker: str,
    port: int,
    *,
    store: str = "var/buffer.db",
    socket: str = "var/control.sock",
) -> Path:
    config = folder / "gateway.toml"
    config.write_text(GATEWAY.format(broker=broker, port=port, store=store, socket=socket))
    config.chmod(0o640)
    return config


def start(config: Path) -> subprocess.Popen[bytes]:
    log = config.parent / "gateway.log"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "watchpost", "run", "--config", str(config)],
            cwd=config.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_status(sock: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return request(sock, "status", timeout=2)
        except ControlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.1, 0.25, 0.5])
def test_a_sighup_while_starting_does_not_kill_the_daemon(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber], after: float
) -> None:
    sub = subscriber(ROOT + "telemetry")
    with MisshapenAnswers({1: "exact"}) as server:
        config = write_config(tmp_path, broker.url, server.port)
        process = start(config)
        log = tmp_path / "gateway.log"
        try:
            time.sleep(after)
            process.send_signal(signal.SIGHUP)
            status = wait_status(tmp_path / "var" / "control.sock")
            assert status["daemon"] == "running"
            sub.wait_for(ROOT + "telemetry", timeout=20)
            assert process.poll() is None, log.read_text()
        finally:
            assert stop(process) == 0, log.read_text()
