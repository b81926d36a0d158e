"""Signed commands against the running daemon, through a real Mosquitto.

The platform holds an Ed25519 key; the gateway has its public key as ``[commands]
verify_key``. Unsigned, badly signed, replayed, stale, misaddressed and retained commands
must change nothing and be answered with the reason; a signed one runs once. A rule with
``shelvable = false`` cannot be shelved from the platform nor from the cabinet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import Broker, Subscriber
from tests.kit.configs import Table, alarm, gas, gas_gateway, write_config
from tests.kit.control import wait_status
from tests.kit.platform import Platform
from tests.kit.processes import Watchpost, gateway_process
from tests.modbus_servers import MisshapenAnswers
from watchpost.control import ControlError, request

ROOT = "watchpost/v1/sig-site/gw-s1/"


def events(sub: Subscriber, alarm: str, event: str) -> list[dict[str, Any]]:
    return [m for m in sub.get(ROOT + "alarms") if m["alarm"] == alarm and m["event"] == event]


@pytest.fixture
def gateway(
    tmp_path: Path, broker: Broker, subscriber: Callable[..., Subscriber]
) -> Iterator[Callable[[bool], Path]]:
    """``start(signed)``: the daemon with or without a verify_key, once it is `online` (it
    takes commands from then on: it subscribes first); returns its folder."""
    server = MisshapenAnswers({1: "exact"}, value=1500)  # both gas readings 15 %LEL: raised
    status = subscriber(ROOT + "status")
    processes: list[Watchpost] = []

    def start(signed: bool) -> Path:
        sections: dict[str, Table] = {}
        if signed:
            key = tmp_path / "command-verify.pem"
            key.write_bytes(
                PLATFORM_KEY.public_key().public_bytes(
                    Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
                )
            )
            key.chmod(0o644)
            sections["commands"] = {"verify_key": str(key)}
        config = gas_gateway(
            broker.url,
            server.port,
            gas("gas_a", 0, alarm("high", threshold=10.0, latch=True)),
            gas("gas_b", 1, alarm("high", level="critical", threshold=10.0, shelvable=False)),
            site="sig-site",
            gateway_id="gw-s1",
            interval=0.3,
            **sections,
        )
        processes.append(gateway_process(write_config(tmp_path / "gateway.toml", config)))
        wait_status(tmp_path / "var" / "control.sock")
        status.wait_for(
            ROOT + "status",
            timeout=30,
            predicate=lambda got: bool(got) and got[-1]["state"] == "online",
        )
        return tmp_path

    yield start
    for process in processes:
        process.close()
    server.close()


PLATFORM_KEY = Ed25519PrivateKey.generate()


@pytest.mark.slow
def test_only_signed_fresh_commands_for_this_gateway_run_once(
    gateway: Callable[[bool], Path], broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "#")
    folder = gateway(True)
    sub.wait_for(
        ROOT + "alarms",
        timeout=20,
        predicate=lambda got: (
            {m["alarm"] for m in got if m["event"] == "raised"}
            >= {"gas_a/high_alarm", "gas_b/high_critical"}
        ),
    )
    signed = Platform(broker, sub, ROOT, key=PLATFORM_KEY)
    unsigned = Platform(broker, sub, ROOT)
    forger = Platform(broker, sub, ROOT, key=Ed25519PrivateKey.generate())
    ack = {"alarm": "gas_a/high_alarm", "by": "duty-officer"}
    try:
        refusals = {
            "unsigned": unsigned.send("ack", unsigned.payload(**ack)),
            "forged": forger.send("ack", forger.payload(**ack)),
            "other gateway": signed.send("ack", signed.payload(**ack, gateway="gw-s2")),
            "stale": signed.send("ack", signed.payload(**ack, ts=int(time.time() * 1000) - 10**6)),
        }
        for what, reply in refusals.items():
            assert reply["ok"] is False, (what, reply)
        assert "must be signed" in refusals["unsigned"]["error"]
        assert "signature does not match" in refusals["forged"]["error"]
        assert "gw-s2" in refusals["other gateway"]["error"]
        assert "at most 300 s" in refusals["stale"]["error"]
        assert events(sub, "gas_a/high_alarm", "acknowledged") == []

        body = signed.payload(**ack)
        first = signed.send("ack", body)
        assert first["ok"] is True, first
        replay = signed.send("ack", body)
        assert replay["ok"] is False
        assert "replay" in replay["error"]
        ping = unsigned.send("ping", {"id": "ping-1"})  # ping needs no signature
        assert ping["ok"] is True

        shelve = {"alarm": "gas_b/high_critical", "by": "duty", "reason": "x", "minutes": 5}
        refused = signed.send("shelve", signed.payload(**shelve))
        assert refused["ok"] is False
        assert "may not be shelved" in refused["error"]
    finally:
        for platform in (signed, unsigned, forger):
            platform.close()
    sub.wait_for(
        ROOT + "alarms",
        timeout=10,
        predicate=lambda got: any(m["event"] == "acknowledged" for m in got),
    )
    time.sleep(1.0)
    assert len(events(sub, "gas_a/high_alarm", "acknowledged")) == 1
    assert events(sub, "gas_b/high_critical", "shelved") == []
    # not from the cabinet either
    with pytest.raises(ControlError, match="may not be shelved"):
        request(
            folder / "var" / "control.sock",
            "shelve",
            alarm="gas_b/high_critical",
            by="crew",
            reason="x",
            minutes=5,
        )
    log = (folder / "gateway.log").read_text()
    assert "Traceback" not in log, log
    assert log.count("refused") <= 8, log  # one line per refused command


@pytest.mark.slow
def test_a_retained_command_never_runs_and_no_key_is_a_warning(
    gateway: Callable[[bool], Path], broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "#")
    folder = gateway(False)
    log = folder / "gateway.log"
    assert "unsigned" in log.read_text()  # the warning at start
    platform = Platform(broker, sub, ROOT)
    try:
        reply = platform.send("ack", {"id": "u-1", "alarm": "gas_a/high_alarm", "by": "duty"})
        assert reply["ok"] is True  # without a key: accepted as before
        # a retained reload: the broker hands it to every new session of the gateway
        platform.client.publish(
            ROOT + "cmd/reload", json.dumps({"id": "r-1"}), qos=1, retain=True
        ).wait_for_publish(5)
        time.sleep(12)  # a retained reload used to restart the gateway every second
        platform.client.publish(ROOT + "cmd/reload", b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        platform.close()
    text = log.read_text()
    # the live delivery runs once; the retained redelivery at the new session does not
    assert text.count("restarting with the config read anew") == 1, text
    replies = [r for r in sub.get(ROOT + "cmd/reload/reply") if r.get("id") == "r-1"]
    assert any("retained" in (r.get("error") or "") for r in replies), replies
    status = wait_status(folder / "var" / "control.sock")
    assert status["daemon"] == "running"


@pytest.mark.slow
def test_hostile_payloads_get_a_plain_answer_and_one_log_line(
    gateway: Callable[[bool], Path], broker: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(ROOT + "cmd/+/reply")
    folder = gateway(False)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        payloads = [
            b'{"id": "deep", "alarm": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            b'{"id": NaN, "alarm": "gas_a/high_alarm", "by": "x"}',
            json.dumps({"id": "x" * 1_000_000, "alarm": "gas_a/high_alarm"}).encode(),
            b'{"id": 7, "alarm": "gas_a/high_alarm", "by": "x", "minutes": Infinity}',
        ]
        for payload in payloads:
            client.publish(ROOT + "cmd/shelve", payload, qos=1).wait_for_publish(5)
        replies = sub.wait_for(ROOT + "cmd/shelve/reply", count=len(payloads), timeout=20)
    finally:
        client.loop_stop()
        client.disconnect()
    for message in sub.raw:
        json.loads(message.payload, parse_constant=pytest.fail)  # strict JSON: no NaN echoed
        assert len(message.payload) < 4000  # no 1 MB id echoed
    assert all(r["ok"] is False and r["error"] for r in replies), replies
    assert [r.get("id") for r in replies].count(7) == 1
    assert all(r.get("id") in (None, "deep", 7) for r in replies)
    # the crews' socket: clear words, not Python internals
    sock = folder / "var" / "control.sock"
    for op, args in (
        ("ack", {}),
        ("shelve", {"alarm": "gas_a/high_alarm", "by": "x", "reason": "r", "bogus": 1}),
        ("shelve", {"alarm": "gas_a/high_alarm", "by": "x", "reason": "r", "minutes": "soon"}),
        ("read", {}),
    ):
        with pytest.raises(ControlError) as refused:
            request(sock, op, **args)
        words = str(refused.value)
        assert "KeyError" not in words
        assert "unexpected keyword" not in words
        assert "Error:" not in words
    log = (folder / "gateway.log").read_text()
    assert "Traceback" not in log, log
    assert "RecursionError" not in log
    assert log.count("command shelve") == len(payloads), log  # one line each
