"""The daemon: wires the parts together and runs them until told to stop.

    poller -> alarms -> store (alarms stream, durable)
           -> telemetry batcher -> store (telemetry stream)
    store -> uplink -> platform
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from gettext import gettext as _
from pathlib import Path
from typing import Any

from watchpost import __version__
from watchpost.alarms import AlarmEngine, AlarmEvent
from watchpost.config import (
    EXIT_CONFIG,
    ConfigError,
    GatewayConfig,
    load_config,
    print_config_error,
)
from watchpost.drivers import DRIVERS
from watchpost.poller import BusScheduler, DeviceReader, Poller, wall_clock_ms
from watchpost.samples import Sample
from watchpost.store import Store
from watchpost.telemetry import TelemetryBatcher
from watchpost.uplink import Uplink

log = logging.getLogger(__name__)

TEXT_RUN_HELP = _("run the gateway daemon")
TEXT_CONFIG_HELP = _("the gateway's config file")
TEXT_STARTED = "gateway %s/%s started: %d buses, %d devices, %d points"
TEXT_STOPPING = "stopping on %s"


def boot_id() -> str:
    """The kernel's id of this boot, so a platform can tell restarts from reboots."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return str(uuid.uuid4())


class Gateway:
    """The running parts of one gateway and the paths between them."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.now_ms = wall_clock_ms
        self.store = Store(config.store, gateway=config.gateway.id)
        self.alarms = AlarmEngine(
            {point.name: point.alarms for _device, point in config.points()}, self.now_ms)
        self.latest: dict[str, Sample] = {}
        self._alarm_queue: asyncio.Queue[AlarmEvent] = asyncio.Queue()
        self.telemetry = TelemetryBatcher(self._put_telemetry)
        self.poller = Poller(self._schedulers())
        self.uplink = Uplink(
            config.uplink, self.store, site=config.gateway.site, gateway=config.gateway.id,
            version=__version__, boot_id=boot_id(), health=self.health,
        )

    def _schedulers(self) -> list[BusScheduler]:
        schedulers = []
        for bus_config in self.config.buses:
            readers = [DeviceReader(device, self.now_ms) for device in self.config.devices
                       if device.bus == bus_config.name]
            if readers:
                bus = DRIVERS[bus_config.type].create(bus_config)
                schedulers.append(BusScheduler(bus, readers, self.on_samples))
        return schedulers

    def on_samples(self, samples: Sequence[Sample]) -> None:
        """The poll path: alarms first, then everything that may lag behind."""
        for event in self.alarms.evaluate(samples):
            self._alarm_queue.put_nowait(event)
        for sample in samples:
            self.latest[sample.point] = sample
        self.telemetry.add(samples)

    async def _record_alarms(self) -> None:
        while True:
            event = await self._alarm_queue.get()
            await self.store.put("alarms", event.body(), ts=event.decided_ts, durable=True)

    async def _put_telemetry(self, batch: list[dict[str, Any]]) -> None:
        await self.store.put("telemetry", {"samples": batch}, ts=self.now_ms(), durable=False)

    def health(self) -> dict[str, Any]:
        """The body of the `health` message."""
        return {
            "devices": {name: asdict(state) for name, state in self.poller.devices().items()},
            "backlog": self.store.backlog(),
            "active_alarms": len(self.alarms.active()),
        }

    async def run(self) -> None:
        config = self.config
        log.warning(TEXT_STARTED, config.gateway.site, config.gateway.id, len(config.buses),
                    len(config.devices), sum(1 for _ in config.points()))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.poller.run(), name="poller")
                group.create_task(self._record_alarms(), name="alarm-recorder")
                group.create_task(self.telemetry.run(), name="telemetry")
                group.create_task(self.uplink.run(), name="uplink")
        finally:
            await self._drain_alarm_queue()
            self.store.close()

    async def _drain_alarm_queue(self) -> None:
        while not self._alarm_queue.empty():
            event = self._alarm_queue.get_nowait()
            await self.store.put("alarms", event.body(), ts=event.decided_ts, durable=True)


async def _run_until_signalled(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, main, signum)
    with contextlib.suppress(asyncio.CancelledError):
        await gateway.run()


def _stop(task: asyncio.Task[Any], signum: int) -> None:
    log.warning(TEXT_STOPPING, signal.Signals(signum).name)
    task.cancel()


# -- the `watchpost run` command -------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help=TEXT_RUN_HELP)
    run.add_argument("--config", type=Path, default=Path("/etc/watchpost/gateway.toml"),
                     help=TEXT_CONFIG_HELP)
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    asyncio.run(_run_until_signalled(Gateway(config)))
    return 0
