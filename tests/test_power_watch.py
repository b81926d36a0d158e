"""The power watch: `production_during_shutdown` armed by shutdown orders kept on disk.

Time is a fake clock and explicit sample stamps; the orders live in a real file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from tests.kit.clock import FakeClock
from watchpost import checks
from watchpost.alarms import AlarmEngine, AlarmEvent
from watchpost.config.alarms import AlarmRule, resolve_rules
from watchpost.samples import Quality, Sample
from watchpost.shutdown import OrderError, ShutdownOrder, ShutdownOrders

T0 = 1_800_000_000_000
MINUTE = 60_000
RULES = TypeAdapter(list[AlarmRule])


def order(order_id: str, start: int, end: int, reason: str = "notice 7") -> ShutdownOrder:
    return ShutdownOrder(id=order_id, start=start, end=end, reason=reason)


def watch(tmp_path: Path, clock: FakeClock, **rule: Any) -> tuple[AlarmEngine, ShutdownOrders]:
    orders = ShutdownOrders(tmp_path / "shutdown_orders.json", clock)
    spec = {"kind": "production_during_shutdown", "threshold": 50.0, **rule}
    rules = resolve_rules(
        RULES.validate_python([spec]), rules_from=None, unit="kW", point_range=None
    )
    return AlarmEngine({"plant_power": rules}, clock, orders=orders), orders


def feed(
    engine: AlarmEngine, clock: FakeClock, power: float, *, quality: Quality = Quality.GOOD
) -> list[AlarmEvent]:
    """One poll: a sample stamped now, then a minute passes."""
    events = engine.evaluate([Sample("plant_power", clock.ms, power, quality)])
    clock.ms += MINUTE
    return events


def test_no_alarm_outside_an_order(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    orders.add(order("later", T0 + 60 * MINUTE, T0 + 120 * MINUTE))
    events = [e for _ in range(30) for e in feed(engine, clock, 400.0)]
    assert events == []
    assert engine.active() == []


def test_raised_within_on_delay_and_one_poll_inside_an_order_naming_it(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock, on_delay=300)  # 5 minutes
    orders.add(order("flood-2026-11", T0, T0 + 24 * 60 * MINUTE, "flood warning"))
    raised_at = None
    for poll in range(20):
        events = feed(engine, clock, 400.0)
        if events:
            raised_at = poll
            break
    assert raised_at is not None
    assert raised_at <= 5 + 1  # on_delay (5 polls of a minute) plus one poll
    [event] = events
    assert event.event == "raised"
    assert event.kind == "production_during_shutdown"
    assert event.order == "flood-2026-11"
    assert event.body()["order"] == "flood-2026-11"
    assert event.value == 400.0
    assert event.threshold == 50.0
    assert engine.active()[0]["order"] == "flood-2026-11"


def test_idle_load_below_the_threshold_is_no_alarm(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0, T0 + 60 * MINUTE))
    assert [e for _ in range(20) for e in feed(engine, clock, 35.0)] == []


def test_cleared_at_the_orders_end_even_without_samples(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0, T0 + 10 * MINUTE))
    assert [e.event for e in feed(engine, clock, 400.0)] == ["raised"]
    clock.ms = T0 + 9 * MINUTE
    assert engine.tick() == []  # still in force
    clock.ms = T0 + 10 * MINUTE
    [cleared] = engine.tick()  # the meter may be silent: the clock ends the order
    assert cleared.event == "cleared"
    assert cleared.order == "o1"
    assert feed(engine, clock, 400.0) == []  # producing after the order is no alarm


def test_cleared_by_a_sample_after_the_end_without_off_delay(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock, off_delay=3600)
    orders.add(order("o1", T0, T0 + 2 * MINUTE))
    assert [e.event for e in feed(engine, clock, 400.0)] == ["raised"]
    feed(engine, clock, 400.0)
    assert [e.event for e in feed(engine, clock, 400.0)] == ["cleared"]


def test_cleared_by_cancellation(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0, T0 + 600 * MINUTE))
    assert [e.event for e in feed(engine, clock, 400.0)] == ["raised"]
    cancelled = orders.cancel("o1")
    assert cancelled.cancelled_ts == clock.ms
    [cleared] = engine.check_orders()
    assert cleared.event == "cleared"
    assert feed(engine, clock, 400.0) == []
    assert orders.listing()[0]["state"] == "cancelled"


def test_production_dropping_below_threshold_clears_inside_the_order(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock, deadband=5.0)
    orders.add(order("o1", T0, T0 + 600 * MINUTE))
    assert [e.event for e in feed(engine, clock, 400.0)] == ["raised"]
    assert feed(engine, clock, 47.0) == []  # within the deadband
    assert [e.event for e in feed(engine, clock, 40.0)] == ["cleared"]


def test_comm_samples_leave_the_watch_as_it_was(tmp_path):
    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0, T0 + 600 * MINUTE))
    assert [e.event for e in feed(engine, clock, 400.0)] == ["raised"]
    assert feed(engine, clock, 0.0, quality=Quality.COMM) == []
    assert engine.active()[0]["raised"] is True


def test_an_order_survives_a_restart(tmp_path):
    clock = FakeClock(T0)
    _engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0 + MINUTE, T0 + 600 * MINUTE))
    saved = json.loads((tmp_path / "shutdown_orders.json").read_text())
    assert [o["id"] for o in saved["orders"]] == ["o1"]
    engine, again = watch(tmp_path, clock)  # a new process reads the same file
    assert [o["id"] for o in again.listing()] == ["o1"]
    assert feed(engine, clock, 400.0) == []  # not yet in force
    assert [e.order for e in feed(engine, clock, 400.0)] == ["o1"]


def test_overlapping_orders_are_refused_and_change_nothing(tmp_path):
    clock = FakeClock(T0)
    _engine, orders = watch(tmp_path, clock)
    orders.add(order("o1", T0, T0 + 60 * MINUTE))
    with pytest.raises(OrderError, match="overlaps order 'o1'"):
        orders.add(order("o2", T0 + 30 * MINUTE, T0 + 90 * MINUTE))
    orders.add(order("o3", T0 + 60 * MINUTE, T0 + 90 * MINUTE))  # back to back is fine
    assert [o["id"] for o in orders.listing()] == ["o1", "o3"]


def test_the_same_order_twice_is_accepted_once_and_a_reused_id_refused(tmp_path):
    clock = FakeClock(T0)
    _engine, orders = watch(tmp_path, clock)
    _kept, new = orders.add(order("o1", T0, T0 + 60 * MINUTE))
    assert new
    _kept, new = orders.add(order("o1", T0, T0 + 60 * MINUTE))
    assert not new
    with pytest.raises(OrderError, match="exists already"):
        orders.add(order("o1", T0, T0 + 61 * MINUTE))


def test_malformed_orders_are_refused(tmp_path):
    clock = FakeClock(T0)
    _engine, orders = watch(tmp_path, clock)
    with pytest.raises(ValueError, match="end must be after start"):
        order("o1", T0 + MINUTE, T0)
    with pytest.raises(checks.Invalid, match="end"):
        checks.parse(ShutdownOrder, {"id": "x", "start": T0})
    with pytest.raises(checks.Invalid, match="end must be after start"):
        checks.parse(ShutdownOrder, {"id": "x", "start": T0, "end": T0, "reason": "r"})
    with pytest.raises(OrderError, match="ended already"):
        orders.add(order("past", T0 - 120 * MINUTE, T0 - 60 * MINUTE))
    with pytest.raises(OrderError, match="no order with id 'nope'"):
        orders.cancel("nope")


def test_an_unreadable_order_file_is_moved_aside_not_fatal(tmp_path):
    path = tmp_path / "shutdown_orders.json"
    path.write_text("{not json")
    orders = ShutdownOrders(path, FakeClock(T0))
    assert orders.listing() == []
    assert (tmp_path / "shutdown_orders.json.unreadable").read_text() == "{not json"


def test_status_with_the_daemon_stopped_lists_the_kept_orders(tmp_path, capsys):
    from watchpost.cli import main  # noqa: PLC0415 - the crew's command

    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
site = "quarry-3"
id = "gw-1"

[uplink]
broker = "mqtt://127.0.0.1:1883"

[store]
path = "{tmp_path}/buffer.db"

[control]
socket = "{tmp_path}/control.sock"
"""
    )
    config.chmod(0o640)
    now = FakeClock(1_900_000_000_000)  # 2030: the order is still to come
    orders = ShutdownOrders(tmp_path / "shutdown_orders.json", now)
    orders.add(order("flood-7", now.ms + MINUTE, now.ms + 60 * MINUTE, "flood warning 7"))
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "flood-7" in out
    assert "flood warning 7" in out
    assert "pending" in out


