"""The daemon: wires the parts together and runs them until told to stop.

poller -> alarm engine -> recorder -> outbox (`alarms`, durable) -> store -> uplink -> platform
       -> telemetry batcher -> outbox (`telemetry`)
       -> anomaly runner (LiteRT, off the loop) -> outbox (`anomalies`, durable)
control socket (crews' CLI) and platform commands -> alarm actions -> alarm engine
systemd watchdog <- poll loop and store writer alive
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from gettext import gettext as _
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchpost import __version__, hangup, memtrim
from watchpost.actions import ActionError, AlarmActions
from watchpost.alarm_state import AlarmStateFile
from watchpost.alarms import AlarmEngine, AlarmEvent, AlarmHousekeeper
from watchpost.anomaly_part import AnomalyError, UnknownModelError, open_anomaly
from watchpost.backoff import Backoff
from watchpost.certrenew import CertificateDesk, ClientCertificates
from watchpost.clock import Clock, always_synced, kernel_synced, monotonic_ms
from watchpost.command_auth import SEEN_FILE, CommandVerifier, load_verify_key
from watchpost.commands import PlatformCommands
from watchpost.config.paths import check_file_modes, check_paths
from watchpost.config_child import load as load_config_isolated
from watchpost.control import ControlError, ControlServer
from watchpost.drivers.factories import open_bus
from watchpost.energy import FILE_NAME as ENERGY_FILE
from watchpost.energy import DailyEnergy, DayFigure, energy_points
from watchpost.history import HistoryRecorder
from watchpost.messages import (
    AnomalyMessage,
    CertificateRequest,
    EnergyDay,
    SampleReading,
    TelemetryBatch,
)
from watchpost.outbox import Outbox
from watchpost.outputs import OutputDriver, fault_levels
from watchpost.poller import BusScheduler, Poller, reader_for
from watchpost.recorder import AlarmRecorder
from watchpost.register_read import read_values
from watchpost.resend import GapRepair
from watchpost.samples import Sample
from watchpost.sdnotify import Notifier, Watchdog
from watchpost.selftest import Check, check_clock, check_commands, check_disk
from watchpost.settings import EXIT_CONFIG, ConfigError, GatewayConfig, print_config_error
from watchpost.shutdown import FILE_NAME as ORDERS_FILE
from watchpost.shutdown import OrderDesk, ShutdownOrders
from watchpost.store import Store, StoreFullError
from watchpost.telemetry import TelemetryBatcher
from watchpost.ticks import sleep_to_tick
from watchpost.uplink import Uplink
from watchpost.version import log_rollback, software

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TEXT_RUN_HELP = _("run the gateway daemon")
TEXT_CONFIG_HELP = _("the gateway's config file")
TEXT_STARTED = _("gateway %s/%s started: %d buses, %d devices, %d points")
TEXT_CALIBRATED = _("calibrated")
TEXT_CALIBRATING = _("calibrating: {rows} of {needed} rows")
TEXT_PART_FAILURES = _("{error} ({count} time(s))")
TEXT_STOPPING = _("stopping on %s")
TEXT_PART_FAILED = _("%s failed; it starts again after a pause, the rest of the gateway goes on")
TEXT_RELOADED = _("restarting with the config read anew from %s")
TEXT_UNSIGNED_COMMANDS = _(
    "[commands] verify_key is not set: commands from the platform run unsigned, so anyone "
    "who may publish on the broker's cmd/ topics can acknowledge or shelve alarms"
)
TEXT_DRAIN_TIMEOUT = _(
    "alarm events queued at the stop were not stored within %g s (the disk is full?)"
)
TEXT_RELOAD_REFUSED = _("reload refused, the running config stays: %s")
CONTROL_READY_WAIT = 5.0  # seconds READY=1 waits for the control socket at most
SWITCH_INTERVAL = 0.001  # seconds; see _run
DRAIN_TIMEOUT = 5.0  # seconds the alarm events queued at a stop may take to be stored
RELOAD_DELAY = 1.0  # seconds between accepting a reload and restarting, for the reply to leave
TEXT_NO_DEVICE = _("no device named {name!r} (devices: {known})")
TEXT_BROKER_CONNECTED = _("{broker}: connected")
TEXT_BROKER_DOWN = _("{broker}: not connected; last error: {error}")
TEXT_STORE_FULL = _(
    "{path}: its disk is full since {since}; alarms use the room kept for them, "
    "{dropped} telemetry message(s) not stored"
)
TEXT_NOT_TRIED = _("none yet (still trying to connect)")


class Gateway:
    """The running parts of one gateway and the paths between them."""

    def __init__(self, config: GatewayConfig, config_path: Path) -> None:
        self.config = config
        self.config_path = config_path
        self.next_config: GatewayConfig | None = None  # set when a reload was asked for
        self.ending = False  # SIGTERM or SIGINT came: no reload may restart it any more
        self.stop: Callable[[], object] = lambda: None  # set by whoever runs us
        self.started = time.time()
        self.failed_parts: dict[str, dict[str, Any]] = {}  # part -> its last failure
        self.clock = Clock(always_synced if config.gateway.clock == "rtc" else kernel_synced)
        self.now_ms = self.clock.now_ms
        state_dir = config.gateway.state_dir or Path(config.store.path).parent
        self.store = Store(config.store, clock=self.clock)
        self.outbox = Outbox(self.store, gateway=config.gateway.id, clock=self.clock)
        # shutdown orders from the platform arm the power watch; kept across restarts
        self.orders = ShutdownOrders(state_dir / ORDERS_FILE, self.now_ms)
        self.alarms = AlarmEngine(
            {point.name: point.alarms for _device, point in config.points()},
            self.now_ms,
            outputs=fault_levels(config.outputs),
            monotonic_ms=monotonic_ms,
            orders=self.orders,
        )
        self.energy = DailyEnergy(
            energy_points(config), self._put_energy, state=state_dir / ENERGY_FILE
        )
        self._energy_puts: set[asyncio.Task[int]] = set()
        # latched, acknowledged and shelved alarms survive a restart
        self.alarm_keeper = AlarmHousekeeper(self.alarms, AlarmStateFile(state_dir / "alarms.json"))
        self.alarm_keeper.restore()
        # what the platform was told (the store's last event of each alarm, committed with
        # it) wins over a state file saved a moment before or after: a kill repeats nothing
        last, complete = self.store.last_events()
        self.alarms.reconcile({k: json.loads(v) for k, v in last.items()}, complete=complete)
        self.anomaly = open_anomaly(config.anomaly, state_dir=state_dir, emit=self._put_anomaly)
        self.latest: dict[str, Sample] = {}
        self.units = {point.name: point.unit for _device, point in config.points()}
        # every transition, from samples or from a crew's or platform's action, is stored
        self.recorder = AlarmRecorder(self.outbox)
        self.alarms.add_listener(self.recorder)
        self.actions = AlarmActions(self.alarms, self.recorder)
        self.alarm_keeper.report_damage()  # an unusable alarms.json: a fault, never a stop
        self.telemetry = TelemetryBatcher(self._put_telemetry)
        self.notifier = Notifier.from_environment()
        self.watchdog = Watchdog.from_environment(self.notifier)
        self._poll_alive = self.watchdog.register("poll loop")
        self._store_alive = self.watchdog.register("store writer")
        self.poller = Poller(self._schedulers())
        self.history = HistoryRecorder.from_config(
            config.history, state_dir=state_dir, devices=self.poller.devices, now_ms=self.now_ms
        )
        self.alarms.add_listener(self.history.record_alarm)
        self.outputs = OutputDriver(
            config.outputs,
            engine=self.alarms,
            devices=config.modbus_devices(),
            schedulers=self.poller.schedulers,
        )
        # a client certificate (mutual TLS) is renewed before it expires: docs/fleet.md
        self.certificates = (
            ClientCertificates(config.uplink, state_dir / "tls")
            if config.uplink.cert_file is not None
            else None
        )
        self.uplink = Uplink(
            config.uplink,
            self.outbox,
            site=config.gateway.site,
            gateway=config.gateway.id,
            version=__version__,
            boot_id=self.clock.boot_id,
            health=self.health,
            clock=self.clock,
            alarm_snapshot=self._alarm_snapshot,
            certificates=self.certificates,
        )
        self.control = ControlServer(config.control.socket, self._control_handlers())
        commands = PlatformCommands(
            self.actions,
            ping=self._ping,
            reload=self.reload,
            orders=OrderDesk(self.orders, self._orders_changed),
            rebaseline=self.anomaly.rebaseline,
            certificates=CertificateDesk(
                self.certificates, trusted_ca=config.uplink.ca_file, reconnect=self._reconnect_soon
            )
            if self.certificates is not None
            else None,
            verifier=CommandVerifier(
                _verify_key(config, config_path),
                gateway=config.gateway.id,
                max_age_s=config.commands.max_age,
                now_ms=self.now_ms,
                seen_file=state_dir / SEEN_FILE,
            ),
            resend=GapRepair(self.store, self.uplink.resend),
        )
        for name, handler in commands.handlers().items():
            self.uplink.on_command(name, handler)

    def _schedulers(self) -> list[BusScheduler]:
        """One per bus, also for a bus that only carries outputs (it connects on first use)."""
        schedulers = []
        for bus_config in self.config.buses:
            bus = open_bus(bus_config)
            readers = [
                reader_for(device, bus, self.now_ms)
                for device in self.config.devices
                if device.bus == bus_config.name
            ]
            schedulers.append(BusScheduler(bus, readers, self.on_samples))
        return schedulers

    # -- the poll path: nothing here waits ------------------------------------------------------

    def on_samples(self, samples: Sequence[Sample]) -> None:
        """Alarms first (their events committed before anything else runs), then everything
        that may lag behind."""
        if self.alarms.evaluate(samples):
            self.outbox.commit_submitted()
        self.energy.observe(samples)
        for sample in samples:
            self.latest[sample.point] = sample
            self.anomaly.observe(sample)
        self.telemetry.add(samples)
        self.history.observe(samples)

    async def _put_telemetry(self, batches: list[list[SampleReading]]) -> None:
        await self.outbox.put_all([TelemetryBatch.of(batch) for batch in batches])

    def _put_energy(self, figure: DayFigure) -> None:
        """A closed day of an energy point, to the `energy` stream (durable: once a day)."""
        task = asyncio.get_running_loop().create_task(
            self.outbox.put(EnergyDay(**figure.body()), ts=figure.end_ts)
        )
        self._energy_puts.add(task)
        task.add_done_callback(self._energy_puts.discard)

    def _orders_changed(self) -> list[AlarmEvent]:
        """After a change of the orders: clear the power watches a cancellation disarms
        (their events are recorded like any other), and tell the platform."""
        events = self.alarms.check_orders()
        self.uplink.refresh_status()
        return events

    async def _put_anomaly(self, event: dict[str, Any]) -> None:
        ts = int(event.get("ts", self.now_ms()))
        body = {key: value for key, value in event.items() if key != "ts"}
        await self.outbox.put(AnomalyMessage(**body), ts=ts)

    def _reconnect_soon(self) -> None:
        """Reconnect (with a new client certificate) once the command's reply has left."""
        asyncio.get_running_loop().call_later(RELOAD_DELAY, self.uplink.reconnect)

    async def _certificate_watch(self, period: float = 3600.0) -> None:
        """Once an hour: a client certificate close to its expiry gets a new key and a CSR,
        sent to the platform as a `csr` message (the platform answers with cmd/cert_install);
        a renewed certificate whose trial failed is tried again."""
        certificates = self.certificates
        if certificates is None:
            return
        while True:
            if certificates.retry_trial():  # a renewed certificate the broker did not take yet
                self.uplink.reconnect()
            csr = await asyncio.to_thread(certificates.announce_if_due, dt.datetime.now(dt.UTC))
            if csr is not None:
                not_after = certificates.health(self.now_ms())["not_after"]
                await self.outbox.put(
                    CertificateRequest(csr=csr, not_after=not_after, reason="expiring")
                )
            await asyncio.sleep(period)

    async def _poll_liveness(self, period: float = 2.0) -> None:
        """The poll loop is alive while the event loop turns and no bus is wedged in a poll
        longer than its timeouts allow."""
        while True:
            if not self.poller.stuck():
                self._poll_alive.beat()
            await sleep_to_tick(period)

    async def _disk_watch(self, period: float = 1.0) -> None:
        """The `disk_full` fault (point `gateway`) while the store's disk is full."""
        while True:
            full = self.store.disk_full
            reason = None if full is None else str(full["reason"])
            self.alarms.report_gateway_fault("disk_full", active=full is not None, reason=reason)
            await sleep_to_tick(period)

    async def _store_liveness(self) -> None:
        """The store writer is alive while it waits with nothing in hand or makes progress
        in time (a commit hung in the disk is not), or, on a full disk that holds commits
        back, while it keeps trying. Asked at the commit interval, but at least every 5 s so
        that the watchdog sees it; nothing is handed to the writer for it (a flush through a
        worker thread each second was about 40 % of the idle daemon's CPU)."""
        period = min(max(self.config.store.commit_interval, 1.0), 5.0)
        while True:
            if self.store.writer_alive(within=4 * period):
                self._store_alive.beat()
            await sleep_to_tick(period)

    # -- state for `health`, `status` and the CLI -------------------------------------------

    def health(self) -> dict[str, Any]:
        """The gateway's part of `health` (the uplink adds backlog, disk, CPU, clock)."""
        return {
            "devices": {name: asdict(state) for name, state in self.poller.devices().items()},
            "active_alarms": self.alarms.active_count(),
            "anomaly": self.anomaly.status(),
            "failed_parts": self.failed_parts,
            "uptime_s": round(time.time() - self.started),
            "software": software(),
            **(
                {"certificate": self.certificates.health(self.now_ms())}
                if self.certificates is not None
                else {}
            ),
        }

    async def _status(self, _args: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        devices = {}
        for name, state in self.poller.devices().items():
            device = next(d for d in config.devices if d.name == name)
            devices[name] = {**asdict(state), "bus": device.bus}
        return {
            "daemon": "running",
            "site": config.gateway.site,
            "gateway": config.gateway.id,
            "version": __version__,
            "software": software(),
            "clock": self.clock.state,
            "uptime_s": round(time.time() - self.started),
            "uplink": {
                "connected": self.uplink.connected,
                "broker": config.uplink.broker,
                "current_broker": self.uplink.stats["broker"],
                **{k: v for k, v in self.uplink.stats.items() if k != "broker"},
            },
            "backlog": self.store.backlog(),
            "devices": devices,
            "points": {
                name: {
                    "value": s.value,
                    "quality": s.quality.value,
                    "ts": s.ts,
                    "unit": self.units.get(name, ""),
                }
                for name, s in self.latest.items()
            },
            "alarms": self._active_alarms(),
            "shutdown_orders": self.orders.listing(),
            "anomaly": self.anomaly.status(),
            "failed_parts": self.failed_parts,
            "outputs": self.outputs.status(),
        }

    def _alarm_snapshot(self) -> dict[str, Any]:
        """For the retained `status`: every raised or shelved alarm, as of `alarms_seq`.

        A platform that (re)subscribes takes this picture and applies the `alarms` events
        with a larger seq; older ones still arriving from the backlog are history.
        """
        return {
            "active_alarms": self.alarms.active(),
            "alarms_seq": self.store.last_seq("alarms"),
            "shutdown_orders": self.orders.listing(),
        }

    def _active_alarms(self) -> list[dict[str, Any]]:
        return self.alarms.active()

    def _ping(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "clock": self.clock.state,
            "ts": self.now_ms(),
            "uptime_s": round(time.time() - self.started),
        }

    async def reload(self) -> list[str]:
        """Re-read the config file; if it is good, restart the gateway with it (soon, so
        that the reply to the platform goes out first). Returns the errors otherwise."""
        try:
            config = await asyncio.to_thread(load_config_isolated, self.config_path)
            problems = check_file_modes(config, self.config_path, require_files=True)
            problems += check_paths(config)
        except ConfigError as exc:
            problems = exc.errors
        if problems:
            log.error(TEXT_RELOAD_REFUSED, "; ".join(problems))
            return problems
        if self.ending:  # a stop came while the file was read: the stop wins
            return []
        self.next_config = config
        asyncio.get_running_loop().call_later(RELOAD_DELAY, self.stop)
        return []

    # -- control socket operations ---------------------------------------------------------

    def _control_handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {
            "status": self._status,
            "read": self._read,
            "alarms": self._alarms_list,
            "ack": self._alarm_action("ack"),
            "shelve": self._alarm_action("shelve"),
            "unshelve": self._alarm_action("unshelve"),
            "test_alarm": self._alarm_action("test_alarm"),
            "selftest": self._selftest,
            "anomaly_rebaseline": self._anomaly_rebaseline,
        }

    async def _anomaly_rebaseline(self, args: dict[str, Any]) -> dict[str, Any]:
        """A crew's rebaseline: recorded (stored, durable) before the answer."""
        try:
            return await self.anomaly.rebaseline(
                str(args.get("model", "")), by=str(args.get("by") or "crew")
            )
        except UnknownModelError as exc:
            raise ControlError(str(exc)) from exc

    async def _read(self, args: dict[str, Any]) -> dict[str, Any]:
        devices = {d.name: d for d in self.config.modbus_devices()}
        device = devices.get(args.get("device", ""))
        if device is None:
            raise ControlError(
                TEXT_NO_DEVICE.format(name=args.get("device"), known=", ".join(devices))
            )
        scheduler = self.poller.schedulers[device.bus]
        query = {k: args[k] for k in ("address", "count", "table", "type", "word_order")}
        return await scheduler.transact(
            lambda bus: read_values(bus, device.unit, device.timeout, **query)
        )

    async def _alarms_list(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        return self._active_alarms()

    def _alarm_action(self, name: str) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        """The crews' side of an alarm action: the same service as the platform's commands."""

        async def operate(args: dict[str, Any]) -> Any:
            try:
                return await self.actions.perform(name, args)
            except ActionError as exc:
                raise ControlError(str(exc)) from exc

        return operate

    def _broker_check(self) -> Check:
        broker = self.config.uplink.broker
        if self.uplink.connected:  # to the primary or, after a failover, to a backup
            stats = self.uplink.stats
            current = stats["broker"] if stats.get("broker_role") == "backup" else broker
            return Check("broker", True, TEXT_BROKER_CONNECTED.format(broker=current))
        error = self.uplink.last_error or TEXT_NOT_TRIED
        return Check("broker", False, TEXT_BROKER_DOWN.format(broker=broker, error=error))

    def _store_check(self) -> Check:
        path = str(self.config.store.path)
        full = self.store.disk_full
        if full is not None:
            since = dt.datetime.fromtimestamp(full["since"] / 1000, dt.UTC)
            return Check(
                "store",
                False,
                TEXT_STORE_FULL.format(
                    path=path,
                    since=since.strftime("%Y-%m-%d %H:%M:%SZ"),
                    dropped=full["telemetry_dropped"]["messages"],
                ),
            )
        return Check("store", not self.store.backlog().get("failing", False), path)

    async def _selftest(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        checks = [
            self._store_check(),
            self._broker_check(),
            check_clock(self.config.gateway.clock),
            check_disk(Path(self.config.store.path)),
            check_commands(self.config.commands),
        ]
        for name, state in self.poller.devices().items():
            checks.append(
                Check(f"device {name}", state.state == "ok", state.last_error or state.state)
            )
        for name, failure in self.failed_parts.items():
            checks.append(
                Check(
                    f"part {name}",
                    False,
                    TEXT_PART_FAILURES.format(error=failure["error"], count=failure["count"]),
                )
            )
        for name, model in self.anomaly.status()["models"].items():
            checks.append(
                Check(
                    f"model {name}",
                    True,
                    TEXT_CALIBRATED
                    if model["calibrated"]
                    else TEXT_CALIBRATING.format(
                        rows=model["calibration_rows"][0], needed=model["calibration_rows"][1]
                    ),
                )
            )
        return [c.as_dict() for c in checks]

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        log.warning(
            TEXT_STARTED,
            config.gateway.site,
            config.gateway.id,
            len(config.buses),
            len(config.devices),
            sum(1 for _ in config.points()),
        )
        try:
            parts: dict[str, Callable[[], Awaitable[None]]] = {
                "poller": self.poller.run,
                "alarm-keeper": self.alarm_keeper.run,
                "outputs": self.outputs.run,
                "telemetry": self.telemetry.run,
                "history": self.history.run,
                "anomaly": self.anomaly.run,
                "uplink": self.uplink.run,
                "control": self.control.run,
                "watchdog": self.watchdog.run,
                "poll-liveness": self._poll_liveness,
                "certificate-watch": self._certificate_watch,
                "store-liveness": self._store_liveness,
                "disk-watch": self._disk_watch,
                "memory-trim": memtrim.run,
            }
            async with asyncio.TaskGroup() as group:
                for name, run in parts.items():
                    group.create_task(self._supervised(name, run), name=name)
                # ready once the crews' socket answers (or, if it cannot start, after a while:
                # the supervisor retries it, and the gateway's alarms do not wait for it)
                await asyncio.wait(
                    [group.create_task(self.control.listening.wait(), name="control-ready")],
                    timeout=CONTROL_READY_WAIT,
                )
                self.notifier.ready(status=f"polling {len(config.devices)} devices")
        finally:
            self.notifier.stopping()
            try:  # a full disk without room: the store says at close what it could not keep
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await self.recorder.drain()
            except TimeoutError:
                log.error(TEXT_DRAIN_TIMEOUT, DRAIN_TIMEOUT)
            self.store.close()

    async def _supervised(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run one part; if it fails, report it and start it again after a capped backoff.

        A part that fails (a model, the history file, a bug) never takes the rest of the
        gateway down with it: the alarms keep working, and `health` says what is broken.
        """
        backoff = Backoff(initial=1.0, cap=60.0)
        while True:
            started = time.monotonic()
            try:
                await run()
                return
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if self.failed_parts.get(name, {}).get("error") != error:
                    log.exception(TEXT_PART_FAILED, name)  # once per distinct failure
                self.failed_parts[name] = {
                    "error": error,
                    "ts": self.now_ms(),
                    "count": self.failed_parts.get(name, {}).get("count", 0) + 1,
                }
            if time.monotonic() - started > 60:
                backoff.reset()  # it ran for a while: a new failure starts from the bottom
            await asyncio.sleep(backoff.next_delay())


async def _serve(config: GatewayConfig, config_path: Path) -> int:
    """Run the gateway until SIGTERM or SIGINT; SIGHUP or a platform's `reload` command
    restarts it in place with the config file read anew."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            gateway = Gateway(config, config_path)  # the Modbus clients need the running loop
        except AnomalyError as exc:
            print_config_error(ConfigError(config_path, [f"anomaly: {exc}"]))
            return EXIT_CONFIG
        except ConfigError as exc:
            print_config_error(exc)
            return EXIT_CONFIG
        except StoreFullError as exc:  # no room even to open it: systemd tries again later
            log.error("%s", exc)
            return 1
        task = asyncio.create_task(gateway.run(), name="gateway")
        gateway.stop = task.cancel
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stop, gateway, task, signum)
        loop.add_signal_handler(signal.SIGHUP, _reload, loop, gateway)
        if hangup.take():  # a SIGHUP came while the daemon started: reload now
            _reload(loop, gateway)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if gateway.next_config is None:
            return 0
        log.warning(TEXT_RELOADED, config_path)
        config = gateway.next_config


def _verify_key(config: GatewayConfig, config_path: Path) -> Ed25519PublicKey | None:
    """The platform's key for signed commands; None (with a warning) when there is none."""
    path = config.commands.verify_key
    if path is None:
        log.warning(TEXT_UNSIGNED_COMMANDS)
        return None
    try:
        return load_verify_key(path)
    except ValueError as exc:
        raise ConfigError(config_path, [f"commands.verify_key: {exc}"]) from exc


def _stop(gateway: Gateway, task: asyncio.Task[Any], signum: int) -> None:
    log.warning(TEXT_STOPPING, signal.Signals(signum).name)
    gateway.ending = True  # a stop wins over a reload that is still pending or still reading
    gateway.next_config = None
    task.cancel()


def _reload(loop: asyncio.AbstractEventLoop, gateway: Gateway) -> None:
    loop.create_task(gateway.reload(), name="reload")


# -- the `watchpost run` command -------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help=TEXT_RUN_HELP)
    run.add_argument(
        "--config", type=Path, default=Path("/etc/watchpost/gateway.toml"), help=TEXT_CONFIG_HELP
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config_isolated(args.config)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    problems = check_file_modes(config, args.config, require_files=True) + check_paths(config)
    if problems:
        print_config_error(ConfigError(args.config, problems))
        return EXIT_CONFIG
    # Hand the GIL between the event loop and the store's writer thread every 1 ms, not 5:
    # an alarm's durable commit waits on that handoff (p99 read-to-durable 9-16 ms at 5 ms,
    # 7.6-8.5 ms at 1 ms, bench/alarm_latency.py)
    sys.setswitchinterval(SWITCH_INTERVAL)
    log_rollback()
    return asyncio.run(_serve(config, args.config))
