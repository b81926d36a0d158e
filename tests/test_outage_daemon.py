"""The daemon itself starting on a damaged store: it runs, and the platform hears about it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.site_run import SiteRun
from tests.test_store import _damage_foreign_wal, _damage_garbage, _damage_truncated
from watchpost.store import Store, StoreConfig

ROOT = "watchpost/v1/demo-colliery/gw-01/"


def _old_store(path: Path) -> None:
    async def fill() -> None:
        store = Store(StoreConfig(path=path), gateway="gw-01")
        for i in range(300):
            await store.put("alarms", {"event": "raised", "n": i, "pad": "x" * 200}, ts=i,
                            durable=True)
        store.close()

    asyncio.run(fill())


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_damage_garbage, _damage_truncated, _damage_foreign_wal])
def test_daemon_starts_on_a_damaged_store_and_reports_it(
        tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber],
        validate: Callable[[str, object], None], damage: Callable[[Path], None]) -> None:
    sub = subscriber(ROOT + "alarms", ROOT + "status")
    store = tmp_path / "var" / "buffer.db"
    store.parent.mkdir()
    _old_store(store)
    damage(store)
    run = SiteRun(tmp_path, broker.url)
    try:
        run.start_gateway()
        got = sub.wait_for(ROOT + "alarms", timeout=30, predicate=lambda ms: any(
            m.get("kind") == "store_damaged" for m in ms))
        sub.wait_for(ROOT + "status", predicate=lambda ms: any(
            m["state"] == "online" for m in ms))
        assert run.gateway is not None
        assert run.gateway.poll() is None, run.log("gateway")
    finally:
        run.close()
    report = next(m for m in got if m.get("kind") == "store_damaged")
    validate("alarms", report)
    assert report["level"] == "fault"
    assert Path(report["moved_to"]).exists()
    assert report["moved_to"].startswith(str(store.absolute()) + ".damaged-")
