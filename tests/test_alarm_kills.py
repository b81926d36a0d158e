"""Repeated SIGKILLs of the daemon while an alarm goes up and down: on the `alarms` stream
its events still alternate raised, cleared, raised, ... - never one raised or cleared twice
in a row with new seqs (the alarm state is kept consistent with the store)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Broker, Subscriber
from tests.modbus_servers import MisshapenAnswers
from tests.site_run import stop, watchpost

ROOT = "watchpost/v1/kill-site/gw-k/"
KILLS = 12

GATEWAY = """
[gateway]
site = "kill-site"
id = "gw-k"
[uplink]
broker = "{broker}"
[store]
path = "var/buffer.db"
[control]
socket = "var/control.sock"
[[buses]]
type = "modbus_tcp"
name = "tcp"
host = "127.0.0.1"
port = {port}
[[devices]]
name = "gas"
bus = "tcp"
interval = 0.1
[[devices.points]]
name = "gas_a"
unit = "%LEL"
address = 0
scale = 0.01
[[devices.points.alarms]]
kind = "high"
threshold = 10.0
"""


@pytest.mark.slow
def test_sigkills_never_repeat_an_alarm_event(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "alarms")
    rng = random.Random()
    stop_toggling = threading.Event()
    with MisshapenAnswers({1: "exact"}, value=500) as server:

        def toggle() -> None:  # 5 and 15 %LEL in turn: the alarm goes up and down
            while not stop_toggling.wait(rng.uniform(0.3, 0.9)):
                server.value = 2000 - server.value

        toggler = threading.Thread(target=toggle, daemon=True)
        toggler.start()
        config = tmp_path / "gateway.toml"
        config.write_text(GATEWAY.format(broker=broker.url, port=server.port))
        log = tmp_path / "gateway.log"
        try:
            for _kill in range(KILLS):
                process = watchpost("run", "--config", str(config), cwd=tmp_path, log=log)
                time.sleep(rng.uniform(1.5, 3.5))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
            stop_toggling.set()
            toggler.join(5)
            process = watchpost("run", "--config", str(config), cwd=tmp_path, log=log)
            time.sleep(4)  # the backlog drains
            assert stop(process) == 0, log.read_text()[-3000:]
        finally:
            stop_toggling.set()
    by_seq = {m["seq"]: m for m in sub.get(ROOT + "alarms")}  # at least once: de-duplicated
    events = [by_seq[seq]["event"] for seq in sorted(by_seq)]
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), "a gap in the alarms seq"
    assert len(events) >= 6, events  # the alarm did move while the daemon was killed
    repeats = [
        (seq, event)
        for (seq, event), previous in zip(
            ((s, by_seq[s]["event"]) for s in sorted(by_seq)[1:]), events, strict=False
        )
        if event == previous
    ]
    assert repeats == [], (repeats, events)
    assert events[0] == "raised", events
