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
from tests.kit.configs import alarm, gas, gas_gateway, write_config
from tests.kit.processes import gateway_process, running_gateway
from tests.modbus_servers import MisshapenAnswers

ROOT = "watchpost/v1/kill-site/gw-k/"
KILLS = 12


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
        config = gas_gateway(
            broker.url,
            server.port,
            gas("gas_a", 0, alarm("high", threshold=10.0)),
            site="kill-site",
            gateway_id="gw-k",
            interval=0.1,
        )
        path = write_config(tmp_path / "gateway.toml", config)
        try:
            for _kill in range(KILLS):
                process = gateway_process(path)
                time.sleep(rng.uniform(1.5, 3.5))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                process.close()
            stop_toggling.set()
            toggler.join(5)
            with running_gateway(path) as process:
                # started (its SIGTERM handler in place: a busy machine once took over 4 s
                # to get there, and the stop at the end of the block then killed it)
                process.wait_ready()
                time.sleep(4)  # the backlog drains
        finally:
            stop_toggling.set()
    by_seq = {m["seq"]: m for m in sub.get(ROOT + "alarms")}  # at least once: de-duplicated
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), "a gap in the alarms seq"
    # the stream also carries the gateway's own faults: each alarm's events, in seq order
    seen = [(seq, by_seq[seq]["alarm"], by_seq[seq]["event"]) for seq in sorted(by_seq)]
    events = [event for _seq, alarm_id, event in seen if alarm_id.startswith("gas_a/")]
    assert len(events) >= 6, seen  # the alarm did move while the daemon was killed
    last: dict[str, str] = {}
    repeats = []
    for seq, alarm_id, event in seen:
        if last.get(alarm_id) == event:
            repeats.append((seq, alarm_id, event))
        last[alarm_id] = event
    assert repeats == [], (repeats, seen)
    assert events[0] == "raised", seen
