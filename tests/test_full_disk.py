"""A full disk while the uplink is down (issue 11, item 2): no alarm is lost.

The store sits on a real tmpfs of 3 MiB (``tests.kit.disks.SmallDisk``: mounted in a mount
namespace of its own, so it never outlives the test). The broker goes away, a filler file
leaves the disk all but full, telemetry fills the rest, and an alarm goes up and down while
nothing more fits. Then the broker comes back, and the daemon is restarted (SIGTERM, SIGKILL):
every alarm event reaches the broker, its seqs contiguous, and ``alarms.json`` agrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.configs import alarm, device, gateway, point, tcp_bus, write_config
from tests.kit.control import wait_status
from tests.kit.disks import NoSmallDisk, SmallDisk
from tests.kit.processes import Watchpost
from tests.kit.stored import put
from tests.modbus_servers import MisshapenAnswers
from watchpost.alarm_state import AlarmStateFile
from watchpost.alarms import AlarmEngine, AlarmEvent, AlarmHousekeeper
from watchpost.config.alarms import ThresholdRule
from watchpost.config.store import StoreConfig
from watchpost.samples import Quality, Sample
from watchpost.store import Store

ROOT = "watchpost/v1/disk-site/gw-d/"
LOW, HIGH = 500, 1500  # 5 and 15 %LEL: under and over the alarms' threshold of 10
ALARMED = 3  # points with a `high` alarm; the others only make telemetry
POINTS = 60
T0 = 1_790_000_000_000


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", size="3m")
    try:
        small.start()
    except NoSmallDisk as exc:
        pytest.skip(str(exc))
    try:
        yield small
    finally:
        small.close()


def config_for(tmp_path: Path, disk: SmallDisk, broker: Broker, port: int, **store: Any) -> Path:
    points = [
        point(f"gas_{n}", n, *([alarm("high", threshold=10.0)] if n < ALARMED else []), scale=0.01)
        for n in range(POINTS)
    ]
    document = gateway(
        broker.url,
        site="disk-site",
        gateway_id="gw-d",
        store=str(disk.folder / "buffer.db"),
        control=str(tmp_path / "run" / "control.sock"),
        buses=[tcp_bus("plant", port)],
        devices=[device("gas", "plant", *points, interval=0.05)],
        uplink={"reconnect_min": 0.2, "reconnect_max": 1.0, "health_interval": 1.0},
    )
    document["store"].update(commit_interval=0.2, **store)
    (tmp_path / "run").mkdir(exist_ok=True)
    return write_config(tmp_path / "gateway.toml", document)


def start(tmp_path: Path, disk: SmallDisk, config: Path) -> Watchpost:
    daemon = Watchpost(
        "run",
        "--config",
        str(config),
        folder=tmp_path,
        name="gateway",
        prefix=disk.prefix(tmp_path),
    )
    daemon.wait_ready()
    return daemon


def alarm_events(sub: Subscriber) -> dict[int, dict[str, Any]]:
    """The `alarms` messages by seq (at least once: duplicates dropped by seq)."""
    return {m["seq"]: m for m in sub.get(ROOT + "alarms")}


def toggle(server: MisshapenAnswers, times: int, pause: float = 0.6) -> int:
    """Move every alarmed point over and under its threshold ``times`` times in turn."""
    for _ in range(times):
        server.value = HIGH if server.value == LOW else LOW
        time.sleep(pause)
    return times


def gas_events(sub: Subscriber) -> dict[str, list[str]]:
    """Each gas alarm's events, in seq order."""
    found: dict[str, list[str]] = {}
    by_seq = alarm_events(sub)
    for seq in sorted(by_seq):
        message = by_seq[seq]
        if message["alarm"].startswith("gas_"):
            found.setdefault(message["alarm"], []).append(message["event"])
    return found


def wait_full(sock: Path, timeout: float = 30.0) -> dict[str, Any]:
    """The store's ``disk_full`` once the daemon says its disk is full (`watchpost status`)."""
    deadline = time.monotonic() + timeout
    while True:
        full = wait_status(sock)["backlog"].get("disk_full")
        if full is not None:
            return dict(full)
        assert time.monotonic() < deadline, "the disk never filled up"
        time.sleep(0.1)


def drained_while_full(health: dict[str, Any]) -> bool:
    """`health` says the disk is full and no alarm waits in the store."""
    backlog = health["backlog"]
    waiting = backlog["streams"].get("alarms", {}).get("depth")
    return backlog.get("disk_full") is not None and waiting == 0


def disk_full_events(sub: Subscriber) -> list[str]:
    """The `gateway/disk_full` fault's events, in seq order."""
    by_seq = alarm_events(sub)
    return [
        by_seq[seq]["event"]
        for seq in sorted(by_seq)
        if by_seq[seq]["alarm"] == "gateway/disk_full"
    ]


def wait_gas_events(sub: Subscriber, count: int, timeout: float = 30.0) -> None:
    """Until every gas alarm has ``count`` events at the broker."""
    sub.wait_for(
        ROOT + "alarms",
        timeout=timeout,
        predicate=lambda _got: [len(e) for e in gas_events(sub).values()] == [count] * ALARMED,
    )


