"""Issue 11's gap scenario at full size: a Mosquitto with persistence restarted N times while
the gateway sends; a platform-side checker finds the gaps and repairs them with cmd/resend.
Prints what the broker lost (per stream) and whether the repair made every stream complete.

The parts are real: Mosquitto (persistence on, the platform's session persistent), the
gateway daemon (`watchpost run`, signed commands) polling a Modbus TCP server whose value
flips across an alarm threshold, so alarms are raised and cleared all the time.

    .venv/bin/python bench/gap_repair.py --restarts 20 --signal kill
    .venv/bin/python bench/gap_repair.py --restarts 20 --signal term --platform-delay 2
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import Broker, Subscriber
from tests.kit.configs import alarm, device, gateway, point, tcp_bus, write_config
from tests.kit.processes import Watchpost
from tests.modbus_servers import MisshapenAnswers
from watchpost.command_auth import sign
from watchpost.resend import runs

ROOT = "watchpost/v1/bench-site/gw-b1/"
STREAMS = ("telemetry", "alarms")


def flip(server: MisshapenAnswers, stop: threading.Event, period: float) -> None:
    """Move the value across the threshold every ``period`` s: an alarm raised, cleared."""
    while not stop.wait(period):
        server.value = 500 if server.value == 1500 else 1500


def restart(broker: Broker, how: str) -> None:
    assert broker.process is not None
    if how == "kill":
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait()
        broker.process = None
    else:
        broker.stop()
    broker.start()


def drained(store: Path, timeout: float) -> dict[str, int]:
    """Wait until the gateway's outbox is empty (the broker acknowledged everything); the
    last seq given out per stream."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            waiting = conn.execute(
                "SELECT count(*) FROM outbox WHERE stream IN ('telemetry', 'alarms')"
            ).fetchone()[0]
            last = dict(conn.execute("SELECT stream, last_seq FROM streams").fetchall())
        finally:
            conn.close()
        if waiting == 0 or time.monotonic() > deadline:
            return {s: int(last.get(s, 0)) for s in STREAMS}
        time.sleep(0.5)


def seqs(sub: Subscriber, stream: str) -> set[int]:
    return {m["seq"] for m in sub.get(ROOT + stream)}


def resend(
    client: mqtt.Client, sub: Subscriber, key: Ed25519PrivateKey, body: dict[str, Any]
) -> dict[str, Any]:
    body |= {"id": f"b-{time.monotonic_ns()}", "ts": int(time.time() * 1000), "gateway": "gw-b1"}
    body["sig"] = sign(key, body)
    client.publish(ROOT + "cmd/resend", json.dumps(body), qos=1)
    replies = sub.wait_for(
        ROOT + "cmd/resend/reply",
        timeout=20,
        predicate=lambda got: any(r.get("id") == body["id"] for r in got),
    )
    return next(r for r in replies if r.get("id") == body["id"])


def main(
    restarts: int, how: str, folder: Path, platform_delay: float, verbose: bool = False
) -> None:
    key = Ed25519PrivateKey.generate()
    (folder / "verify.pem").write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    broker = Broker(folder, persistent=True)
    broker.start()
    server = MisshapenAnswers({1: "exact"}, value=1500)
    stop = threading.Event()
    flipper = threading.Thread(target=flip, args=(server, stop, 0.7), daemon=True)
    flipper.start()
    config = gateway(
        broker.url,
        site="bench-site",
        gateway_id="gw-b1",
        buses=[tcp_bus("tcp", server.port)],
        devices=[
            device(
                "gas",
                "tcp",
                point("gas_a", 0, alarm("high", threshold=10.0), scale=0.01),
                interval=0.1,
            )
        ],
        uplink={"reconnect_min": 0.2, "reconnect_max": 1.0, "reconnect_spread": 0.5},
        commands={"verify_key": str(folder / "verify.pem")},
    )
    sub = Subscriber(broker, ROOT + "#", client_id="bench-platform", persistent=True)
    # a platform slower to come back than the gateway: what the broker queued for it in
    # memory meanwhile is lost by the next kill (the gateway saw it acknowledged)
    sub.client.reconnect_delay_set(min_delay=platform_delay, max_delay=platform_delay)
    daemon = Watchpost(
        "run",
        "--config",
        str(write_config(folder / "gateway.toml", config)),
        folder=folder,
        name="gateway",
    )
    daemon.wait_ready()
    rng = random.Random(11)
    try:
        for _ in range(restarts):
            time.sleep(rng.uniform(1.0, 3.0))
            restart(broker, how)
        stop.set()
        top = drained(folder / "var" / "buffer.db", timeout=120)  # every seq acknowledged
        time.sleep(1.0)  # the last PUBACKs' messages reach the platform
        lost = {s: runs(q for q in range(1, top[s] + 1) if q not in seqs(sub, s)) for s in STREAMS}
        print(f"{restarts} restarts ({how}); seqs given out and acknowledged: {top}")
        for stream in STREAMS:
            count = sum(last - first + 1 for first, last in lost[stream])
            print(f"  {stream}: {count} seq(s) missing at the platform: {lost[stream]}")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-cmd")
        client.connect(broker.host, broker.port)
        client.loop_start()
        start = time.perf_counter()
        answers = [
            resend(client, sub, key, {"stream": s, "from_seq": a, "to_seq": b})
            for s in STREAMS
            for a, b in lost[s]
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(set(range(1, top[s] + 1)) <= seqs(sub, s) for s in STREAMS):
                break
            time.sleep(0.1)
        took = time.perf_counter() - start
        client.loop_stop()
        client.disconnect()
        not_kept = [a["result"]["not_kept"] for a in answers if a["ok"]]
        refused = [a["error"] for a in answers if not a["ok"]]
        complete = {s: set(range(1, top[s] + 1)) <= seqs(sub, s) for s in STREAMS}
        print(
            f"repair: {len(answers)} cmd/resend, refused {refused}, not kept {not_kept}; "
            f"complete {complete} after {took:.1f} s"
        )
    finally:
        if verbose:
            print(daemon.log()[-3000:])
        daemon.stop()
        sub.close()
        stop.set()
        server.close()
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--signal", choices=("kill", "term"), default="kill")
    parser.add_argument(
        "--platform-delay", type=float, default=0.2, help="seconds the platform waits to reconnect"
    )
    parser.add_argument("--verbose", action="store_true", help="print the gateway's log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        main(args.restarts, args.signal, Path(folder), args.platform_delay, args.verbose)
