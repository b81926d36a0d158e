"""`watchpost backlog` reads the store file directly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.kit.stored import put
from watchpost.cli import main
from watchpost.config.store import StoreConfig
from watchpost.store import Store


def test_backlog_command_shows_depth_oldest_and_evictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "buffer.db"
    noise = [
        {"point": f"p{k}", "ts": k * 7919, "value": (k * 7919) % 977 / 3, "quality": "good"}
        for k in range(200)
    ]

    async def fill() -> None:
        store = Store(StoreConfig(path=path, quota_mb=0.3, commit_interval=0.05))
        await put(store, "alarms", {"event": "raised"}, ts=1_732_000_000_000, durable=True)
        for i in range(200):
            await put(
                store, "telemetry", {"samples": noise}, ts=1_732_000_001_000 + i, durable=False
            )
        store.close()

    asyncio.run(fill())
    assert main(["backlog", "--store", str(path)]) == 0
    text = capsys.readouterr().out
    alarms = next(line for line in text.splitlines() if line.startswith("alarms"))
    assert alarms.split() == ["alarms", "1", "1", "2024-11-19", "07:06:40Z", "1"]
    assert "evicted telemetry:" in text
    assert main(["backlog", "--store", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["streams"]["alarms"]["depth"] == 1
    assert data["evictions"]["telemetry"]["messages"] > 0
    assert main(["backlog", "--store", str(tmp_path / "missing.db")]) == 66


def test_backlog_command_shows_what_is_kept_for_resend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "buffer.db"

    async def fill() -> None:
        store = Store(StoreConfig(path=path))
        for n in range(3):
            await put(store, "alarms", {"n": n}, ts=1_732_000_000_000 + n, durable=True)
        store.ack([row.id for row in store.fetch("alarms", 0, 10)[:2]])
        store.close()

    asyncio.run(fill())
    assert main(["backlog", "--store", str(path)]) == 0
    text = capsys.readouterr().out
    assert "kept for cmd/resend, alarms: 2 sent message(s), seq 1-2" in text
    assert main(["backlog", "--store", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kept"] == {"alarms": {"count": 2, "first_seq": 1, "last_seq": 2}}
    assert data["streams"]["alarms"]["depth"] == 1
