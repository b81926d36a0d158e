"""sd_notify client and watchdog feeder, against a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.clock import FakeClock
from watchpost.sdnotify import Notifier, Watchdog, watchdog_interval


def receive_all(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``."""
    messages = []
    sock.setblocking(False)
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """systemd's side: a datagram socket bound to a path."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def test_messages_reach_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready(status="polling 3 devices")
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling 3 devices"
    assert notifier.status("uplink down\nbuffering")
    assert sock.recv(4096) == b"STATUS=uplink down buffering"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_name() -> None:
    name = f"watchpost-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_means_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not Notifier.from_environment({"NOTIFY_SOCKET": ""}).enabled


def test_a_vanished_socket_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.watchdog()
    assert not notifier.watchdog()
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_rejects_multiline_assignments() -> None:
    with pytest.raises(ValueError, match="KEY=value"):
        Notifier("/nonexistent").notify("READY=1\nSTATUS=x")


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_feeds_only_while_every_check_makes_progress(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    clock = FakeClock(1_000_000)  # 1000 s: the watchdog counts seconds
    watchdog = Watchdog.from_environment(
        Notifier(address), {"WATCHDOG_USEC": "10000000"}, clock=clock.seconds
    )
    poll = watchdog.register("poll loop")
    writer = watchdog.register("store writer")

    assert watchdog.tick()
    assert receive_all(sock) == ["WATCHDOG=1"]

    clock.advance(8000)
    poll.beat()
    writer.beat()
    clock.advance(8000)  # 16 s since start, 8 s since the last beats: still fresh
    assert watchdog.tick()
    assert receive_all(sock) == ["WATCHDOG=1"]

    poll.beat()
    clock.advance(3000)  # the store writer is now 11 s silent
    assert watchdog.stalled() == ["store writer"]
    assert not watchdog.tick()
    messages = receive_all(sock)
    assert len(messages) == 1
    assert messages[0].startswith("STATUS=watchdog not fed")
    assert "store writer" in messages[0]
    assert "poll loop" not in messages[0]

    assert not watchdog.tick()  # still stalled: no ping, status not repeated
    assert receive_all(sock) == []

    writer.beat()
    poll.beat()
    assert watchdog.tick()
    assert receive_all(sock) == ["WATCHDOG=1"]


def test_off_without_watchdog_usec(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    watchdog = Watchdog.from_environment(Notifier(address), {})
    watchdog.register("poll loop")
    assert not watchdog.enabled
    assert not watchdog.tick()
    asyncio.run(asyncio.wait_for(watchdog.run(), 1))  # returns at once
    assert receive_all(sock) == []


def test_register_twice_is_an_error() -> None:
    watchdog = Watchdog(Notifier(None), interval=1)
    watchdog.register("poll loop")
    with pytest.raises(ValueError, match="twice"):
        watchdog.register("poll loop")


def test_run_pings_in_real_time_and_stops_when_a_loop_hangs(
    listener: tuple[socket.socket, str],
) -> None:
    """End to end with the real clock: a hung loop starves the watchdog."""
    sock, address = listener
    interval = 0.2
    watchdog = Watchdog(Notifier(address), interval=interval)
    check = watchdog.register("poll loop")

    async def scenario() -> tuple[list[str], list[str]]:
        feeder = asyncio.create_task(watchdog.run(), name="watchdog")
        for _ in range(8):  # 0.4 s of a healthy loop
            check.beat()
            await asyncio.sleep(interval / 4)
        healthy = receive_all(sock)
        await asyncio.sleep(interval * 2)  # the loop hangs
        receive_all(sock)  # the pings before the hang was noticed, and the status
        await asyncio.sleep(interval * 2)
        hung = receive_all(sock)
        feeder.cancel()
        return healthy, hung

    healthy, hung = asyncio.run(scenario())
    assert healthy.count("WATCHDOG=1") >= 2
    assert hung == []
