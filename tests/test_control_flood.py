"""1,200 idle connections to the control socket: alarms go on, the log stays small.

The daemon runs with a limit of 1,024 open files (as under a default systemd unit). The test
opens 1,200 connections to the control socket and sends nothing; meanwhile a gas reading
crosses its alarm limit. The raised alarm must reach the broker and the alarm state file,
the log must name the resource trouble at most a few times, and once the idle connections
have timed out a crew's `status` is answered again.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import alarm, gas, gas_gateway, write_config
from tests.kit.control import wait_status
from tests.kit.processes import running_gateway
from tests.modbus_servers import MisshapenAnswers
from watchpost.control import IDLE_TIMEOUT, MAX_CONNECTIONS

ROOT = "watchpost/v1/flood-site/gw-f/"
FILES = 1024
FLOOD = 1200


def open_idle(path: Path, count: int, budget: float = 30.0) -> list[socket.socket]:
    """``count`` connections that send nothing, each connected as far as the daemon lets it
    within ``budget`` seconds in all (the ones it refuses are kept open on this side too).

    A Unix socket's connect fails at once while the listen backlog is full; it is retried
    until the daemon accepts or the budget is spent."""
    held = []
    deadline = time.monotonic() + budget
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        held.append(sock)
        while True:
            try:
                sock.connect(str(path))
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
    return held


@pytest.mark.slow
def test_idle_connections_cannot_starve_the_alarm_path(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 200:
        pytest.fail(f"the test needs {FLOOD + 200} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))
    sub = subscriber(ROOT + "alarms")
    with MisshapenAnswers({1: "exact"}, value=1000) as server:  # 10.00 %LEL: normal
        config = gas_gateway(
            broker.url,
            server.port,
            gas("gas_a", 0, alarm("high", threshold=20.0)),
            site="flood-site",
            gateway_id="gw-f",
            interval=0.2,
        )
        path = write_config(tmp_path / "gateway.toml", config)
        log = tmp_path / "gateway.log"
        sock = tmp_path / "var" / "control.sock"
        with running_gateway(path, prefix=("prlimit", f"--nofile={FILES}:{FILES}")) as process:
            held: list[socket.socket] = []
            try:
                wait_status(sock, timeout=30, every=0.2)
                held = open_idle(sock, FLOOD)
                time.sleep(2.0)
                server.value = 3000  # 30.00 %LEL: above the limit while the socket is flooded
                got = sub.wait_for(
                    ROOT + "alarms",
                    timeout=20,
                    predicate=lambda ms: any(m["event"] == "raised" for m in ms),
                )
                assert got[0]["alarm"] == "gas_a/high_alarm"
                # the state file follows within its save interval, fds or not
                state = tmp_path / "var" / "alarms.json"
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    saved = json.loads(state.read_text()) if state.exists() else {}
                    if saved.get("alarms", {}).get("gas_a/high_alarm", {}).get("raised"):
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError("alarms.json never recorded the raised alarm")
                # a crew is served again once the idle connections have timed out
                status = wait_status(sock, timeout=IDLE_TIMEOUT + 15, every=0.2)
                assert status["alarms"][0]["alarm"] == "gas_a/high_alarm"
                assert process.poll() is None, process.log(3000)
            finally:
                for held_sock in held:
                    held_sock.close()
    text = log.read_text()
    assert len(text) < 20_000, text[-3000:]
    assert "Too many open files" not in text
    limit_lines = [line for line in text.splitlines() if "control connections" in line]
    assert 1 <= len(limit_lines) <= 2, limit_lines  # named once, and once when it cleared
    assert MAX_CONNECTIONS < FILES // 4


OUT_OF_FILES = r"""
import asyncio, logging, os, resource, socket, sys
from pathlib import Path
from watchpost.control import ControlServer

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")

async def ok(_args):
    return "pong"

async def main(path):
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    server = ControlServer(path, {"ping": ok})
    task = asyncio.create_task(server.run())
    while not path.exists():
        await asyncio.sleep(0.01)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setblocking(False)
    hog = []
    while True:  # take every descriptor left
        try:
            hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    try:
        client.connect(str(path))  # queued in the backlog: accept() now fails with EMFILE
    except BlockingIOError:
        pass
    await asyncio.sleep(3.5)  # asyncio retries accept() every second
    for fd in hog:
        os.close(fd)
    client.setblocking(True)
    client.settimeout(5)

    def ask():  # in a thread: the server runs on this loop
        client.sendall(b'{"op": "ping"}\n')
        return client.recv(200).decode().strip()

    print("ANSWER", await asyncio.to_thread(ask), flush=True)
    client.close()
    await asyncio.sleep(0.2)  # the server sees the client go before it is stopped
    task.cancel()

asyncio.run(main(Path(sys.argv[1])))
"""


def test_running_out_of_descriptors_is_logged_once_until_it_clears(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_FILES, str(tmp_path / "control.sock")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = result.stdout + result.stderr
    assert 'ANSWER {"ok": true, "result": "pong"}' in out, out
    assert out.count("cannot accept connections") == 1, out
    assert out.count("accepting connections again") == 1, out
    assert "Traceback" not in out, out
