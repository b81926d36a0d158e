"""The daemon itself starting on a damaged store: it runs, and the platform hears about it."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.kit.stored import put
from tests.site_run import SiteRun
from tests.test_store import _damage_foreign_wal, _damage_garbage, _damage_truncated
from watchpost.config import load_config
from watchpost.config.store import StoreConfig
from watchpost.control import ControlError, request
from watchpost.store import Store

ROOT = "watchpost/v1/demo-colliery/gw-01/"
SETTLE = 0.5  # s: longer than any commit of a durable alarm takes here


def _old_store(path: Path) -> None:
    async def fill() -> None:
        store = Store(StoreConfig(path=path))
        for i in range(300):
            await put(
                store, "alarms", {"event": "raised", "n": i, "pad": "x" * 200}, ts=i, durable=True
            )
        store.close()

    asyncio.run(fill())


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_damage_garbage, _damage_truncated, _damage_foreign_wal])
def test_daemon_starts_on_a_damaged_store_and_reports_it(
    tmp_path: Path,
    broker: Broker,
    subscriber: Callable[..., Subscriber],
    validate: Callable[[str, object], None],
    damage: Callable[[Path], None],
) -> None:
    sub = subscriber(ROOT + "alarms", ROOT + "status")
    store = tmp_path / "var" / "buffer.db"
    store.parent.mkdir()
    _old_store(store)
    damage(store)
    run = SiteRun(tmp_path, broker.url)
    try:
        run.start_gateway()
        got = sub.wait_for(
            ROOT + "alarms",
            timeout=30,
            predicate=lambda ms: any(m.get("kind") == "store_damaged" for m in ms),
        )
        sub.wait_for(ROOT + "status", predicate=lambda ms: any(m["state"] == "online" for m in ms))
        assert run.gateway is not None
        assert run.gateway.poll() is None, run.log("gateway")
    finally:
        run.close()
    report = next(m for m in got if m.get("kind") == "store_damaged")
    validate("alarms", report)
    assert report["level"] == "fault"
    assert Path(report["moved_to"]).exists()
    assert report["moved_to"].startswith(str(store.absolute()) + ".damaged-")


@pytest.mark.slow
def test_daemon_killed_20_times_loses_no_stored_alarm(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """The crew's test alarms stand in for real ones. The control socket answers once the
    alarm engine has decided (the store commits a moment later, off the control path), so
    an alarm answered within ``SETTLE`` s of a kill may be lost with it; every older one must
    arrive."""
    sub = subscriber(ROOT + "alarms", ROOT + "telemetry")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run = SiteRun(tmp_path, broker.url)
    sock = tmp_path / "var" / "control.sock"
    point = next(p for _d, p in load_config(run.config).points())
    settled: Counter[tuple[str, int]] = Counter()  # answered SETTLE s or more before a kill
    recent: Counter[tuple[str, int]] = Counter()
    try:
        for _ in range(20):
            run.start_gateway().wait_ready()
            answered: list[tuple[float, tuple[str, int]]] = []
            until = time.monotonic() + rng.uniform(0.3, 1.5)
            while time.monotonic() < until:
                try:
                    events = request(sock, "test_alarm", timeout=5, point=point.name)
                except ControlError:
                    break
                answered += [(time.monotonic(), (e["event"], e["decided_ts"])) for e in events]
                time.sleep(0.05)  # a storm of 40 alarm events per second, not a flood
            assert run.gateway is not None
            run.gateway.kill()  # SIGKILL: no flush, no goodbye
            killed = time.monotonic()
            run.gateway.wait(10)
            for at, key in answered:
                (settled if killed - at >= SETTLE else recent)[key] += 1
        run.start_gateway()
        got = sub.wait_for(
            ROOT + "alarms",
            timeout=60,
            predicate=lambda ms: (
                not (
                    settled
                    - Counter((m["event"], m["decided_ts"]) for m in ms if m["rule"] == "test")
                )
            ),
        )
    finally:
        run.close()
    delivered = Counter((m["event"], m["decided_ts"]) for m in got if m["rule"] == "test")
    lost_recent = sum((recent - delivered).values())
    seqs = {m["seq"] for m in got}
    assert seqs == set(range(1, max(seqs) + 1)), "alarm seq has a gap"
    telemetry = {m["seq"] for m in sub.get(ROOT + "telemetry")}
    assert telemetry == set(range(1, max(telemetry) + 1)), "telemetry seq has a gap"
    print(
        f"seed {seed}: {sum(settled.values())} settled test alarms, all delivered; "
        f"{lost_recent} of {sum(recent.values())} answered within {SETTLE} s of a kill lost"
    )


def _delete(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)


def _replace(store: Path) -> None:
    """A crew's mistake: another file moved over the store (a new inode under the name)."""
    other = store.with_name("other.db")
    other.write_bytes(b"this is not the gateway's store\n" * 200)
    other.replace(store)


@pytest.mark.slow
@pytest.mark.parametrize("lose", [_delete, _replace])
def test_store_lost_while_running_is_reported_and_seqs_carry_on(
    tmp_path: Path,
    broker: Broker,
    subscriber: Callable[..., Subscriber],
    validate: Callable[[str, object], None],
    lose: Callable[[Path], None],
) -> None:
    """The store deleted or replaced under the running daemon: the `store_damaged` fault
    reaches the platform at once, alarms keep their seqs without a gap, also after a restart."""
    sub = subscriber(ROOT + "alarms")
    run = SiteRun(tmp_path, broker.url)
    sock = tmp_path / "var" / "control.sock"
    store = tmp_path / "var" / "buffer.db"
    point = next(p for _d, p in load_config(run.config).points())
    try:
        run.start_gateway().wait_ready()
        before = request(sock, "test_alarm", timeout=10, point=point.name)
        sub.wait_for(
            ROOT + "alarms",
            timeout=30,
            predicate=lambda ms: {e["seq"] for e in before} <= {m["seq"] for m in ms},
        )
        lose(store)
        time.sleep(3.0)  # telemetry commits every second; the writer checks the file each second
        during = request(sock, "test_alarm", timeout=10, point=point.name)
        assert run.gateway is not None
        assert run.gateway.poll() is None, run.log("gateway")
        assert run.gateway.stop() == 0  # SIGTERM: a clean stop
        run.start_gateway().wait_ready()
        after = request(sock, "test_alarm", timeout=10, point=point.name)
        wanted = {e["seq"] for e in [*before, *during, *after]}
        got = sub.wait_for(
            ROOT + "alarms",
            timeout=30,
            predicate=lambda ms: (
                wanted <= {m["seq"] for m in ms}
                and any(m.get("kind") == "store_damaged" for m in ms)
            ),
        )
    finally:
        run.close()
    report = next(m for m in got if m.get("kind") == "store_damaged")
    validate("alarms", report)
    assert report["level"] == "fault"
    assert report["seq_kept"] is True
    seqs = sorted({m["seq"] for m in got})
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # no gap, no restart at 1
    assert min(e["seq"] for e in during) > max(e["seq"] for e in before)
    assert min(e["seq"] for e in after) > max(e["seq"] for e in during)
    assert before[0]["seq"] < report["seq"] < min(e["seq"] for e in after)
