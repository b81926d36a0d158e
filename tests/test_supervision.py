"""A part of the daemon that fails is reported and started again; the rest goes on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
import zlib
from pathlib import Path

from watchpost.app import Gateway
from watchpost.config import load_config
from watchpost.samples import Quality, Sample

CONFIG = """
[gateway]
site = "s"
id = "g"
[uplink]
broker = "mqtt://127.0.0.1:9"
[store]
path = "{folder}/buffer.db"
[control]
socket = "{folder}/control.sock"
[[buses]]
type = "modbus_tcp"
name = "b"
host = "127.0.0.1"
port = 9
[[devices]]
name = "d"
bus = "b"
interval = 3600
[[devices.points]]
name = "ch4"
address = 0
[[devices.points.alarms]]
kind = "high"
threshold = 1.0
"""


def test_a_failing_part_is_restarted_and_alarms_go_on(tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(CONFIG.format(folder=tmp_path)))
    runs = []

    async def scenario():
        gateway = Gateway(load_config(path), path)

        async def history_that_breaks() -> None:  # fault injection: the part dies at once
            runs.append(1)
            if len(runs) == 1:
                raise OSError("history disk gone")
            await asyncio.Event().wait()

        gateway.history.run = history_that_breaks  # type: ignore[method-assign]
        task = asyncio.create_task(gateway.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(runs) >= 2:
                break
        gateway.on_samples([Sample("ch4", gateway.now_ms(), 2.0, Quality.GOOD)])
        for _ in range(100):  # the alarm is stored although the history part failed
            await asyncio.sleep(0.05)
            if gateway.store.last_seq("alarms"):
                break
        health = gateway.health()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return health, gateway.store.last_seq("alarms")

    health, alarms = asyncio.run(scenario())
    assert len(runs) == 2  # started again after the failure
    assert health["failed_parts"]["history"]["error"] == "OSError: history disk gone"
    assert alarms == 1


def test_an_alarm_is_durable_when_the_poll_path_hands_its_sample_back(tmp_path: Path):
    """The poll path commits the alarm events of a read before it goes on (telemetry,
    history, the other devices' answers): the event is in the store, fsync'd, as soon as
    ``on_samples`` returns, without one more turn of the event loop."""
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(CONFIG.format(folder=tmp_path)))

    async def scenario() -> list[tuple[int, str]]:
        gateway = Gateway(load_config(path), path)
        try:
            gateway.on_samples([Sample("ch4", gateway.now_ms(), 2.0, Quality.GOOD)])
            conn = sqlite3.connect(f"file:{tmp_path / 'buffer.db'}?mode=ro", uri=True)
            try:
                stored = conn.execute("SELECT seq, z, body FROM outbox WHERE stream = 'alarms'")
                return [
                    (seq, json.loads(zlib.decompress(body) if z else body)["event"])
                    for seq, z, body in stored
                ]
            finally:
                conn.close()
        finally:
            gateway.store.close()

    assert asyncio.run(scenario()) == [(1, "raised")]