def selftest(tmp_path: Path, disk: SmallDisk, config: Path) -> dict[str, dict[str, Any]]:
    """`watchpost selftest --json` as a crew runs it (the daemon answers it)."""
    result = subprocess.run(
        [
            *disk.prefix(tmp_path),
            *(sys.executable, "-m", "watchpost", "selftest", "--json", "--config", str(config)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return {check["name"]: check for check in json.loads(result.stdout)}


@pytest.mark.slow
def test_alarms_raised_on_a_full_disk_reach_the_broker(
    tmp_path: Path, persistent_broker: Broker, disk: SmallDisk
) -> None:
    """The reserve takes the alarms while telemetry is left out; after the broker returns
    and after a SIGTERM and a SIGKILL every event is there, seqs without a gap.

    The platform's session outlives the broker's restart (as a platform's does), so what the
    gateway sends before the platform's client is back is queued for it, not lost to it."""
    broker = persistent_broker
    sub = Subscriber(
        broker,
        ROOT + "alarms",
        ROOT + "health",
        ROOT + "telemetry",
        client_id="platform",
        persistent=True,
    )
    with contextlib.closing(sub), MisshapenAnswers({1: "exact"}, value=LOW) as server:
        config = config_for(
            tmp_path, disk, broker, server.port, min_free_mb=0, alarm_reserve_mb=0.25
        )
        daemon = start(tmp_path, disk, config)
        try:
            sub.wait_for(ROOT + "health", timeout=20)
            broker.stop()
            disk.fill(leave=96 * 1024)  # the rest goes to telemetry within a second or two
            wait_full(tmp_path / "run" / "control.sock")
            toggles = toggle(server, 8)  # the incident, on a full disk, the uplink down
            broker.start()
            wait_gas_events(sub, toggles)
            health = sub.wait_for(  # still full, and the alarms' rows acknowledged and gone
                ROOT + "health",
                timeout=20,
                predicate=lambda got: bool(got) and drained_while_full(got[-1]),
            )[-1]
            full = health["backlog"]["disk_full"]
            assert full["reserve_released"] is True, full
            assert full["telemetry_dropped"]["messages"] > 0, full
            checks = selftest(tmp_path, disk, config)
            assert checks["store"]["result"] == "fail", checks
            assert "its disk is full since" in checks["store"]["detail"], checks
            toggles += toggle(server, 2)  # still full, the broker there: alarms go at once
            wait_gas_events(sub, toggles, timeout=10)
            assert daemon.stop() == 0, daemon.log()
            daemon = start(tmp_path, disk, config)
            toggles += toggle(server, 2)
            wait_gas_events(sub, toggles)
            daemon.kill()  # SIGKILL
            daemon = start(tmp_path, disk, config)
            toggles += toggle(server, 3)  # ends over the threshold: raised
            wait_gas_events(sub, toggles)
            telemetry = len(sub.get(ROOT + "telemetry"))
            disk.remove("filler")  # the crew frees the disk: telemetry is stored again
            sub.wait_for(
                ROOT + "alarms",
                timeout=30,
                predicate=lambda _got: disk_full_events(sub)[-1:] == ["cleared"],
            )
            sub.wait_for(
                ROOT + "telemetry", timeout=20, predicate=lambda got: len(got) >= telemetry + 3
            )
            assert disk.path("buffer.db.reserve").stat().st_size == 256 * 1024  # taken again
            assert daemon.stop() == 0, daemon.log()
            state = json.loads(disk.path("alarms.json").read_text())
        finally:
            daemon.stop()
    by_seq = alarm_events(sub)
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), "a gap in the alarms seq"
    for alarm_id, events in gas_events(sub).items():
        assert events == ["raised", "cleared"] * (toggles // 2) + ["raised"], (alarm_id, events)
        assert state["alarms"][alarm_id]["raised"] is True, state
    faults = disk_full_events(sub)
    assert faults[0] == "raised", faults
    assert faults[-1] == "cleared", faults
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()


def test_alarms_the_full_disk_cannot_take_wait_on_the_second_path(
    tmp_path: Path, disk: SmallDisk
) -> None:
    """No reserve and not a byte free: alarm events go to ``alarm_spill`` (their puts
    return), survive a kill and a start on the still-full disk, and are committed with their
    seqs as soon as the crew frees the disk. Each phase is a process killed at its end
    (``os._exit``), run inside the tmpfs's mount namespace: SQLite resolves the
    /proc/PID/root link, so it would write to the folder beneath the tmpfs."""
    spill = tmp_path / "spill" / "alarms.jsonl"
    for phase in ("before", "full", "restart"):
        run = subprocess.run(
            [
                *disk.prefix(Path.cwd()),
                sys.executable,
                "-c",
                f"{SPILL_SCENARIO}({phase!r}, {str(disk.folder)!r}, {str(spill)!r})",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
        assert run.returncode == 0, f"{phase}:\n{run.stdout}{run.stderr}"
        if phase == "full":
            assert len(spill.read_text().splitlines()) == 3
            assert "alarm spill" not in run.stderr  # it never failed
    assert not spill.exists()


SPILL_SCENARIO = "from tests.test_full_disk import spill_scenario; spill_scenario"


def spill_scenario(phase: str, folder: str, spill_path: str) -> None:
    """One phase of the test above, run where the tmpfs is mounted; ends as a kill would."""
    disk, spill = Path(folder), Path(spill_path)
    config = StoreConfig(
        path=disk / "buffer.db",
        commit_interval=0.05,
        alarm_reserve_mb=0,
        min_free_mb=0,
        alarm_spill=spill,
    )

    async def alarm(store: Store, n: int) -> int:
        body = {"alarm": "gas/high", "event": "raised" if n % 2 else "cleared", "n": n}
        data = json.dumps(body).encode()
        return await store.put("alarms", data, ts=n, durable=True, last="gas/high")

    store = Store(config)
    if phase == "before":

        async def before() -> int:
            for n in range(20):
                await put(store, "telemetry", {"samples": [{"n": n}] * 50}, ts=n, durable=False)
            return await alarm(store, 1)

        assert asyncio.run(before()) == 1
        store.flush()
        with (disk / "filler").open("wb") as filler:  # every byte left: -wal, -shm stay
            filler.write(b"\0" * shutil.disk_usage(disk).free)
    elif phase == "full":
        assert store.disk_full is not None

        async def on_a_full_disk() -> list[int]:
            return [await alarm(store, n) for n in (2, 3, 4)]

        assert asyncio.run(asyncio.wait_for(on_a_full_disk(), 20)) == [2, 3, 4]
        full = store.disk_full
        assert full is not None
        assert full["alarms_spilled"] == 3, full
    else:  # a restart, the disk still full
        last, _complete = store.last_events()
        assert json.loads(last["gas/high"])["n"] == 4
        (disk / "filler").unlink()  # the crew frees the disk
        deadline = time.monotonic() + 15
        while len(store.fetch("alarms", 0, 10)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = store.fetch("alarms", 0, 10)
        assert [row.seq for row in rows] == [1, 2, 3, 4]
        assert [json.loads(row.body)["n"] for row in rows] == [1, 2, 3, 4]
        deadline = time.monotonic() + 10
        while (store.disk_full is not None or spill.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.disk_full is None
        store.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as a kill would: no closing checkpoint


def test_the_alarm_state_file_on_a_full_disk_raises_a_fault_and_is_retried(
    disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC while saving ``alarms.json``: logged once, `gateway/state_unsaved` raised,
    tried again each turn; once the disk has room the state is saved and the fault clears."""
    engine = AlarmEngine({"gas": [ThresholdRule(kind="high", threshold=10.0)]}, lambda: T0)
    seen: list[AlarmEvent] = []
    engine.add_listener(seen.append)
    state = AlarmStateFile(disk.path("alarms.json"))
    keeper = AlarmHousekeeper(engine, state)
    keeper.restore()
    disk.fill(leave=0)
    engine.evaluate([Sample("gas", T0, 15.0, Quality.GOOD)])

    async def save(times: int) -> None:
        for _ in range(times):
            await keeper.save_if_changed()

    asyncio.run(save(3))
    assert [(e.alarm, e.event) for e in seen] == [
        ("gas/high_alarm", "raised"),
        ("gateway/state_unsaved", "raised"),
    ]
    assert "No space left on device" in str(seen[1].reason)
    failures = [r for r in caplog.records if "saving the alarm state failed" in r.getMessage()]
    assert len(failures) == 1  # once, not once per attempt
    assert not disk.path("alarms.json").exists()
    disk.remove()  # room again
    asyncio.run(save(2))
    assert [(e.alarm, e.event) for e in seen][2:] == [("gateway/state_unsaved", "cleared")]
    saved = state.load()
    assert saved is not None
    assert saved["alarms"]["gas/high_alarm"]["raised"] is True
    assert "gateway/state_unsaved" not in saved["alarms"]  # normal again: not kept


def test_an_older_store_is_rebuilt_to_give_pages_back(tmp_path: Path) -> None:
    """A store made before incremental vacuum (auto_vacuum off) is rebuilt with it at the
    next start, its messages and counters kept, so that a full disk gets pages back."""
    path = tmp_path / "buffer.db"
    store = Store(StoreConfig(path=path))

    async def fill() -> None:
        for n in range(5):
            await put(store, "alarms", {"n": n}, ts=n, durable=True)

    try:
        asyncio.run(fill())
    finally:
        store.close()
    older = sqlite3.connect(path, isolation_level=None)
    try:
        older.execute("PRAGMA auto_vacuum = NONE")
        older.execute("VACUUM")
        assert older.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    finally:
        older.close()
    store = Store(StoreConfig(path=path))
    try:
        assert [row.seq for row in store.fetch("alarms", 0, 10)] == [1, 2, 3, 4, 5]
        assert store.last_seq("alarms") == 5
    finally:
        store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    finally:
        check.close()