def test_a_cancel_may_name_its_order_apart_from_its_own_id(tmp_path):
    import asyncio  # noqa: PLC0415

    from watchpost.commands import PlatformCommands  # noqa: PLC0415
    from watchpost.shutdown import OrderDesk  # noqa: PLC0415

    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    commands = PlatformCommands(
        None,  # type: ignore[arg-type]  # no alarm actions needed here
        ping=dict,
        reload=lambda: asyncio.sleep(0, []),
        orders=OrderDesk(orders, engine.check_orders),
    ).handlers()
    now = clock.ms
    placed = asyncio.run(
        commands["shutdown_order"]({"id": "o1", "start": now, "end": now + MINUTE, "reason": "r"})
    )
    assert placed["new"] is True
    cancelled = asyncio.run(commands["shutdown_cancel"]({"id": "cmd-2", "order": "o1"}))
    assert cancelled["order"]["state"] == "cancelled"


def test_signed_shutdown_commands_are_verified_like_the_others(tmp_path):
    import asyncio  # noqa: PLC0415

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    from watchpost.command_auth import CommandVerifier, sign  # noqa: PLC0415
    from watchpost.commands import CommandError, PlatformCommands  # noqa: PLC0415
    from watchpost.shutdown import OrderDesk  # noqa: PLC0415

    clock = FakeClock(T0)
    engine, orders = watch(tmp_path, clock)
    key = Ed25519PrivateKey.generate()
    verifier = CommandVerifier(key.public_key(), gateway="gw-1", max_age_s=300, now_ms=clock)
    commands = PlatformCommands(
        None,  # type: ignore[arg-type]  # no alarm actions needed here
        ping=dict,
        reload=lambda: asyncio.sleep(0, []),
        orders=OrderDesk(orders, engine.check_orders),
        verifier=verifier,
    ).handlers()

    def signed(body: dict[str, Any]) -> dict[str, Any]:
        payload = {**body, "ts": clock.ms, "gateway": "gw-1"}
        return {**payload, "sig": sign(key, payload)}

    order = {"id": "o1", "start": T0, "end": T0 + MINUTE, "reason": "r"}
    with pytest.raises(CommandError, match="must be signed"):
        asyncio.run(commands["shutdown_order"](order))
    assert orders.listing() == []
    assert asyncio.run(commands["shutdown_order"](signed(order)))["new"] is True
    # the order's own id again, inside the replay window: refused, the order stays
    with pytest.raises(CommandError, match="replay"):
        asyncio.run(commands["shutdown_cancel"](signed({"id": "o1"})))
    assert orders.listing()[0]["state"] == "in_force"
    cancelled = asyncio.run(commands["shutdown_cancel"](signed({"id": "c-2", "order": "o1"})))
    assert cancelled["order"]["state"] == "cancelled"
