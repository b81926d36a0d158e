"""The crews' commands at the cabinet: status, read, watch, alarms, test-alarm, selftest.

Each asks the running daemon through the control socket; where it makes sense
(`status`, `read`, `selftest`) it works directly on the config, the buses and the store
when the daemon is stopped. Tables for people by default, ``--json`` for scripts; the exit
status is non-zero when the command failed or a check did not pass.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost.config import (
    EXIT_CONFIG,
    ConfigError,
    DeviceConfig,
    GatewayConfig,
    load_config,
    print_config_error,
)
from watchpost.config.points import DeviceBase
from watchpost.control import ControlError, DaemonNotRunning, request
from watchpost.crew_output import (
    print_alarms,
    print_events,
    print_points,
    print_read,
    print_status,
)
from watchpost.display import formats_of, word
from watchpost.drivers import DRIVERS
from watchpost.drivers.base import BusError, Table
from watchpost.poller import reader_for
from watchpost.register_read import read_values
from watchpost.selftest import (
    Check,
    check_broker,
    check_clock,
    check_commands,
    check_disk,
    check_store_file,
    exit_status,
)
from watchpost.shutdown import FILE_NAME as ORDERS_FILE
from watchpost.shutdown import describe_orders, read_orders
from watchpost.store import read_backlog
from watchpost.textout import print_json, print_table

DEFAULT_CONFIG = Path("/etc/watchpost/gateway.toml")
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the daemon is needed and not running

TEXT_CONFIG_HELP = _("the gateway's config file (for the control socket and direct access)")
TEXT_JSON_HELP = _("print JSON for scripts instead of tables")
TEXT_STATUS_HELP = _("devices, last readings, active alarms, uplink, backlog, clock")
TEXT_READ_HELP = _("read any register live (through the daemon's bus scheduler when it runs)")
TEXT_WATCH_HELP = _("live values, refreshing")
TEXT_ALARMS_HELP = _("list, acknowledge or shelve alarms")
TEXT_TEST_ALARM_HELP = _("raise and clear a marked test alarm on a point, end to end")
TEXT_SELFTEST_HELP = _("check config, buses, store, broker, clock, disk and models")
TEXT_DAEMON_DOWN = _("daemon: not running; showing what can be read directly")
TEXT_DAEMON_UP = _("running; these are the daemon's own checks")
TEXT_NEEDS_DAEMON = _("this needs the running daemon: {error}")
TEXT_NO_DEVICE = _("no device named {name!r} in {config} (devices: {known})")
TEXT_READ_FAILED = _("read failed: {error}")
TEXT_RESULTS = {"pass": _("PASS"), "warn": _("WARN"), "fail": _("FAIL")}
TEXT_CHECKS = {
    "config": _("config"),
    "daemon": _("daemon"),
    "store": _("store"),
    "broker": _("broker"),
    "clock": _("clock"),
    "disk": _("disk"),
    "device": _("device"),
    "part": _("part"),
    "model": _("model"),
}
TEXT_BY_HELP = _("who does it, for the record")
TEXT_ANSWERS = _("answers")
TEXT_TEST_EVENT = _("{event}: {alarm} (stored, seq {seq})")
TEXT_ALARM_ID_HELP = _("alarm id as listed, e.g. ch4_face_1/high_alarm")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=TEXT_CONFIG_HELP)
    common.add_argument("--json", action="store_true", help=TEXT_JSON_HELP)

    status = subparsers.add_parser("status", parents=[common], help=TEXT_STATUS_HELP)
    status.set_defaults(handler=_status)

    read = subparsers.add_parser("read", parents=[common], help=TEXT_READ_HELP)
    read.add_argument("device", help=_("device name from the config"))
    read.add_argument("address", type=int, help=_("register or bit address, 0-based"))
    read.add_argument("--count", type=int, default=1, help=_("how many values"))
    read.add_argument(
        "--table",
        choices=[t.value for t in Table],
        default="holding",
        help=_("the Modbus table to read"),
    )
    read.add_argument(
        "--type",
        dest="data_type",
        default="uint16",
        choices=["int16", "uint16", "int32", "uint32", "float32"],
        help=_("how to decode the registers"),
    )
    read.add_argument(
        "--word-order",
        choices=["big", "little"],
        default="big",
        help=_("order of the two registers of a 32-bit value"),
    )
    read.set_defaults(handler=_read)

    watch = subparsers.add_parser("watch", parents=[common], help=TEXT_WATCH_HELP)
    watch.add_argument("--interval", type=float, default=1.0, help=_("seconds between refreshes"))
    watch.add_argument(
        "--seconds", type=float, help=_("stop after this many seconds (default: until Ctrl-C)")
    )
    watch.set_defaults(handler=_watch)

    alarms = subparsers.add_parser("alarms", parents=[common], help=TEXT_ALARMS_HELP)
    actions = alarms.add_subparsers(dest="alarm_action", metavar="ACTION")
    actions.add_parser("list", parents=[common], help=_("active alarms (the default)"))
    ack = actions.add_parser("ack", parents=[common], help=_("acknowledge an alarm"))
    ack.add_argument("alarm", help=TEXT_ALARM_ID_HELP)
    ack.add_argument("--by", default="crew", help=TEXT_BY_HELP)
    ack.add_argument("--note", default="", help=_("a note for the record"))
    shelve = actions.add_parser("shelve", parents=[common], help=_("shelve an alarm"))
    shelve.add_argument("alarm", help=TEXT_ALARM_ID_HELP)
    shelve.add_argument(
        "--minutes",
        type=float,
        required=True,
        help=_("the shelf expires after this many minutes (mandatory)"),
    )
    shelve.add_argument("--reason", required=True, help=_("why, for the record"))
    shelve.add_argument("--by", default="crew", help=TEXT_BY_HELP)
    unshelve = actions.add_parser("unshelve", parents=[common], help=_("unshelve an alarm"))
    unshelve.add_argument("alarm", help=TEXT_ALARM_ID_HELP)
    unshelve.add_argument("--by", default="crew", help=TEXT_BY_HELP)
    alarms.set_defaults(handler=_alarms)

    test_alarm = subparsers.add_parser("test-alarm", parents=[common], help=TEXT_TEST_ALARM_HELP)
    test_alarm.add_argument("point", help=_("point name"))
    test_alarm.set_defaults(handler=_test_alarm)

    selftest = subparsers.add_parser("selftest", parents=[common], help=TEXT_SELFTEST_HELP)
    selftest.set_defaults(handler=_selftest)


# -- commands --------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    try:
        result = request(config.control.socket, "status")
    except DaemonNotRunning:
        result = _offline_status(config)
    except ControlError as exc:
        return _fail(args, str(exc))
    if args.json:
        print_json(result)
        return 0
    print_status({"store_path": config.store.path, **result}, formats_of(config))
    return 0


def _read(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    query = {
        "device": args.device,
        "address": args.address,
        "count": args.count,
        "table": args.table,
        "type": args.data_type,
        "word_order": args.word_order,
    }
    try:
        result = request(config.control.socket, "read", **query)
    except DaemonNotRunning:
        try:
            result = asyncio.run(direct_read(config, **query))
        except (BusError, ControlError) as exc:
            return _fail(args, TEXT_READ_FAILED.format(error=exc))
    except ControlError as exc:
        return _fail(args, TEXT_READ_FAILED.format(error=exc))
    if args.json:
        print_json(result)
    else:
        print_read(result)
    return 0


def _watch(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    deadline = time.monotonic() + args.seconds if args.seconds else None
    interactive = sys.stdout.isatty() and not args.json
    formats = formats_of(config)
    while deadline is None or time.monotonic() < deadline:
        try:
            result = request(config.control.socket, "status")
        except ControlError as exc:
            return _fail(args, TEXT_NEEDS_DAEMON.format(error=exc), EXIT_UNAVAILABLE)
        if args.json:
            print_json(result["points"], indent=None)
        else:
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J")
            print_points(result["points"], formats)
            sys.stdout.flush()
        time.sleep(args.interval)
    return 0


def _alarms(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    action = args.alarm_action or "list"
    try:
        if action == "list":
            result = request(config.control.socket, "alarms")
        elif action == "ack":
            result = request(
                config.control.socket, "ack", alarm=args.alarm, by=args.by, note=args.note
            )
        elif action == "shelve":
            result = request(
                config.control.socket,
                "shelve",
                alarm=args.alarm,
                by=args.by,
                minutes=args.minutes,
                reason=args.reason,
            )
        else:
            result = request(config.control.socket, "unshelve", alarm=args.alarm, by=args.by)
    except DaemonNotRunning as exc:
        return _fail(args, TEXT_NEEDS_DAEMON.format(error=exc), EXIT_UNAVAILABLE)
    except ControlError as exc:
        return _fail(args, str(exc))
    if args.json:
        print_json(result)
    elif action == "list":
        print_alarms(result, formats_of(config))
    else:
        print_events(result, formats_of(config))
    return 0


def _test_alarm(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return EXIT_CONFIG
    try:
        result = request(config.control.socket, "test_alarm", point=args.point)
    except DaemonNotRunning as exc:
        return _fail(args, TEXT_NEEDS_DAEMON.format(error=exc), EXIT_UNAVAILABLE)
    except ControlError as exc:
        return _fail(args, str(exc))
    if args.json:
        print_json(result)
    else:
        for event in result:
            print(
                TEXT_TEST_EVENT.format(
                    event=word(event.get("event")), alarm=event.get("alarm"), seq=event.get("seq")
                )
            )
    return 0


def _selftest(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        checks = [Check("config", False, "; ".join(exc.errors))]
        _print_checks(args, checks)
        return EXIT_CONFIG
    try:
        answer = request(config.control.socket, "selftest")
        checks = [Check("daemon", True, TEXT_DAEMON_UP), *map(Check.from_dict, answer)]
    except DaemonNotRunning:
        checks = [Check("daemon", True, TEXT_DAEMON_DOWN), *offline_checks(config)]
    except ControlError as exc:
        checks = [Check("daemon", False, str(exc))]
    checks.insert(0, Check("config", True, str(args.config)))
    _print_checks(args, checks)
    return exit_status(checks)


# -- direct access, daemon stopped ------------------------------------------------------------


async def direct_read(
    config: GatewayConfig,
    *,
    device: str,
    address: int,
    count: int,
    table: str,
    type: str,
    word_order: str,
) -> dict[str, Any]:
    """One read straight on the bus, for when the daemon is not running."""
    devices = {d.name: d for d in config.modbus_devices()}
    if device not in devices:
        raise ControlError(
            TEXT_NO_DEVICE.format(name=device, config="the config", known=", ".join(devices))
        )
    dev = devices[device]
    bus_config = next(b for b in config.buses if b.name == dev.bus)
    bus = DRIVERS[bus_config.type].create(bus_config)
    try:
        return await read_values(
            bus,
            dev.unit,
            dev.timeout,
            address=address,
            count=count,
            table=table,
            type=type,
            word_order=word_order,
        )
    finally:
        await bus.close()


def offline_checks(config: GatewayConfig) -> list[Check]:
    """The checks that need no daemon."""
    checks = [
        check_store_file(config.store.path),
        check_broker(
            config.uplink,
            config.uplink.client_id or f"watchpost-{config.gateway.site}-{config.gateway.id}",
        ),
        check_clock(config.gateway.clock),
        check_disk(config.store.path),
        check_commands(config.commands),
    ]
    checks.extend(asyncio.run(_probe_devices(config)))
    return checks


async def _probe_devices(config: GatewayConfig) -> list[Check]:
    checks = []
    for device in config.devices:
        if not isinstance(device, DeviceConfig):
            checks.append(await _probe_source(config, device))
            continue
        point = device.points[0]
        try:
            await direct_read(
                config,
                device=device.name,
                address=point.address,
                count=1,
                table=point.table.value,
                type="uint16" if point.type == "bool" else point.type,
                word_order=point.word_order,
            )
        except (BusError, ControlError) as exc:
            checks.append(Check(f"device {device.name}", False, str(exc)))
        else:
            checks.append(Check(f"device {device.name}", True, TEXT_ANSWERS))
    return checks


async def _probe_source(config: GatewayConfig, device: DeviceBase) -> Check:
    """One poll of a meter or a line instrument, straight on its bus."""
    bus_config = next(b for b in config.buses if b.name == device.bus)
    bus = DRIVERS[bus_config.type].create(bus_config)
    try:
        reader = reader_for(device, bus, lambda: time.time_ns() // 1_000_000)
        await reader.poll(bus)
    finally:
        await bus.close()
    health = reader.health
    return Check(f"device {device.name}", health.state == "ok", health.last_error or TEXT_ANSWERS)


def _offline_status(config: GatewayConfig) -> dict[str, Any]:
    return {
        "daemon": "stopped",
        "gateway": config.gateway.id,
        "site": config.gateway.site,
        "devices": {d.name: {"state": "unknown", "bus": d.bus} for d in config.devices},
        "points": {},
        "alarms": [],
        "uplink": {"connected": False},
        "backlog": _backlog_from_file(config.store.path),
        "shutdown_orders": _orders_from_file(config),
    }


def _orders_from_file(config: GatewayConfig) -> list[dict[str, Any]]:
    """The shutdown orders the stopped daemon keeps (read only; none if unreadable)."""
    state_dir = config.gateway.state_dir or Path(config.store.path).parent
    try:
        orders = read_orders(state_dir / ORDERS_FILE)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        return [{"id": "?", "state": "unknown", "reason": str(exc)}]
    return describe_orders(orders, time.time_ns() // 1_000_000)


def _backlog_from_file(path: Path) -> dict[str, Any]:
    """The store's backlog read straight from its file (the daemon is not running)."""
    check = check_store_file(path)
    if not check.ok or not path.exists():
        return {"store": check.detail}
    try:
        return read_backlog(path)
    except sqlite3.Error as exc:
        return {"store": f"{path}: {exc}"}


# -- output ----------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> GatewayConfig | None:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print_config_error(exc)
        return None


def _fail(args: argparse.Namespace, message: str, status: int = EXIT_FAILED) -> int:
    if getattr(args, "json", False):
        print_json({"error": message})
    else:
        print(message, file=sys.stderr)
    return status


def _print_checks(args: argparse.Namespace, checks: list[Check]) -> None:
    if args.json:
        print_json([c.as_dict() for c in checks])
        return
    print_table(
        (_("check"), _("result"), _("detail")),
        # a detail the daemon wrote in another language: what is a whole msgid translates
        [(_check_label(c.name), TEXT_RESULTS[c.result], word(_(c.detail))) for c in checks],
    )


def _check_label(name: str) -> str:
    """A check's name (``device tank-1``, a key for scripts) as the table shows it."""
    kind, _space, subject = name.partition(" ")
    return f"{TEXT_CHECKS.get(kind, kind)} {subject}".rstrip()
