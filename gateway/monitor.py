"""`watchpost monitor`: what the central platform receives, live, from any broker.

Subscribes to the gateway topics the way a platform would and shows the latest reading of
every point, the alarm events as they arrive, and per-stream counters with `seq` gap checks.
On a terminal it redraws a screen once a second; otherwise (a pipe, a file, a log) it prints
one line per reading and per event, as they arrive. Values are written at the point's
resolution when ``--config`` names the gateway's config (``display``), as `status` does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from gettext import gettext as _
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from watchpost.clock import wall_ms
from watchpost.config import EXIT_CONFIG, ConfigError, load_config, print_config_error
from watchpost.config.uplink import BrokerAddress
from watchpost.display import Resolution, format_for, formats_of, unit, word
from watchpost.textout import pad, rpad

TEXT_HELP = _("show live what the platform receives from gateways over MQTT")
TEXT_BROKER_HELP = _("broker URL (default: [uplink] broker of --config)")
TEXT_CONFIG_HELP = _("a gateway config, for its broker and the units of its points")
TEXT_SECONDS_HELP = _("stop after this many seconds (default: run until Ctrl-C)")
TEXT_NEED_BROKER = _("give --broker or --config")
TEXT_TITLE = _("Watchpost monitor: what the platform receives from {broker}   {now}")
TEXT_STATUS = _("gateway {gateway}: {state}, version {version}, clock {clock}")
TEXT_STREAMS = _("stream      messages   last seq   gaps   replayed")
TEXT_READINGS = _("point                 value        unit     quality  age")
TEXT_ALARMS = _("alarm events (newest last)")
TEXT_NO_DATA = _("(waiting for data...)")
TEXT_CONNECT_FAILED = _("cannot reach the broker at {broker}: {error}")
TEXT_GAP = _("GAP in {stream}: expected seq {expected}, got {got}")
TEXT_REPLAY = _(" (replay)")
TEXT_ALARM_LINE = _(
    "{time} ALARM {event} {alarm}  {level} value={value} threshold={threshold}{replay}"
)
TEXT_ANOMALY_LINE = _("{time} ANOMALY {event} {model} score={score} points={points}{replay}")
TEXT_READING = _("{time} {gateway} {point} = {value}{unit} ({quality})")


@dataclass
class StreamCounters:
    messages: int = 0
    last_seq: int = 0
    gaps: int = 0
    replayed: int = 0


@dataclass
class PlatformView:
    """What has arrived, per gateway: the state a platform would keep."""

    units: dict[str, str] = field(default_factory=dict)
    formats: dict[str, Resolution] = field(default_factory=dict)
    every_reading: bool = False  # receive() returns a line per reading too (not a terminal)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    streams: dict[str, StreamCounters] = field(default_factory=dict)
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: deque[str] = field(default_factory=lambda: deque(maxlen=12))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, topic: str, payload: bytes | bytearray) -> list[str]:
        """Take one message; return the lines worth printing on their own."""
        try:
            message = json.loads(payload)
        except ValueError:
            return []
        if not isinstance(message, dict):
            return []
        stream = topic.rsplit("/", 1)[-1]
        lines: list[str] = []
        with self.lock:
            if stream == "status":
                self.status[str(message.get("gateway"))] = message
                return [_format_status(message)]
            counters = self.streams.setdefault(
                f"{message.get('gateway')}/{stream}", StreamCounters()
            )
            seq = message.get("seq")
            if isinstance(seq, int):
                if counters.last_seq and seq > counters.last_seq + 1:
                    counters.gaps += 1
                    lines.append(
                        TEXT_GAP.format(stream=stream, expected=counters.last_seq + 1, got=seq)
                    )
                counters.last_seq = max(counters.last_seq, seq)
            counters.messages += 1
            counters.replayed += bool(message.get("replay"))
            if stream == "telemetry":
                for sample in message.get("samples", []):
                    self.readings[sample["point"]] = sample
                    if self.every_reading:
                        lines.append(self._reading_line(str(message.get("gateway")), sample))
            elif stream in ("alarms", "anomalies"):
                line = _format_event(stream, message, self.formats)
                self.alarms.append(line)
                lines.append(line)
        return lines

    def _reading_line(self, gateway: str, sample: dict[str, Any]) -> str:
        point = str(sample.get("point"))
        ts = sample.get("ts")
        when = datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int) else None
        return TEXT_READING.format(
            time=f"{when:%H:%M:%S}" if when else "-",
            gateway=gateway,
            point=point,
            value=format_for(self.formats, point, sample.get("value")),
            unit=f" {unit(self.units[point])}" if self.units.get(point) else "",
            quality=word(sample.get("quality", "")),
        )

    def screen(self, broker: str) -> str:
        width = shutil.get_terminal_size((100, 40)).columns
        now = datetime.now(UTC).strftime("%H:%M:%S UTC")
        out = [TEXT_TITLE.format(broker=broker, now=now), "=" * min(width, 100)]
        with self.lock:
            out += [_format_status(s) for s in self.status.values()] or [TEXT_NO_DATA]
            out += ["", TEXT_STREAMS]
            for name, c in sorted(self.streams.items()):
                out.append(
                    f"{name.split('/')[-1]:<10} {c.messages:>9} {c.last_seq:>10} "
                    f"{c.gaps:>6} {c.replayed:>10}"
                )
            out += ["", TEXT_READINGS]
            now_ms = wall_ms()
            for point, sample in sorted(self.readings.items()):
                shown = format_for(self.formats, point, sample.get("value"))
                age = (now_ms - sample.get("ts", now_ms)) / 1000
                out.append(
                    f"{point:<21} {rpad(shown, 10)}   {pad(unit(self.units.get(point, '')), 8)} "
                    f"{pad(word(sample.get('quality', '')), 8)} {age:4.0f}s"
                )
            out += ["", TEXT_ALARMS, *self.alarms]
        return "\n".join(out)


def _format_status(message: dict[str, Any]) -> str:
    return TEXT_STATUS.format(
        gateway=message.get("gateway"),
        state=word(message.get("state")),
        version=message.get("version"),
        clock=word(message.get("clock")),
    )


def _format_event(stream: str, message: dict[str, Any], formats: dict[str, Resolution]) -> str:
    ts = message.get("sample_ts") or message.get("ts") or 0
    when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%H:%M:%S")
    replay = TEXT_REPLAY if message.get("replay") else ""
    if stream == "alarms":
        point = str(message.get("point") or str(message.get("alarm", "")).split("/")[0])
        return TEXT_ALARM_LINE.format(
            time=when,
            event=pad(word(message.get("event", "")), 12),
            alarm=message.get("alarm", ""),
            level=word(message.get("level")),
            value=format_for(formats, point, message.get("value")),
            threshold=format_for(formats, point, message.get("threshold")),
            replay=replay,
        )
    return TEXT_ANOMALY_LINE.format(
        time=when,
        event=pad(word(message.get("event", "")), 10),
        model=message.get("model", ""),
        score=Resolution(3).format(message.get("score")),
        points=",".join(message.get("points", [])),
        replay=replay,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitor = subparsers.add_parser("monitor", help=TEXT_HELP)
    monitor.add_argument("--broker", help=TEXT_BROKER_HELP)
    monitor.add_argument("--config", type=Path, help=TEXT_CONFIG_HELP)
    monitor.add_argument("--seconds", type=float, help=TEXT_SECONDS_HELP)
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    view = PlatformView()
    broker_url = args.broker
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print_config_error(exc)
            return EXIT_CONFIG
        broker_url = broker_url or config.uplink.broker
        view.units = {point.name: point.unit for _device, point in config.points()}
        view.formats = formats_of(config)
    if not broker_url:
        print(TEXT_NEED_BROKER, file=sys.stderr)
        return 2
    address = BrokerAddress.parse(broker_url)
    interactive = sys.stdout.isatty()
    view.every_reading = not interactive

    def on_message(_client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        for line in view.receive(msg.topic, bytes(msg.payload)):
            if not interactive:
                print(line, flush=True)

    def on_connect(client: mqtt.Client, *_args: object) -> None:
        client.subscribe("watchpost/v1/#", qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.on_connect = on_connect
    try:
        client.connect(address.host, address.port, keepalive=30)
    except OSError as exc:
        print(TEXT_CONNECT_FAILED.format(broker=broker_url, error=exc), file=sys.stderr)
        return 1
    client.loop_start()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J" + view.screen(broker_url) + "\n")
                sys.stdout.flush()
            time.sleep(1.0)
    finally:
        client.loop_stop()
        client.disconnect()
    return 0
